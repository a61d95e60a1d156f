"""Minimal image files for the data package: read RGB uint8 and binary masks, write PNG
atomically. Pillow is imported here, lazily, so ``import medsam_agent_rt.data`` needs NumPy
alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a core dependency
        raise ImportError(
            "reading and writing image files needs Pillow: pip install pillow"
        ) from exc
    return Image


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    integer = np.issubdtype(a.dtype, np.integer)
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if integer and lo >= 0 and hi <= 255:
        return a.astype(np.uint8)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) / (hi - lo) * 255.0).astype(np.uint8)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8, shape (H, W, 3). Grey images are replicated, alpha dropped,
    16-bit and float images min-max scaled to 0..255. Raises FileNotFoundError / ValueError
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    Image = _pil()
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                a = _to_uint8(np.asarray(im))
            else:
                a = np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - OSError, DecompressionBombError, SyntaxError ...
        raise ValueError(
            f"image file {path}: cannot be decoded ({type(exc).__name__}: {exc})"
        ) from exc
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a, dtype=np.uint8)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file as bool (H, W): True where any colour channel is non-zero (alpha ignored),
    so 0/255, 0/1 and RGB(A) masks all read alike. JPEG is lossy: its compression noise around
    edges is not foreground, so a JPEG mask is thresholded at half range (a channel >= 128)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    Image = _pil()
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGB")
            a = np.asarray(im)
            bands = im.getbands()
            lossy = im.format == "JPEG"
    except Exception as exc:  # noqa: BLE001 - OSError, DecompressionBombError, SyntaxError ...
        raise ValueError(
            f"mask file {path}: cannot be decoded ({type(exc).__name__}: {exc})"
        ) from exc
    fg = (a >= 128) if lossy and a.dtype == np.uint8 else (a != 0)
    if a.ndim == 3:
        colour = [i for i, b in enumerate(bands) if b != "A"] or list(range(a.shape[2]))
        return np.any(fg[:, :, colour], axis=2)
    return fg


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write uint8 (H, W) / (H, W, 3) or bool (H, W, as 0/255) to ``path`` atomically (a
    temporary file renamed into place, so an interrupted run leaves no half-written PNG)."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(
            f"array: expected uint8 (H, W) or (H, W, 3) or bool (H, W), got {a.dtype} {a.shape}"
        )
    Image = _pil()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(np.ascontiguousarray(a)).save(tmp, format="PNG", compress_level=6)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
