"""Export the embedded LiteMedSAM into the export directory shipped in the wheel.

    .venv/bin/python scripts/export_embedded_onnx.py       # writes medsam_agent_rt/assets/onnx/

Runs the project's own exporter (``medsam-agent export sam litemedsam --precision fp32``:
torch.onnx dynamo export, graph contract and ONNX Runtime vs torch parity checks, manifest with
SHA-256 of every file) into ``medsam_agent_rt/assets/onnx/litemedsam``, then adds the static
int8 encoder (``export.sam_quantize``) calibrated on 16 phantoms (2 per modality) and 8 images of
each dataset's train split of the realpack (``--realpack``; never the demo set). Needs the torch
and onnx extras; ~1 min export + ~2-5 min calibration on 2 cores. Rerun it whenever the embedded
weights or the exporter change (tests/segmenters/test_shipped_onnx.py checks the shipped graphs
against the torch model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsam_agent_rt.assets import ONNX_DIR  # noqa: E402
from medsam_agent_rt.cli import main as cli_main  # noqa: E402

SPECS = ("litemedsam",)


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
    args = ap.parse_args(argv)
    if args.realpack is None or not args.realpack.is_dir():
        ap.error(f"--realpack {args.realpack} is not a folder (the int8 calibration needs it)")
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in SPECS:
        out = args.out / spec
        code = cli_main(
            [
                "export",
                "sam",
                spec,
                "--precision",
                "fp32",
                "--out",
                str(out),
                "--overwrite",
                "--quiet",
            ]
        )
        if code:
            return code
        from medsam_agent_rt.export.sam_quantize import calibration_images, quantize_encoder

        named = list(calibration_images(args.realpack, args.per_dataset, phantom_seeds=2))
        exported = quantize_encoder(out, [im for _, im in named], [n for n, _ in named])
        print(f"int8 encoder: {exported.manifest['graphs']['int8']['quantization']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
