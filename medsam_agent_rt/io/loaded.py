"""``LoadedImage``: what every reader returns — the RGB uint8 image the agent sees plus the
metadata needed to audit it and to write masks aligned to the input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsam_agent_rt.io.layout import SliceLayout
from medsam_agent_rt.io.windowing import IntensityMapping


@dataclass
class LoadedImage:
    """An input image ready for the agent.

    rgb: (H, W, 3) uint8 — grayscale replicated to three channels, alpha dropped.
    path, format: the source file (or DICOM series directory) and "png" | "jpeg" | "tiff" |
        "bmp" | "dicom" | "nifti".
    original_dtype, original_shape: the stored data before any mapping (whole file: all frames,
        the whole volume; Pillow / pydicom / nibabel axis order).
    mapping: the intensity mapping applied (window, min-max, ...; see ``IntensityMapping``).
    rescale: (slope, intercept) applied before the mapping (DICOM rescale, NIfTI scl_*), if any.
    spacing: (row, column) pixel spacing in mm when the file states it.
    frame, frame_count: the frame / page / 4-D volume index used and how many there are.
    axis, slice_index, slice_count: the sliced voxel axis and slice of a NIfTI volume, or the
        position within a DICOM series (axis None).
    layout: NIfTI only: where the image sits in the volume (``SliceLayout``); the mask writer
        uses it to put the mask back into the same voxels.
    affine: (4, 4) voxel -> world (RAS+, mm). NIfTI: the volume's affine. DICOM: the affine of
        the frame as a one-slice volume with voxel (i, j, 0) = (column, row) when the file has
        Image Position / Orientation (Patient).
    nifti_header: NIfTI only: a copy of the input header (nibabel object).
    modality, photometric: DICOM Modality and Photometric Interpretation as stored.
    info: further format-specific facts (transfer syntax, series UID, window explanation...).
    """

    rgb: np.ndarray
    path: str
    format: str
    original_dtype: str
    original_shape: tuple[int, ...]
    mapping: IntensityMapping
    rescale: tuple[float, float] | None = None
    spacing: tuple[float, float] | None = None
    frame: int | None = None
    frame_count: int = 1
    axis: int | None = None
    slice_index: int | None = None
    slice_count: int | None = None
    layout: SliceLayout | None = None
    affine: np.ndarray | None = None
    nifti_header: Any = None
    modality: str | None = None
    photometric: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3):
            raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {_describe(rgb)}")
        if rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {_describe(rgb)}")

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image; masks for it must have this shape."""
        return (int(self.rgb.shape[0]), int(self.rgb.shape[1]))

    def to_dict(self) -> dict[str, Any]:
        """The metadata as JSON-serialisable values (no pixel data, no header object)."""
        out: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "shape": list(self.shape),
            "original_dtype": self.original_dtype,
            "original_shape": list(self.original_shape),
            "mapping": self.mapping.to_dict(),
            "rescale": list(self.rescale) if self.rescale is not None else None,
            "spacing": list(self.spacing) if self.spacing is not None else None,
            "frame": self.frame,
            "frame_count": self.frame_count,
            "axis": self.axis,
            "slice_index": self.slice_index,
            "slice_count": self.slice_count,
            "layout": self.layout.to_dict() if self.layout is not None else None,
            "affine": np.asarray(self.affine).tolist() if self.affine is not None else None,
            "modality": self.modality,
            "photometric": self.photometric,
            "info": _jsonable(self.info),
        }
        return out


def _describe(x: Any) -> str:
    shape = tuple(getattr(x, "shape", ()))
    return f"{len(shape)}-D {getattr(x, 'dtype', type(x).__name__)} {shape}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8 with the channel replicated."""
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
