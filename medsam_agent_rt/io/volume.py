"""A whole volume for propagation (``medsam-agent segment VOLUME --propagate``): every slice as
the agent sees it, the key slice as a :class:`LoadedImage`, and the way back from a (D, H, W)
mask to the input's voxel grid.

- NIfTI: slices along the voxel ``axis`` (default 2) in the reader's layout (``"display"``: the
  radiological view, see ``io.layout``), so slice ``k`` equals ``read_image(path, axis=axis,
  slice_index=k, window=volume.window).rgb``; one intensity mapping for the whole volume: the
  given window, else the file's cal_min..cal_max, else the volume's 0.5 / 99.5 percentiles as
  an explicit window (per-slice min-max would change contrast from slice to slice).
- DICOM series (a folder): slices in the order of ``io.dicom_series.sort_series``, each read by
  the DICOM reader (the file's own window unless ``window``); the mask volume's affine is the
  series geometry: the first slice's frame affine with the third column stepping from the first
  slice position to the last.

Shapes: ``slices`` (D, H, W, 3) uint8; masks (D, H, W) bool, D = slices along the axis;
``spacing`` (slice, row, column) in mm.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.io.errors import ImageReadError
from medsam_agent_rt.io.layout import SliceLayout
from medsam_agent_rt.io.loaded import LoadedImage, gray_to_rgb
from medsam_agent_rt.io.windowing import WindowArg


@dataclass
class LoadedVolume:
    """slices (D, H, W, 3) uint8; key: slice ``key.slice_index`` as read by ``read_image``;
    layouts: NIfTI: each slice's place in the voxel grid; affine: (4, 4) voxel -> RAS mm of the
    mask volume ``to_voxels`` returns; spacing (slice, row, col) mm or None; window: the
    intensity mapping used for every slice; files: a DICOM series' files in slice order."""

    path: str
    format: str  # "nifti" | "dicom-series"
    slices: np.ndarray
    key: LoadedImage
    affine: np.ndarray
    spacing: tuple[float, float, float] | None
    window: WindowArg = None
    layouts: list[SliceLayout] | None = None
    files: list[Path] = field(default_factory=list)
    axis: int | None = None

    @property
    def depth(self) -> int:
        return int(self.slices.shape[0])

    def with_key(self, key_index: int) -> LoadedVolume:
        """The same volume with slice ``key_index`` as ``key`` (read like ``read_image`` does)."""
        path = Path(self.path)
        k = _key(path, key_index, self.depth)
        if k == self.key.slice_index:
            return self
        return dataclasses.replace(self, key=_read_key(path, self.format, k, self))

    def to_voxels(self, mask: np.ndarray) -> np.ndarray:
        """(D, H, W) mask -> uint8 0/1 volume on the input's voxel grid (NIfTI: its spatial
        shape, each slice put back by its layout; DICOM: (columns, rows, slices))."""
        mask = np.asarray(mask)
        if mask.shape != self.slices.shape[:3]:
            raise ValueError(f"mask must be {self.slices.shape[:3]}, got {mask.shape}")
        if self.layouts is None:
            return np.ascontiguousarray(mask.transpose(2, 1, 0).astype(np.uint8))
        out = np.zeros(self.layouts[0].volume_shape, np.uint8)
        for k, layout in enumerate(self.layouts):
            index: list[Any] = [slice(None)] * 3
            index[layout.axis] = k
            out[tuple(index)] = layout.to_plane(mask[k].astype(np.uint8))
        return out

    def from_voxels(self, voxels: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_voxels`: a volume on the input's voxel grid -> (D, H, W) bool."""
        if self.layouts is None:
            return np.asarray(voxels).transpose(2, 1, 0) != 0
        return np.stack(
            [lay.extract(np.take(voxels, k, lay.axis)) != 0 for k, lay in enumerate(self.layouts)]
        )


def read_volume(
    path: str | os.PathLike[str],
    *,
    key_index: int | None = None,
    window: WindowArg = None,
    axis: int | None = None,
) -> LoadedVolume:
    """Read a NIfTI volume or a DICOM series folder (module docstring); ``key_index`` (default
    the middle slice) is the slice returned as ``key``. Raises ImageReadError for 2-D inputs,
    single files of other formats and a key slice out of range."""
    from medsam_agent_rt.io.reader import detect_format

    path = Path(path)
    fmt = detect_format(path)
    if fmt == "nifti":
        return _read_nifti_volume(path, key_index, window, 2 if axis is None else axis)
    if fmt == "dicom-series":
        if axis is not None:
            raise ImageReadError(
                path,
                "--axis applies to NIfTI volumes; a DICOM series is "
                "propagated along its slice order",
            )
        return _read_dicom_volume(path, key_index, window)
    raise ImageReadError(
        path,
        f"is a single 2-D {fmt.upper()} image; propagation needs a volume (a NIfTI file or a "
        "folder holding one DICOM series)",
    )


def _key(path: Path, key_index: int | None, n: int) -> int:
    k = n // 2 if key_index is None else int(key_index)
    if not 0 <= k < n:
        raise ImageReadError(
            path, f"slice {k} is out of range: the volume has {n} slices (0..{n - 1})"
        )
    return k


def _series_slice(path: Path, loaded: LoadedImage, files: list, k: int, order: str):
    """A DICOM series slice as ``read_dicom_series`` returns it."""
    info = {**loaded.info, "file": str(files[k]), "series_order": order}
    return dataclasses.replace(
        loaded, path=str(path), slice_index=k, slice_count=len(files), info=info
    )


def _read_key(path: Path, fmt: str, k: int, volume: LoadedVolume) -> LoadedImage:
    if fmt == "nifti":
        from medsam_agent_rt.io.nifti import read_nifti

        orientation = volume.key.layout.orientation if volume.key.layout else "display"
        return read_nifti(
            path, window=volume.window, axis=volume.axis, slice_index=k, orientation=orientation
        )
    from medsam_agent_rt.io.dicom import read_dicom

    order = volume.key.info.get("series_order", "position")
    return _series_slice(
        path, read_dicom(volume.files[k], window=volume.window), volume.files, k, order
    )


def _read_nifti_volume(path: Path, key_index, window: WindowArg, axis: int) -> LoadedVolume:
    from medsam_agent_rt.io.layout import display_layout, voxel_layout
    from medsam_agent_rt.io.nifti import import_nibabel, read_nifti
    from medsam_agent_rt.io.windowing import map_to_uint8, percentile_range

    nib = import_nibabel()
    img = nib.load(path)
    shape = tuple(int(s) for s in img.shape)
    if axis not in (0, 1, 2):
        raise ImageReadError(path, f"axis must be 0, 1 or 2, got {axis}")
    n = shape[axis] if len(shape) >= 3 else 1
    if n < 2:
        raise ImageReadError(
            path, f"is a 2-D image {shape} (1 slice along axis {axis}); propagation needs a volume"
        )
    k = _key(path, key_index, n)
    header = img.header
    has_file_window = float(header["cal_max"]) > float(header["cal_min"])
    data = None
    if window is None and not has_file_window:  # one window for the whole volume
        data = np.asanyarray(img.dataobj if len(shape) == 3 else img.dataobj[..., 0])
        lo, hi = percentile_range(data) or (0.0, 1.0)
        window = ((lo + hi) / 2.0, max(hi - lo, 1e-6))
    # the key slice through the 2-D reader: every check, metadata and the file window rule
    key = read_nifti(path, window=window, axis=axis, slice_index=k)
    if data is None:
        data = np.asanyarray(img.dataobj if len(shape) == 3 else img.dataobj[..., 0])
    ornt = nib.orientations.io_orientation(img.affine)
    spatial = shape[:3]
    file_window = None
    if has_file_window:
        c0, c1 = float(header["cal_min"]), float(header["cal_max"])
        file_window = ((c0 + c1) / 2.0, c1 - c0, "LINEAR_EXACT")
    layouts, slices = [], []
    for i in range(n):
        lay = (
            display_layout(spatial, axis, i, ornt)
            if key.layout is not None and key.layout.orientation == "display"
            else voxel_layout(spatial, axis, i)
        )
        mapped, _ = map_to_uint8(
            lay.extract(np.take(data, i, axis)), window, file_window=file_window
        )
        layouts.append(lay)
        slices.append(gray_to_rgb(mapped))
    zooms = tuple(float(z) for z in header.get_zooms()[:3])
    lay = layouts[k]
    spacing = (zooms[axis], zooms[lay.row_axis], zooms[lay.col_axis])
    return LoadedVolume(
        str(path),
        "nifti",
        np.stack(slices),
        key,
        np.asarray(img.affine, np.float64),
        spacing,
        window,
        layouts,
        axis=axis,
    )


def _read_dicom_volume(path: Path, key_index, window: WindowArg) -> LoadedVolume:
    from medsam_agent_rt.io.dicom import read_dicom
    from medsam_agent_rt.io.dicom_series import sort_series

    files, order = sort_series(path)
    n = len(files)
    if n < 2:
        raise ImageReadError(path, "holds a single DICOM slice; propagation needs a series")
    k = _key(path, key_index, n)
    loaded = [read_dicom(f, window=window) for f in files]
    shapes = {im.shape for im in loaded}
    if len(shapes) > 1:
        raise ImageReadError(path, f"the series' slices differ in size: {sorted(shapes)}")
    key = _series_slice(path, loaded[k], files, k, order)
    first, last = loaded[0], loaded[-1]
    if first.affine is not None and last.affine is not None:
        affine = np.array(first.affine, np.float64)
        affine[:3, 2] = (last.affine[:3, 3] - first.affine[:3, 3]) / (n - 1)
        dz = float(np.linalg.norm(affine[:3, 2]))
    else:
        row, col = first.spacing or (1.0, 1.0)
        affine, dz = np.diag([col, row, 1.0, 1.0]), 1.0
    spacing = None if first.spacing is None else (dz, *first.spacing)
    return LoadedVolume(
        str(path),
        "dicom-series",
        np.stack([im.rgb for im in loaded]),
        key,
        affine,
        spacing,
        window,
        None,
        list(files),
    )


def read_mask_volume(path: str | os.PathLike[str], volume: LoadedVolume) -> np.ndarray:
    """A ground-truth mask volume for ``volume`` -> (D, H, W) bool: a NIfTI on the input's voxel
    grid (NIfTI input: its spatial shape; DICOM series: (columns, rows, slices)) or a .npy of
    (D, H, W). Raises ImageReadError naming both shapes when they differ."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file")
    name = path.name.lower()
    if name.endswith(".npy"):
        mask = np.load(path, allow_pickle=False)
        if mask.shape != volume.slices.shape[:3]:
            raise ImageReadError(
                path,
                f"the mask is {mask.shape} but the volume's slices are "
                f"{volume.slices.shape[:3]} (D, H, W)",
            )
        return mask != 0
    if not name.endswith((".nii", ".nii.gz")):
        raise ImageReadError(path, "a mask volume must be a NIfTI file or a .npy (D, H, W) array")
    from medsam_agent_rt.io.nifti import import_nibabel

    try:
        img = import_nibabel().load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - ImageFileError, EOFError, zlib.error, OSError
        raise ImageReadError(path, f"corrupt or unreadable NIfTI file ({exc})") from None
    data = (
        data.reshape(data.shape[:3])
        if data.ndim > 3 and data.shape[3:] == (1,) * (data.ndim - 3)
        else data
    )
    grid = volume.to_voxels(np.zeros(volume.slices.shape[:3], bool)).shape
    if data.shape != grid:
        raise ImageReadError(
            path,
            f"the mask volume is {data.shape} voxels but the image volume {volume.path} "
            f"is {grid}; they must share the voxel grid",
        )
    return volume.from_voxels(data)


def mask_volume_nifti(mask: np.ndarray, volume: LoadedVolume):
    """The nibabel image of a (D, H, W) mask on the input's voxel grid: NIfTI input: its header
    (qform / sform, pixdim, units) and affine; DICOM series: the series affine (module
    docstring), scanner coordinates, mm."""
    from medsam_agent_rt.io.nifti import import_nibabel
    from medsam_agent_rt.io.writers import label_nifti_image

    nib = import_nibabel()
    voxels = volume.to_voxels(mask)
    if volume.format == "nifti" and volume.key.nifti_header is not None:
        return label_nifti_image(voxels, volume.key.nifti_header)
    img = nib.Nifti1Image(voxels, volume.affine)
    img.set_qform(volume.affine, code="scanner")
    img.set_sform(volume.affine, code="scanner")
    img.header.set_xyzt_units("mm")
    return label_nifti_image(voxels, img.header)


def write_mask_volume_nifti(path: str | os.PathLike[str], mask: np.ndarray, volume: LoadedVolume):
    """Write a (D, H, W) mask as ``.nii`` / ``.nii.gz`` on the input's grid (atomic)."""
    from medsam_agent_rt.io.writers import write_nifti_image

    return write_nifti_image(path, mask_volume_nifti(mask, volume))
