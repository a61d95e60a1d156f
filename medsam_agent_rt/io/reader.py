"""``read_image``: one entry for every input; the reader is chosen from the file's content.

Signatures checked (the extension is only a fallback for DICOM files without a preamble):
PNG ``\\x89PNG\\r\\n\\x1a\\n``; JPEG ``\\xff\\xd8\\xff``; TIFF ``II*\\0`` / ``MM\\0*`` (and BigTIFF);
BMP ``BM``; DICOM ``DICM`` at byte 128; NIfTI-1 ``n+1\\0`` / ``ni1\\0`` at byte 344 with a
348-byte header, NIfTI-2 ``n+2\\0`` at byte 4 with a 540-byte header, either one plain or
gzip-compressed (``.nii.gz``). A directory is read as a DICOM series. Files without a preamble
are tried as DICOM when named ``*.dcm`` / ``*.dicom`` / ``*.ima`` or when they start like a
DICOM data set (group 0x0002 or 0x0008).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

from medsam_agent_rt.io.errors import ImageReadError, UnsupportedFormatError
from medsam_agent_rt.io.layout import ORIENTATIONS
from medsam_agent_rt.io.limits import check_content, check_file_size, check_shape
from medsam_agent_rt.io.loaded import LoadedImage
from medsam_agent_rt.io.windowing import WindowArg, check_window_arg

FORMATS = ("png", "jpeg", "tiff", "bmp", "dicom", "nifti")
_RASTER = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"II+\x00": "tiff",
    b"MM\x00+": "tiff",
    b"BM": "bmp",
}
_EXTENSIONS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".ima": "dicom",
    ".nii": "nifti",
    ".gz": "nifti",
}
_HEAD = 548


def detect_format(path: str | os.PathLike[str]) -> str:
    """The reader for ``path``: one of FORMATS, "dicom-raw" (DICOM without preamble) or
    "dicom-series" (a directory). Raises FileNotFoundError, ImageReadError (empty, unreadable)
    or UnsupportedFormatError (names what the content looks like)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if path.is_dir():
        return "dicom-series"
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except OSError as e:
        raise ImageReadError(path, f"cannot be read ({e.strerror or e})") from e
    if not head:
        raise ImageReadError(path, "is empty (0 bytes)")
    if head[128:132] == b"DICM":  # first: a DICOM preamble may itself hold a TIFF header
        return "dicom"
    for magic, fmt in _RASTER.items():
        if head.startswith(magic):
            return fmt
    if _is_nifti(head):
        return "nifti"
    suffix = path.suffix.lower()
    if head.startswith(b"\x1f\x8b"):
        return _gzip_format(path)
    if suffix in (".dcm", ".dicom", ".ima") or (
        len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[2:4] != b"\x00\x00"
    ):
        return "dicom-raw"
    claimed = _EXTENSIONS.get(suffix)
    named = f"its name says {claimed.upper()} but " if claimed else ""
    raise UnsupportedFormatError(
        path,
        f"unsupported or unrecognised format: {named}its content matches no supported "
        f"signature (first bytes {head[:8].hex(' ')}); supported: PNG, JPEG, TIFF, BMP, "
        "DICOM, NIfTI (.nii / .nii.gz), a DICOM series directory",
    )


def _is_nifti(head: bytes) -> bool:
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return struct.unpack("<i", head[:4])[0] == 348 or struct.unpack(">i", head[:4])[0] == 348
    if len(head) >= 8 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return struct.unpack("<i", head[:4])[0] == 540 or struct.unpack(">i", head[:4])[0] == 540
    return False


def _gzip_format(path: Path) -> str:
    try:
        with gzip.open(path, "rb") as f:
            inner = f.read(_HEAD)
    except (OSError, EOFError, zlib.error) as e:
        raise ImageReadError(path, f"corrupt gzip data ({e})") from e
    if _is_nifti(inner):
        return "nifti"
    raise UnsupportedFormatError(
        path, "gzip-compressed file whose content is not NIfTI (only .nii.gz is supported)"
    )


