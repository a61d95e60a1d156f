"""Uploads into the session store: the body streamed to disk under a byte limit, a zipped DICOM
series unpacked safely, the declared size checked before decoding, then ``io.read_image``.

Client file names never become paths: an upload is stored as ``upload<suffix>`` (the suffix
only from a fixed list, so a name like ``../../x.png`` cannot escape), and a zip's members are
written as ``series/00000.dcm, ...`` after every member name was checked. Every error is an
``UploadError`` carrying the HTTP status (413 too large, 415 unsupported, 422 unreadable,
400 malformed zip, 501 missing reader extra)."""

from __future__ import annotations

import math
import os
import re
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

SUFFIXES = (".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom",
            ".ima", ".nii", ".zip")  # fmt: skip
_CHUNK = 1 << 20


class UploadError(Exception):
    """An upload refused with ``status`` and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def display_name(filename: str | None) -> str:
    """The client's file name reduced to a harmless label (last path part, safe characters,
    at most 80 characters); never used as a path."""
    base = PurePosixPath(str(filename or "upload").replace("\\", "/")).name
    return re.sub(r"[^A-Za-z0-9._ -]", "_", base)[:80] or "upload"


def stored_name(filename: str | None) -> str:
    """``upload`` + the file's suffix when it is a known one (else none: the content decides)."""
    name = display_name(filename).lower()
    return "upload" + next((s for s in SUFFIXES if name.endswith(s)), "")


async def save_stream(chunks: AsyncIterator[bytes], dest: Path, limit: int) -> int:
    """Write the streamed body to ``dest`` (a new file); UploadError 413 past ``limit`` bytes,
    400 when empty. Returns the byte count. The caller removes the session folder on error."""
    size = 0
    with open(dest, "xb") as f:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise UploadError(
                    413, f"upload exceeds the limit of {limit:,} bytes (--max-upload-mb)"
                )
            f.write(chunk)
    if size == 0:
        raise UploadError(400, "empty upload: send the file's bytes as the request body")
    return size


def unpack_series(archive: Path, dest: Path, max_files: int, max_bytes: int) -> Path:
    """Unpack a zipped DICOM series into ``dest`` (created) as numbered files; returns ``dest``.
    Refuses (UploadError) a corrupt zip, absolute / ``..`` / link members, more than
    ``max_files`` files (413) or more than ``max_bytes`` uncompressed (413, checked while
    reading, not trusted from the header)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise UploadError(400, f"corrupt or truncated zip archive ({e})") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        for m in members:
            parts = PurePosixPath(m.filename.replace("\\", "/")).parts
            link = (m.external_attr >> 16) & 0o170000 == 0o120000
            if m.filename.startswith(("/", "\\")) or ".." in parts or ":" in m.filename or link:
                raise UploadError(400, f"zip member {m.filename[:100]!r} is an unsafe path or link")
        files = [m for m in members if not PurePosixPath(m.filename).name.startswith(".")]
        if not files:
            raise UploadError(422, "the zip archive holds no files (expected a DICOM series)")
        if len(files) > max_files:
            raise UploadError(
                413, f"the zip holds {len(files)} files; at most {max_files} slices (--max-slices)"
            )
        dest.mkdir()
        total = 0
        for i, m in enumerate(files):
            with zf.open(m) as src, open(dest / f"{i:05d}.dcm", "xb") as out:
                while chunk := src.read(_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise UploadError(
                            413,
                            f"the unpacked series exceeds {max_bytes:,} bytes (--max-upload-mb)",
                        )
                    out.write(chunk)
    return dest


def declared_shape(path: Path) -> tuple[int, ...] | None:
    """The image / volume shape a file declares in its header, read without decoding pixels
    (None when it cannot be told cheaply; ``read_image`` then checks after decoding)."""
    from medsam_agent_rt.io import detect_format

    fmt = detect_format(path)
    try:
        if fmt in ("png", "jpeg", "tiff", "bmp"):
            from PIL import Image

            with Image.open(path) as im:
                return (im.size[1], im.size[0])
        if fmt == "nifti":
            import nibabel

            return tuple(int(d) for d in nibabel.load(str(path)).shape)
        if fmt in ("dicom", "dicom-raw"):
            import pydicom

            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=fmt == "dicom-raw")
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            return (frames, int(ds.Rows), int(ds.Columns))
    except Exception:  # noqa: BLE001 - a broken header is reported by read_image itself
        return None
    return None


def check_declared(
    shape: tuple[int, ...] | None, fmt: str, max_pixels: int, max_slices: int
) -> None:
    """UploadError 413 when the declared shape exceeds the pixel or slice limits."""
    if not shape:
        return
    if fmt == "nifti" and len(shape) >= 3:  # the two largest of the first three axes: a slice
        dims = [max(int(d), 1) for d in shape]
        plane = sorted(dims[:3])[-2:]
        pixels = plane[0] * plane[1]
        slices = math.prod(dims) // pixels
    elif len(shape) == 3:  # DICOM (frames, rows, columns)
        slices, pixels = int(shape[0]), int(shape[1]) * int(shape[2])
    else:
        slices, pixels = 1, int(shape[0]) * int(shape[1])
    if pixels > max_pixels:
        raise UploadError(
            413,
            f"the image declares {pixels:,} pixels per slice; the limit is {max_pixels:,} (--max-pixels)",
        )
    if slices > max_slices:
        raise UploadError(
            413,
            f"the file declares {slices:,} slices / frames; the limit is {max_slices:,} (--max-slices)",
        )


def read_upload(path: Path, max_pixels: int, max_slices: int, **read_args: Any):
    """``io.read_image`` of an uploaded file or unpacked series folder after the declared-size
    checks; errors as UploadError. ``read_args``: window, frame, slice_index, axis."""
    from medsam_agent_rt.io import ImageReadError, UnsupportedFormatError, detect_format, read_image

    try:
        fmt = "dicom-series" if path.is_dir() else detect_format(path)
        if fmt != "dicom-series":
            check_declared(declared_shape(path), fmt, max_pixels, max_slices)
        loaded = read_image(path, **{k: v for k, v in read_args.items() if v is not None})
    except UploadError:
        raise
    except UnsupportedFormatError as e:
        raise UploadError(415, _strip_path(str(e), path)) from None
    except ImportError as e:
        raise UploadError(501, str(e)) from None
    except (ImageReadError, ValueError, OSError) as e:
        raise UploadError(422, _strip_path(str(e), path)) from None
    h, w = loaded.shape
    if h * w > max_pixels:
        raise UploadError(
            413, f"the image has {h * w:,} pixels; the limit is {max_pixels:,} (--max-pixels)"
        )
    return loaded


def _strip_path(message: str, path: Path) -> str:
    """An error message without the server-side path of the stored file."""
    return message.replace(str(path) + os.sep, "").replace(str(path), "the upload")
