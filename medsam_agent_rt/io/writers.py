"""Output writers: mask PNG, mask NIfTI, trajectory JSON (the overlay strip is in ``strip``).

Every writer builds the whole file in memory first, then writes it atomically (``atomic``): on
any error nothing is left behind and an existing file of that name is unchanged. The output
directory must exist.

Masks: (H, W) bool or integer arrays, non-zero = foreground (float arrays are refused: threshold
logits first). ``like`` is the ``LoadedImage`` the mask belongs to; the mask must have its
(H, W).
"""

from __future__ import annotations

import gzip
import io as _io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.io.atomic import atomic_write_bytes
from medsam_agent_rt.io.loaded import LoadedImage


def as_binary_mask(mask: Any, like: LoadedImage | None = None, name: str = "mask") -> np.ndarray:
    """(H, W) bool from a bool / integer array; ValueError naming what arrived otherwise."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{name} must be a non-empty (H, W) array, got {m.ndim}-D {m.shape}")
    if not (m.dtype == np.bool_ or np.issubdtype(m.dtype, np.integer)):
        raise ValueError(
            f"{name} must be bool or integer (non-zero = foreground), got {m.dtype}; "
            "threshold float logits first"
        )
    if like is not None and m.shape != like.shape:
        raise ValueError(
            f"{name} must have the image's size {like.shape} (H, W), got {m.shape} "
            f"(image {like.path})"
        )
    return m != 0


# ----------------------------------------------------------------------------- PNG
def encode_png(image: Any) -> bytes:
    """PNG bytes of a uint8 (H, W) / (H, W, 3) image or a bool (H, W) mask (as 0/255)."""
    from PIL import Image

    a = np.asarray(image)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(
            f"image must be uint8 (H, W) or (H, W, 3) or bool (H, W), got {a.dtype} {a.shape}"
        )
    buf = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | os.PathLike[str], image: Any) -> Path:
    """Write ``image`` (see :func:`encode_png`) as PNG atomically; returns the path."""
    return atomic_write_bytes(path, encode_png(image))


def encode_mask_png(mask: Any) -> bytes:
    """An 8-bit grayscale PNG with 0 (background) and 255 (foreground)."""
    return encode_png(as_binary_mask(mask))


def write_mask_png(
    path: str | os.PathLike[str], mask: Any, *, like: LoadedImage | None = None
) -> Path:
    """Write ``mask`` as a 0/255 PNG at the image's original size; returns the path."""
    as_binary_mask(mask, like)
    return atomic_write_bytes(path, encode_mask_png(mask))


# ----------------------------------------------------------------------------- NIfTI
def mask_nifti_image(mask: Any, like: LoadedImage | None = None):
    """The nibabel image ``write_mask_nifti`` writes (uint8 voxels, 0 / 1).

    - ``like`` read from NIfTI: the input volume's spatial shape (a 4-D input gives its 3-D
      shape, a 2-D input stays 2-D), its header (qform / sform and their codes, pixdim, units)
      and affine; the mask fills the slice it was read from (same ``SliceLayout``), zeros
      elsewhere.
    - otherwise a one-slice volume (W, H, 1) with voxel (i, j, 0) = mask[row j, column i] and
      the DICOM frame's affine when ``like`` has one (world-aligned over the series), else
      diag(column spacing, row spacing, 1) (or the identity when the spacing is unknown).
    """
    from medsam_agent_rt.io.nifti import import_nibabel

    nib = import_nibabel()
    m = as_binary_mask(mask, like).astype(np.uint8)
    if like is not None and like.layout is not None and like.nifti_header is not None:
        volume = like.layout.insert(m)
        if len(like.original_shape) < 3:
            volume = volume.reshape(like.original_shape)
        return label_nifti_image(volume, like.nifti_header)
    if like is not None and like.affine is not None:
        affine, code = np.asarray(like.affine, dtype=np.float64), "scanner"
    else:
        sy, sx = like.spacing if like is not None and like.spacing else (1.0, 1.0)
        affine, code = np.diag([sx, sy, 1.0, 1.0]), "aligned"
    volume = np.ascontiguousarray(m.T[:, :, None])
    img = nib.Nifti1Image(volume, affine)
    img.set_qform(affine, code=code)
    img.set_sform(affine, code=code)
    img.header.set_xyzt_units("mm")
    return label_nifti_image(volume, img.header)


def label_nifti_image(volume: np.ndarray, header: Any):
    """A uint8 label NIfTI of ``volume`` (0 / 1 voxels) with a copy of ``header`` (its
    geometry: qform / sform and codes, pixdim, units; NIfTI-1 or -2 kept), no scaling,
    cal range 0..1, intent "label"."""
    from medsam_agent_rt.io.nifti import import_nibabel

    nib = import_nibabel()
    header = header.copy()
    cls = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(None, None)
    img = cls(np.asarray(volume, np.uint8), None, header=header)
    img.header["cal_min"], img.header["cal_max"] = 0.0, 1.0
    img.header["descrip"] = b"medsam-agent-rt mask"
    img.header.set_intent("label")
    return img


def write_mask_nifti(
    path: str | os.PathLike[str], mask: Any, like: LoadedImage | None = None
) -> Path:
    """Write ``mask`` as NIfTI (``.nii`` or ``.nii.gz``) aligned to the input (see
    ``mask_nifti_image``); returns the path."""
    path = Path(path)
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise ValueError(f"path must end in .nii or .nii.gz, got {path.name!r}")
    return write_nifti_image(path, mask_nifti_image(mask, like))


def write_nifti_image(path: str | os.PathLike[str], img: Any) -> Path:
    """Write a nibabel image to ``.nii`` / ``.nii.gz`` (gzip without a timestamp), atomically."""
    path = Path(path)
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise ValueError(f"path must end in .nii or .nii.gz, got {path.name!r}")
    data = img.to_bytes()
    if name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, data)


# ----------------------------------------------------------------------------- JSON
def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_json(data: Any, *, indent: int | None = 2) -> bytes:
    """UTF-8 JSON of ``data`` (NumPy scalars / arrays, Paths and objects with ``to_dict()`` are
    converted). NaN and infinity are refused (strict JSON: use None for a missing score). Text
    that UTF-8 cannot encode (an unpaired surrogate in a model's output) is written as its
    ``\\udXXX`` JSON escape, which reads back as the same string: nothing is lost."""
    if hasattr(data, "to_dict") and not isinstance(data, dict):
        data = data.to_dict()
    try:
        text = json.dumps(
            data, indent=indent, allow_nan=False, default=_json_default, ensure_ascii=False
        )
    except ValueError as e:
        raise ValueError(
            f"data must not contain NaN or infinity (strict JSON; use None): {e}"
        ) from e
    except TypeError as e:
        raise TypeError(f"data must be JSON-serialisable: {e}") from e
    return json_bytes(text + "\n")


def json_bytes(text: str) -> bytes:
    """UTF-8 bytes of JSON ``text``; unpaired surrogates (only possible inside JSON strings)
    become ``\\udXXX`` escapes (valid JSON, read back as the same code point)."""
    return text.encode("utf-8", "backslashreplace")


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` (e.g. ``trajectory.to_dict()``) as JSON atomically; returns the path."""
    return atomic_write_bytes(path, encode_json(data, indent=indent))
