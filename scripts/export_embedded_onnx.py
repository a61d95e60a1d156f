"""Export the embedded LiteMedSAM into the export directory shipped in the wheel.

    .venv/bin/python scripts/export_embedded_onnx.py       # writes medsam_agent_rt/assets/onnx/

Runs the project's own exporter (``medsam-agent export sam litemedsam --precision fp32``:
torch.onnx dynamo export, graph contract and ONNX Runtime vs torch parity checks, manifest with
SHA-256 of every file) into ``medsam_agent_rt/assets/onnx/litemedsam``. Needs the torch and onnx
extras; rerun it whenever the embedded weights or the exporter change
(tests/segmenters/test_shipped_onnx.py checks the shipped graphs against the torch model).
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=ONNX_DIR, help=f"parent folder (default {ONNX_DIR})"
    )
    args = ap.parse_args(argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
