"""Export the embedded segmenters into the export directories shipped in the wheel.

    .venv/bin/python scripts/export_embedded_onnx.py       # writes medsam_agent_rt/assets/onnx/
    .venv/bin/python scripts/export_embedded_onnx.py --only litemedsam-click   # after new weights

Runs the project's own exporter (``medsam-agent export sam litemedsam --precision fp32``:
torch.onnx dynamo export, graph contract and ONNX Runtime vs torch parity checks, manifest with
SHA-256 of every file) into ``medsam_agent_rt/assets/onnx/litemedsam``, then adds the static
int8 encoder (``export.sam_quantize``) calibrated on 16 phantoms (2 per modality) and 8 images of
each dataset's train split of the realpack (``--realpack``; never the demo set). Needs the torch
and onnx extras; ~1 min export + ~2-5 min calibration on 2 cores. Rerun it whenever the embedded
weights or the exporter change (tests/segmenters/test_shipped_onnx.py checks the shipped graphs
against the torch model).

``litemedsam-click`` (LiteMedSAM's image encoder, fine-tuned prompt encoder + decoder) ships its
decoder graph, prompt-fusion weights and manifest only, in ``onnx/litemedsam-click``; its manifest
names LiteMedSAM's encoder graphs (fp32 and int8) as ``../litemedsam/...`` with their SHA-256
(``medsam-agent export sam litemedsam-click --encoder-from .../litemedsam``; the parity check runs
that encoder against the click model's own torch encoder). ~1 min, no calibration; rerun it alone
(``--only litemedsam-click``) after replacing ``assets/lite_medsam_click.safetensors``, and rerun
it after any LiteMedSAM re-export (the click manifest pins LiteMedSAM's encoder hashes:
tests/segmenters/test_shipped_click_onnx.py fails until then).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsam_agent_rt.assets import ONNX_DIR  # noqa: E402
from medsam_agent_rt.cli import main as cli_main  # noqa: E402

SPECS = ("litemedsam", "litemedsam-click")
#: spec -> the sibling export whose encoder graphs it names instead of shipping a copy
SHARED_ENCODER = {"litemedsam-click": "litemedsam"}


def default_realpack() -> Path | None:
    """realpack/ beside the shared demo folder ($MSRT_SHARED_DATA or shared/data above here)."""
    from medsam_agent_rt.evaluation.datasets import find_demo

    try:
        return find_demo().parent / "realpack"
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=ONNX_DIR, help=f"parent folder (default {ONNX_DIR})"
    )
    ap.add_argument("--realpack", type=Path, default=default_realpack(), help="realpack root")
    ap.add_argument("--per-dataset", type=int, default=8, help="realpack images per dataset")
    ap.add_argument("--only", choices=SPECS, help="export this one only (default: all, in order)")
    args = ap.parse_args(argv)
    specs = (args.only,) if args.only else SPECS
    calibrate = [s for s in specs if s not in SHARED_ENCODER]
    if calibrate and (args.realpack is None or not args.realpack.is_dir()):
        ap.error(f"--realpack {args.realpack} is not a folder (the int8 calibration needs it)")
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        out = args.out / spec
        shared = (
            ["--encoder-from", str(args.out / SHARED_ENCODER[spec])]
            if spec in SHARED_ENCODER
            else []
        )
        code = cli_main(
            ["export", "sam", spec, "--precision", "fp32", "--out", str(out), *shared]
            + ["--overwrite", "--quiet"]
        )
        if code:
            return code
        if shared:  # the int8 entry names the sibling's int8 encoder (cli: share_quantized_encoder)
            continue
        from medsam_agent_rt.export.sam_quantize import calibration_images, quantize_encoder

        named = list(calibration_images(args.realpack, args.per_dataset, phantom_seeds=2))
        exported = quantize_encoder(out, [im for _, im in named], [n for n, _ in named])
        print(f"int8 encoder: {exported.manifest['graphs']['int8']['quantization']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
