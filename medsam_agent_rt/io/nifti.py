"""NIfTI-1 / NIfTI-2 reader (nibabel, extra ``medical``): one 2-D slice of a 3-D volume, or of
one volume of a 4-D series.

- ``axis`` is a VOXEL axis (0, 1, 2; default 2), ``slice_index`` the index along it (default the
  middle slice, ``n // 2``), ``frame`` the 4-D volume (default 0).
- Layout of the 2-D image (``orientation``, see ``layout``): "display" (default) is the
  radiological view computed from the affine (axial: anterior up, patient's right on the left;
  coronal / sagittal: superior up); "voxel" keeps ``np.take(data, slice_index, axis)`` as is.
  The layout is stored on the result so the mask writer puts the mask back into the same voxels.
- Intensities: the header's scl_slope / scl_inter are applied (nibabel); then an explicit
  ``window`` or preset, else the header's display range cal_min..cal_max when it is set
  (cal_max > cal_min), else min-max over the slice (see ``windowing``).
- The affine (``img.affine``: sform, else qform) and a copy of the header are kept.
- A 2-D NIfTI (X, Y) is treated as an (X, Y, 1) volume.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from medsam_agent_rt.io.errors import ImageReadError, missing_extra
from medsam_agent_rt.io.images import check_frame
from medsam_agent_rt.io.layout import ORIENTATIONS, display_layout, voxel_layout
from medsam_agent_rt.io.limits import check_shape, check_voxels
from medsam_agent_rt.io.loaded import LoadedImage, gray_to_rgb
from medsam_agent_rt.io.windowing import WindowArg, map_to_uint8

_UNIT_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001}


def import_nibabel():
    try:
        import nibabel
    except ImportError:
        raise missing_extra("nibabel", "medical", "reading and writing NIfTI files") from None
    return nibabel


def read_nifti(
    path: str | os.PathLike[str],
    *,
    frame: int | None = None,
    window: WindowArg = None,
    axis: int | None = None,
    slice_index: int | None = None,
    orientation: str = "display",
) -> LoadedImage:
    """Read one slice of a NIfTI volume as a :class:`LoadedImage` (module docstring)."""
    nib = import_nibabel()
    path = Path(path)
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    try:
        img = nib.load(path)
    except Exception as e:  # noqa: BLE001 - ImageFileError, EOFError, zlib.error, OSError...
        raise ImageReadError(path, f"corrupt or unreadable NIfTI file ({e})") from e
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageReadError(path, f"not a NIfTI image (nibabel read a {type(img).__name__})")

    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 4 and any(s != 1 for s in shape[4:]):
        raise ImageReadError(
            path, f"NIfTI with {len(shape)} dimensions {shape} is not supported (at most 4-D)"
        )
    spatial = shape[:3] if len(shape) >= 3 else shape + (1,) * (3 - len(shape))
    count = shape[3] if len(shape) >= 4 else 1
    check_voxels(path, shape)
    check_complete(path, img)
    index = check_frame(path, frame, count)
    axis = _check_choice("axis", 2 if axis is None else axis, 3)
    n = spatial[axis]
    check_shape(path, [d for i, d in enumerate(spatial) if i != axis], f"slice along axis {axis}")
    if slice_index is None:
        slice_index = n // 2
    slice_index = _check_choice("slice_index", slice_index, n, path, f"axis {axis}")

    try:
        plane = _read_plane(img, shape, axis, slice_index, index)
    except Exception as e:  # noqa: BLE001 - truncated data surfaces only when read
        raise ImageReadError(path, f"corrupt NIfTI data ({type(e).__name__}: {e})") from e
    if plane.dtype.names:  # RGB24 / RGBA32 structured voxels
        plane = np.stack([plane[name] for name in plane.dtype.names[:3]], axis=-1)
    if plane.dtype.kind == "c":
        raise ImageReadError(path, f"complex-valued NIfTI data ({plane.dtype}) is not an image")

    layout = None
    if orientation == "display":
        ornt = nib.orientations.io_orientation(img.affine)
        if np.isnan(ornt).any():
            warnings.warn(f"{path}: degenerate affine, slice kept in voxel order", stacklevel=2)
        else:
            layout = display_layout(spatial, axis, slice_index, ornt)
    if layout is None:
        layout = voxel_layout(spatial, axis, slice_index)
    image = layout.extract(plane)

    header = img.header
    cal_min, cal_max = float(header["cal_min"]), float(header["cal_max"])
    file_window = None
    if np.isfinite(cal_min) and np.isfinite(cal_max) and cal_max > cal_min:
        file_window = ((cal_min + cal_max) / 2.0, cal_max - cal_min, "LINEAR_EXACT")
    mapped, mapping = map_to_uint8(image, window, file_window=file_window)
    rgb = gray_to_rgb(mapped) if mapped.ndim == 2 else np.ascontiguousarray(mapped)

    # nibabel moves scl_slope / scl_inter from the header to the data proxy on load
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    rescale = None if (slope, inter) == (1.0, 0.0) else (float(slope), float(inter))
    unit = header.get_xyzt_units()[0]
    zooms = tuple(float(z) for z in header.get_zooms()[:3]) + (1.0,) * 3
    factor = _UNIT_MM.get(unit, 1.0)
    spacing = (zooms[layout.row_axis] * factor, zooms[layout.col_axis] * factor)
    return LoadedImage(
        rgb=rgb,
        path=str(path),
        format="nifti",
        original_dtype=str(img.get_data_dtype()),
        original_shape=shape,
        mapping=mapping,
        rescale=rescale,
        spacing=spacing,
        frame=index,
        frame_count=count,
        axis=axis,
        slice_index=slice_index,
        slice_count=n,
        layout=layout,
        affine=np.array(img.affine, dtype=np.float64),
        nifti_header=header.copy(),
        info={
            "nifti_version": 2 if isinstance(img, nib.Nifti2Image) else 1,
            "axis_codes": "".join(str(c) for c in nib.aff2axcodes(img.affine)),
            "plane": layout.plane,
            "orientation": layout.orientation,
            "qform_code": int(header["qform_code"]),
            "sform_code": int(header["sform_code"]),
            "xyz_unit": unit,
        },
    )


def check_complete(path: Path, img) -> None:
    """ImageReadError when the file holds fewer data bytes than its header declares (a
    truncated download or copy); a .nii.gz is decompressed as a stream to count them."""
    import gzip
    import zlib

    header = img.header
    need = int(header.get_data_offset()) + int(
        np.prod(img.shape, dtype=np.int64) * header.get_data_dtype().itemsize
    )
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if not gz:
        have = os.path.getsize(path)
    else:
        have = 0
        try:
            with gzip.open(path, "rb") as f:
                while have < need:
                    chunk = f.read(min(1 << 20, need - have))
                    if not chunk:
                        break
                    have += len(chunk)
        except (EOFError, OSError, zlib.error) as e:
            raise ImageReadError(
                path, f"truncated or corrupt gzip stream after {have:,} of {need:,} bytes ({e})"
            ) from None
    if have < need:
        raise ImageReadError(
            path, f"truncated: the header declares {need:,} bytes of data, the file holds {have:,}"
        )


def _check_choice(name, value, n, path=None, where=""):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int or None, got {value!r}")
    if not 0 <= int(value) < n:
        if path is None:
            raise ValueError(f"{name} must be in 0..{n - 1}, got {value}")
        raise ImageReadError(
            path, f"{name} {value} is out of range: {where} has {n} slices (0..{n - 1})"
        )
    return int(value)


def _read_plane(img, shape, axis: int, slice_index: int, frame: int) -> np.ndarray:
    """np.take(volume, slice_index, axis) of the chosen 4-D volume, reading only that slab."""
    if len(shape) < 3:
        data = np.asanyarray(img.dataobj).reshape(shape + (1,) * (3 - len(shape)))
        return np.take(data, slice_index, axis=axis)
    index: list = [slice(None)] * 3
    index[axis] = slice_index
    index += [frame] if len(shape) >= 4 else []
    index += [0] * (len(shape) - 4)
    return np.asanyarray(img.dataobj[tuple(index)])
