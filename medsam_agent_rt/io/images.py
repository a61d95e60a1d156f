"""PNG / JPEG / TIFF / BMP readers (Pillow; tifffile for the TIFF flavours Pillow cannot read).

Rules (the :class:`LoadedImage` records which one applied):

- Grayscale (1-, 8-, 16-, 32-bit integer or float) is mapped to 0..255 — 8-bit data as is,
  other depths by min-max unless ``window`` says otherwise (see ``windowing``) — then
  replicated to RGB.
- RGBA / LA: the alpha channel is dropped, NOT composited: the colour channels are used as
  stored (medical PNGs carry an opaque alpha; compositing would change intensities).
  Palette images are expanded to RGB first; CMYK / YCbCr / LAB / HSV are converted by Pillow.
- 16-bit colour: TIFF is read with tifffile (exact samples, then min-max over all channels);
  Pillow reads a 16-bit colour PNG as 8-bit (high byte of each sample), so such a PNG is read
  with OpenCV when it is installed and otherwise with Pillow, with a warning and
  ``mapping.kind == "high_byte"``.
- EXIF orientation (JPEG, TIFF) is applied, as viewers and OpenCV do; ``info["exif_transposed"]``
  says when it changed the image.
- Multi-page TIFF (and multi-frame PNG/JPEG): ``frame`` picks the page (default 0).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from medsam_agent_rt.io.errors import ImageReadError, missing_extra
from medsam_agent_rt.io.limits import check_shape, check_voxels
from medsam_agent_rt.io.loaded import LoadedImage, gray_to_rgb
from medsam_agent_rt.io.windowing import IntensityMapping, WindowArg, map_to_uint8

_MODE_DTYPES = {"1": "bool", "I": "int32", "F": "float32"}


def check_frame(path: str | os.PathLike[str], frame: int | None, count: int) -> int:
    """The frame index to use (default 0); ImageReadError naming the frame count if out of range."""
    if frame is None:
        return 0
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise ValueError(f"frame must be an int or None, got {frame!r}")
    if not 0 <= int(frame) < count:
        unit = "frame" if count == 1 else "frames"
        raise ImageReadError(
            path, f"frame {frame} is out of range: the file has {count} {unit} (0..{count - 1})"
        )
    return int(frame)


def read_raster(
    path: str | os.PathLike[str], fmt: str, *, frame: int | None = None, window: WindowArg = None
) -> LoadedImage:
    """Read a PNG / JPEG / TIFF / BMP file (``fmt`` as ``detect_format`` names it)."""
    path = Path(path)
    deep_png = fmt == "png" and _png_is_16bit_colour(path)
    if deep_png:
        loaded = _read_png16_colour_cv2(path, frame, window)
        if loaded is not None:
            return loaded
    try:
        return _read_pillow(path, fmt, frame, window, deep_png)
    except _NeedsTifffile as reason:
        return _read_tifffile(path, frame, window, str(reason))


class _NeedsTifffile(Exception):
    pass


def _read_pillow(
    path: Path, fmt: str, frame: int | None, window: WindowArg, deep_png: bool
) -> LoadedImage:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            count = int(getattr(im, "n_frames", 1))
            index = check_frame(path, frame, count)
            if index:
                im.seek(index)
            check_shape(path, (im.height, im.width))  # the header's size, before decoding
            if fmt == "tiff" and _pil_tiff_too_deep(im):
                raise _NeedsTifffile(f"{im.mode} with {im.tag_v2.get(258)} bits per sample")
            im.load()
            mode = im.mode
            transposed = im.getexif().get(0x0112, 1) not in (None, 0, 1)
            values, dtype, bands = _pil_values(ImageOps.exif_transpose(im) if transposed else im)
    except (ImageReadError, _NeedsTifffile):
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(path, f"image too large to open safely ({e})") from e
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ...
        if fmt == "tiff":
            raise _NeedsTifffile(f"Pillow: {e}") from e
        raise ImageReadError(path, f"corrupt or unreadable {fmt.upper()} file ({e})") from e

    if deep_png:
        warnings.warn(
            f"{path}: 16-bit colour PNG read as 8-bit (high byte) because OpenCV is not "
            "installed (pip install opencv-python-headless for full precision)",
            stacklevel=3,
        )
        dtype = "uint16"
        mapped = values
        mapping = IntensityMapping("high_byte", low=0.0, high=65535.0)
        if window is not None:
            mapped, mapping = map_to_uint8(values, window)
    else:
        mapped, mapping = map_to_uint8(values, window)
    rgb = gray_to_rgb(mapped) if mapped.ndim == 2 else np.ascontiguousarray(mapped)
    shape = values.shape[:2] + ((bands,) if bands > 1 else ())
    return LoadedImage(
        rgb=rgb,
        path=str(path),
        format=fmt,
        original_dtype=dtype,
        original_shape=((count,) if count > 1 else ()) + shape,
        mapping=mapping,
        frame=index,
        frame_count=count,
        info={"pil_mode": mode, "exif_transposed": bool(transposed)},
    )


def _pil_values(im) -> tuple[np.ndarray, str, int]:
    """(values (H, W) or (H, W, 3), original dtype name, stored band count) of a loaded image."""
    mode = im.mode
    bands = len(im.getbands())
    if mode in ("L", "RGB"):
        return np.asarray(im), "uint8", bands
    if mode == "1":
        return np.asarray(im.convert("L")), "bool", 1
    if mode in ("LA", "La"):
        return np.asarray(im.convert("LA"))[:, :, 0], "uint8", bands
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), "uint16", 1
    if mode in ("I", "F"):
        return np.asarray(im), _MODE_DTYPES[mode], 1
    if mode in ("RGBA", "RGBa", "RGBX", "P", "PA"):
        return np.asarray(im.convert("RGBA"))[:, :, :3], "uint8", bands
    return np.asarray(im.convert("RGB")), "uint8", bands  # CMYK, YCbCr, LAB, HSV


def _pil_tiff_too_deep(im) -> bool:
    """Pillow silently keeps 8 bits of colour TIFFs with more bits per sample."""
    bits = getattr(im, "tag_v2", {}).get(258)
    if bits is None:
        return False
    bits = bits if isinstance(bits, tuple) else (bits,)
    return im.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F") and max(bits) > 8


def _png_is_16bit_colour(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(26)
    return len(head) == 26 and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 6)


def _read_png16_colour_cv2(path: Path, frame: int | None, window: WindowArg):
    try:
        import cv2
    except ImportError:
        return None
    check_frame(path, frame, 1)
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.dtype != np.uint16:
        return None  # let Pillow produce the error or its 8-bit reading
    values = np.ascontiguousarray(arr[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped
    mapped, mapping = map_to_uint8(values, window)
    return LoadedImage(
        rgb=mapped,
        path=str(path),
        format="png",
        original_dtype="uint16",
        original_shape=tuple(arr.shape),
        mapping=mapping,
        frame=0,
        info={"reader": "opencv"},
    )


def _read_tifffile(path: Path, frame: int | None, window: WindowArg, why: str) -> LoadedImage:
    try:
        import tifffile
    except ImportError:
        err = missing_extra("tifffile", "medical", f"reading {path} ({why})")
        raise err from None
    try:
        with tifffile.TiffFile(path) as tf:
            count = len(tf.pages)
            index = check_frame(path, frame, count)
            page = tf.pages[index]
            check_shape(path, (page.imagelength, page.imagewidth), "TIFF page")
            check_voxels(path, page.shape)  # samples and depth too, before decoding
            values = page.asarray()
            axes, photometric = page.axes, int(page.photometric)
            colormap = getattr(page, "colormap", None)
    except ImageReadError:
        raise
    except Exception as e:  # noqa: BLE001 - tifffile raises many types on corrupt input
        raise ImageReadError(path, f"corrupt or unreadable TIFF file ({why}; tifffile: {e})") from e
    dtype, stored_shape = str(values.dtype), tuple(values.shape)
    values = _tiff_to_hw(path, values, axes)
    if photometric == 3 and colormap is not None and values.ndim == 2:  # PALETTE
        values = np.moveaxis(np.asarray(colormap)[:, values], 0, -1)
    mapped, mapping = map_to_uint8(values, window)
    if photometric == 0 and mapped.ndim == 2:  # MINISWHITE
        mapped = 255 - mapped
        mapping = IntensityMapping(**{**mapping.to_dict(), "inverted": True})
    rgb = gray_to_rgb(mapped) if mapped.ndim == 2 else np.ascontiguousarray(mapped)
    return LoadedImage(
        rgb=rgb,
        path=str(path),
        format="tiff",
        original_dtype=dtype,
        original_shape=((count,) if count > 1 else ()) + stored_shape,
        mapping=mapping,
        frame=index,
        frame_count=count,
        info={"reader": "tifffile", "tiff_axes": axes, "tiff_photometric": photometric},
    )


def _tiff_to_hw(path: Path, values: np.ndarray, axes: str) -> np.ndarray:
    """A tifffile page as (H, W) or (H, W, 3): planar samples moved last, alpha / extra dropped."""
    if values.ndim == 3 and axes.startswith("S"):
        values = np.moveaxis(values, 0, -1)
    if values.ndim == 3 and values.shape[2] in (1, 2):
        values = values[:, :, 0]
    elif values.ndim == 3 and values.shape[2] >= 3:
        values = values[:, :, :3]
    if values.ndim != 2 and values.ndim != 3:
        raise ImageReadError(
            path, f"unsupported TIFF page layout: axes {axes!r}, shape {tuple(values.shape)}"
        )
    if values.dtype.kind == "c":
        raise ImageReadError(path, f"complex-valued TIFF data ({values.dtype}) is not an image")
    return values
