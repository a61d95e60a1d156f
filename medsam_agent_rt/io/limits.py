"""Resource limits of the image readers: every reader checks the size a file DECLARES before it
decodes anything, so a small hostile file cannot make the process allocate gigabytes.

===========================  ===========================  ==============================
limit                        default                      environment variable
===========================  ===========================  ==============================
pixels of one 2-D image      100,000,000 (10k x 10k)      ``MSRT_MAX_PIXELS``
voxels of a volume           1,000,000,000                ``MSRT_MAX_VOXELS``
bytes of one input file      4 GiB                        ``MSRT_MAX_FILE_BYTES``
shortest image side          2 pixels                     ``MSRT_MIN_SIDE``
===========================  ===========================  ==============================

PNG / JPEG / BMP and TIFF through Pillow use Pillow's own bomb check with this pixel limit;
the TIFF fallback (tifffile), DICOM (Rows x Columns, frames) and NIfTI (header dimensions)
check the declared shape here. :func:`check_content` refuses images that carry nothing to
segment (all pixels equal after the intensity mapping, e.g. all-NaN or constant data).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from medsam_agent_rt.io.errors import ImageReadError

DEFAULTS = {
    "max_pixels": 100_000_000,
    "max_voxels": 1_000_000_000,
    "max_file_bytes": 4 * 1024**3,
    "min_side": 2,
}
_ENV = {
    "max_pixels": "MSRT_MAX_PIXELS",
    "max_voxels": "MSRT_MAX_VOXELS",
    "max_file_bytes": "MSRT_MAX_FILE_BYTES",
    "min_side": "MSRT_MIN_SIDE",
}


@dataclass(frozen=True)
class ReadLimits:
    """The limits in force (see the module table)."""

    max_pixels: int
    max_voxels: int
    max_file_bytes: int
    min_side: int


def read_limits() -> ReadLimits:
    """The limits: each environment variable when set (a positive integer), else its default."""
    values = {}
    for name, default in DEFAULTS.items():
        raw = os.environ.get(_ENV[name], "").strip().replace("_", "")
        if not raw:
            values[name] = default
            continue
        if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
            raise ValueError(
                f"environment variable {_ENV[name]} must be a positive integer, got {raw!r}"
            )
        values[name] = int(raw)
    return ReadLimits(**values)


def check_file_size(path: str | os.PathLike[str]) -> None:
    """ImageReadError when the file is larger than ``max_file_bytes``."""
    limit = read_limits().max_file_bytes
    size = os.path.getsize(path)
    if size > limit:
        raise ImageReadError(
            path, f"file of {size:,} bytes exceeds the limit of {limit:,} (MSRT_MAX_FILE_BYTES)"
        )


def check_shape(path: str | os.PathLike[str], shape, what: str = "image") -> None:
    """ImageReadError when a declared 2-D ``shape`` (rows, columns, ...) is degenerate or too
    large; checked BEFORE decoding (the shape comes from the file's header)."""
    limits = read_limits()
    try:
        dims = [int(s) for s in shape]
    except (TypeError, ValueError, OverflowError):
        raise ImageReadError(path, f"{what} has an invalid shape {shape!r}") from None
    if len(dims) < 2 or any(d < 1 for d in dims):
        raise ImageReadError(path, f"{what} has an empty or invalid shape {tuple(dims)}")
    h, w = dims[0], dims[1]
    if h * w > limits.max_pixels:
        raise ImageReadError(
            path,
            f"{what} of {w} x {h} = {h * w:,} pixels exceeds the limit of "
            f"{limits.max_pixels:,} (MSRT_MAX_PIXELS)",
        )
    if min(h, w) < limits.min_side:
        raise ImageReadError(
            path,
            f"{what} is {w} x {h} pixels; at least {limits.min_side} pixels per side are "
            "needed to segment anything (MSRT_MIN_SIDE)",
        )


def check_voxels(path: str | os.PathLike[str], shape) -> None:
    """ImageReadError when a declared volume ``shape`` holds more than ``max_voxels`` voxels."""
    limit = read_limits().max_voxels
    n = math.prod(int(s) for s in shape)
    if n > limit:
        raise ImageReadError(
            path,
            f"volume of shape {tuple(int(s) for s in shape)} = {n:,} voxels exceeds the limit of "
            f"{limit:,} (MSRT_MAX_VOXELS)",
        )


def check_content(path: str | os.PathLike[str], rgb: np.ndarray, values=None) -> None:
    """ImageReadError when the image carries nothing to segment: no finite value in the source
    data (``values``, when given), or every output pixel equal (constant image, or a window that
    saturates the whole slice)."""
    if values is not None:
        v = np.asarray(values)
        if v.dtype.kind == "f" and v.size and not np.isfinite(v).any():
            raise ImageReadError(path, "has no finite pixel value (all NaN / infinite)")
    if rgb.size and int(rgb.min()) == int(rgb.max()):
        raise ImageReadError(
            path,
            f"every pixel has the same value ({int(rgb.flat[0])}) after the intensity mapping: "
            "nothing to segment (a constant image, or a window that saturates it: try another "
            "--window)",
        )
