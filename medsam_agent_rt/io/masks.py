"""Ground-truth masks, read for everyone (CLI ``--gt``, datasets, evaluation, training).

:func:`read_mask` turns a mask file into (H, W) bool, non-zero = foreground:

- a mask image (PNG / TIFF / BMP / JPEG; grey, RGB, RGBA, palette, 0/1 or 0/255): foreground
  where any colour channel is non-zero (alpha ignored); a JPEG mask is thresholded at half
  range (a channel >= 128), so its compression noise is not foreground;
- a NIfTI mask volume on the voxel grid of a NIfTI image (``like``): the same slice (and
  volume) is cut from it as from the image, in the image's orientation.

With ``like`` (the image's :class:`LoadedImage`) the mask must have the image's (H, W). Errors
are :class:`ImageReadError` (a ValueError) starting with the mask's path; a missing file raises
FileNotFoundError.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.io.errors import ImageReadError, UnsupportedFormatError
from medsam_agent_rt.io.loaded import LoadedImage
from medsam_agent_rt.io.reader import detect_format

RASTER_MASK_FORMATS = ("png", "jpeg", "tiff", "bmp")


def read_mask(path: str | os.PathLike[str], like: LoadedImage | None = None) -> np.ndarray:
    """The mask at ``path`` as a C-contiguous (H, W) bool array (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"mask file not found: {p}")
    fmt = detect_format(p)
    if fmt == "nifti":
        mask = _read_nifti_mask(p, like)
    elif fmt in RASTER_MASK_FORMATS:
        mask = _read_raster_mask(p)
    else:
        what = "a directory" if p.is_dir() else fmt.upper()
        raise UnsupportedFormatError(
            p,
            "a mask must be an image file (PNG, TIFF, BMP, JPEG) or, for a NIfTI image, a NIfTI "
            f"volume; got {what}",
        )
    if like is not None and mask.shape != like.shape:
        (h, w), (mh, mw) = like.shape, mask.shape
        raise ImageReadError(
            p,
            f"the mask is {mw}x{mh} (W x H) but the image {like.path} is {w}x{h}; the mask must "
            "have the image's size",
        )
    return np.ascontiguousarray(mask, bool)


def _read_raster_mask(p: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a core dependency
        raise ImportError("reading mask images needs Pillow: pip install pillow") from exc
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGB")
            a = np.asarray(im)
            bands = im.getbands()
            lossy = im.format == "JPEG"
    except Exception as exc:  # noqa: BLE001 - OSError, DecompressionBombError, SyntaxError ...
        raise ImageReadError(
            p, f"cannot be decoded as a mask image ({type(exc).__name__}: {exc})"
        ) from None
    # JPEG is lossy: its compression noise around edges is not foreground (half range).
    fg = (a >= 128) if lossy and a.dtype == np.uint8 else (a != 0)
    if a.ndim == 3:
        colour = [i for i, b in enumerate(bands) if b != "A"] or list(range(a.shape[2]))
        return np.any(fg[:, :, colour], axis=2)
    return fg


def _read_nifti_mask(p: Path, like: LoadedImage | None) -> np.ndarray:
    from medsam_agent_rt.io.nifti import import_nibabel

    if like is None or like.format != "nifti" or like.layout is None:
        got = "no image" if like is None else f"the image {like.path} is {like.format.upper()}"
        raise ImageReadError(
            p,
            "a NIfTI mask volume needs the NIfTI image it belongs to (the same slice is cut from "
            f"both); {got}: pass a mask image instead",
        )
    nib = import_nibabel()
    try:
        vol = nib.load(p)
        shape = tuple(int(s) for s in vol.shape)
    except Exception as exc:  # noqa: BLE001 - ImageFileError, EOFError, zlib.error, OSError
        raise ImageReadError(p, f"corrupt or unreadable NIfTI file ({exc})") from None
    layout = like.layout
    spatial = (shape + (1, 1, 1))[:3]
    if spatial != tuple(layout.volume_shape):
        raise ImageReadError(
            p,
            f"the mask volume is {spatial} voxels but the image volume {like.path} is "
            f"{tuple(layout.volume_shape)}; they must share the voxel grid",
        )
    frames = shape[3] if len(shape) >= 4 else 1
    frame = 0 if frames == 1 else int(like.frame or 0)
    if frame >= frames:
        raise ImageReadError(p, f"has {frames} volumes, the image uses volume {frame}")
    try:
        if len(shape) < 3:
            plane = np.take(np.asanyarray(vol.dataobj).reshape(spatial), layout.index, layout.axis)
        else:
            index: list[Any] = [slice(None)] * 3
            index[layout.axis] = layout.index
            index += [frame] if len(shape) >= 4 else []
            index += [0] * max(0, len(shape) - 4)
            plane = np.asanyarray(vol.dataobj[tuple(index)])
    except Exception as exc:  # noqa: BLE001 - truncated data surfaces only when read
        raise ImageReadError(p, f"corrupt NIfTI data ({type(exc).__name__}: {exc})") from None
    if like.affine is not None and not np.allclose(vol.affine, like.affine, atol=1e-3):
        warnings.warn(
            f"{p}: its affine differs from the image's; voxels are matched by index",
            stacklevel=3,
        )
    return layout.extract(np.asarray(plane)) != 0