def read_image(
    path: str | os.PathLike[str],
    *,
    frame: int | None = None,
    window: WindowArg = None,
    axis: int | None = None,
    slice_index: int | None = None,
    orientation: str = "display",
) -> LoadedImage:
    """Read any supported input as a :class:`LoadedImage` (``rgb`` (H, W, 3) uint8 + metadata).

    frame: page of a TIFF, frame of a multi-frame DICOM, volume of a 4-D NIfTI (default 0).
    window: None (each reader's default: the DICOM file's own window, NIfTI cal_min/cal_max,
        8-bit data as is, else min-max), a preset name (``WINDOW_PRESETS``), "minmax",
        "percentile", or an explicit (centre, width) in the data's units (HU for CT).
    axis, slice_index: the voxel axis and slice of a NIfTI volume (default axis 2, the middle
        slice); slice_index also picks the slice of a DICOM series directory.
    orientation: NIfTI only: "display" (radiological, default) or "voxel" (see ``layout``).

    Errors: FileNotFoundError; ImageReadError (a ValueError: corrupt, empty, frame or slice out
    of range, over a size limit of ``io.limits``, constant / all-NaN content, smaller than
    ``MSRT_MIN_SIDE``; the message starts with the path); its subclasses UnsupportedFormatError and
    MissingDecoderError; ImportError naming the extra when pydicom / nibabel / tifffile is
    missing; ValueError for a malformed argument.
    """
    window = check_window_arg(window)
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    for name, value in (("frame", frame), ("slice_index", slice_index), ("axis", axis)):
        if value is not None and (isinstance(value, bool) or not hasattr(value, "__index__")):
            raise ValueError(f"{name} must be an int or None, got {value!r}")
    fmt = detect_format(path)
    if axis is not None and fmt != "nifti":
        raise ValueError(f"axis applies to NIfTI volumes only; {path} is {_name(fmt)}")
    if slice_index is not None and fmt not in ("nifti", "dicom-series"):
        raise ValueError(
            f"slice_index applies to NIfTI volumes and DICOM series directories only; "
            f"{path} is {_name(fmt)}"
        )
    if fmt != "dicom-series":
        check_file_size(path)
    # The one guard every reader passes: whatever a hostile file makes a decoder raise
    # (TypeError, RecursionError, integer-digit limits, MemoryError ...) becomes an
    # ImageReadError naming the file, and the result is checked for size and content.
    try:
        loaded = _read(path, fmt, frame, window, axis, slice_index, orientation)
    except (ImageReadError, FileNotFoundError, ImportError):
        raise
    except MemoryError:
        raise ImageReadError(path, "too large to decode in the available memory") from None
    except Exception as e:  # noqa: BLE001 - see above
        raise ImageReadError(
            path, f"corrupt or unreadable {_name(fmt)[2:]} ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    check_shape(loaded.path, loaded.rgb.shape)
    check_content(loaded.path, loaded.rgb)
    return loaded


def _read(path, fmt, frame, window, axis, slice_index, orientation) -> LoadedImage:
    if fmt == "nifti":
        from medsam_agent_rt.io.nifti import read_nifti

        return read_nifti(
            path,
            frame=frame,
            window=window,
            axis=axis,
            slice_index=slice_index,
            orientation=orientation,
        )
    if fmt in ("dicom", "dicom-raw"):
        from medsam_agent_rt.io.dicom import read_dicom

        return read_dicom(path, frame=frame, window=window, force=fmt == "dicom-raw")
    if fmt == "dicom-series":
        from medsam_agent_rt.io.dicom_series import read_dicom_series

        return read_dicom_series(path, slice_index=slice_index, frame=frame, window=window)
    from medsam_agent_rt.io.images import read_raster

    return read_raster(path, fmt, frame=frame, window=window)


def _name(fmt: str) -> str:
    return {
        "dicom-raw": "a DICOM file",
        "dicom-series": "a directory",
        "jpeg": "a JPEG file",
    }.get(fmt, f"a {fmt.upper()} file")
