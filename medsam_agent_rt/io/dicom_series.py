"""A DICOM series given as a directory (CT / MR stacks: one file per slice).

The directory's files (not recursive; hidden files and DICOMDIR skipped; files without the
'DICM' marker are not considered) are read header-only. Those holding an image must belong to
ONE series (else the error lists the series found). Slices are ordered along the slice normal
(Image Position projected on the cross product of Image Orientation's direction cosines), else
by Instance Number, else by file name. ``slice_index`` picks one (default: the middle slice,
``n // 2``), which is then read like a single file (``read_dicom``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from medsam_agent_rt.io.dicom import import_pydicom, read_dicom
from medsam_agent_rt.io.errors import ImageReadError
from medsam_agent_rt.io.loaded import LoadedImage
from medsam_agent_rt.io.windowing import WindowArg

_TAGS = [
    "SeriesInstanceUID",
    "SeriesDescription",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "InstanceNumber",
    "Rows",
    "Columns",
]


def read_dicom_series(
    directory: str | os.PathLike[str],
    *,
    slice_index: int | None = None,
    frame: int | None = None,
    window: WindowArg = None,
) -> LoadedImage:
    """Read slice ``slice_index`` of the DICOM series in ``directory`` (module docstring)."""
    directory = Path(directory)
    files, order = sort_series(directory)
    n = len(files)
    if slice_index is None:
        k = n // 2
    else:
        if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)):
            raise ValueError(f"slice_index must be an int or None, got {slice_index!r}")
        if not 0 <= int(slice_index) < n:
            raise ImageReadError(
                directory,
                f"slice_index {slice_index} is out of range: the series has {n} slices "
                f"(0..{n - 1})",
            )
        k = int(slice_index)
    loaded = read_dicom(files[k], frame=frame, window=window)
    info = {**loaded.info, "file": str(files[k]), "series_order": order}
    return dataclasses.replace(loaded, path=str(directory), slice_index=k, slice_count=n, info=info)


def sort_series(directory: Path) -> tuple[list[Path], str]:
    """The image files of the one series in ``directory`` in slice order, and how they were
    ordered ("position", "instance_number" or "file_name")."""
    pydicom = import_pydicom()
    headers = []
    looked = 0
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name.upper() == "DICOMDIR":
            continue
        looked += 1
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except Exception:  # noqa: BLE001 - anything that is not a readable DICOM file is skipped
            continue
        if "Rows" in ds and "Columns" in ds:
            headers.append((path, ds))
    if not headers:
        raise ImageReadError(
            directory,
            f"is a directory without DICOM images ({looked} files looked at); pass an image "
            "file, a NIfTI volume or a directory holding one DICOM series",
        )
    series: dict[str, list] = {}
    for path, ds in headers:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    if len(series) > 1:
        found = "; ".join(
            f"{uid or '(no UID)'}: {len(items)} images"
            + (
                f" '{items[0][1].get('SeriesDescription')}'"
                if items[0][1].get("SeriesDescription")
                else ""
            )
            for uid, items in series.items()
        )
        raise ImageReadError(
            directory, f"holds {len(series)} DICOM series ({found}); pass a directory with one"
        )
    (items,) = series.values()
    keys = [_position_key(ds) for _, ds in items]
    if all(k is not None for k in keys):
        order = "position"
        ranked = sorted(zip(keys, range(len(items))), key=lambda t: t[0])
    elif all(ds.get("InstanceNumber") is not None for _, ds in items):
        order = "instance_number"
        ranked = sorted(((int(ds.InstanceNumber), i) for i, (_, ds) in enumerate(items)))
    else:
        order = "file_name"
        ranked = [(0, i) for i in range(len(items))]
    return [items[i][0] for _, i in ranked], order


def _position_key(ds) -> float | None:
    position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if not position or not orientation or len(orientation) != 6 or len(position) != 3:
        return None
    normal = np.cross([float(v) for v in orientation[:3]], [float(v) for v in orientation[3:]])
    return float(np.dot(normal, [float(v) for v in position]))
