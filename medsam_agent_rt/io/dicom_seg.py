"""DICOM Segmentation (SEG) objects for a mask volume over a DICOM series (highdicom, extra
``dicomseg``): one binary segment, one frame per source slice that holds the mask (empty frames
omitted), each frame referencing its source image (SOP Instance UID) and carrying its plane
position, so viewers and PACS place it on the series.

    write_dicom_seg(mask_volume, source_datasets, "mask_seg.dcm", label="liver")

``mask_volume`` is (D, H, W) bool in the order of ``source_datasets`` (D single-frame images of
one series, H = Rows, W = Columns).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.io.errors import missing_extra

ALGORITHM = "medsam-agent-rt"


def import_highdicom():
    try:
        import highdicom
    except ImportError:
        raise missing_extra("highdicom", "dicomseg", "writing DICOM-SEG files") from None
    return highdicom


def read_source_datasets(files: Sequence[str | os.PathLike[str]]) -> list[Any]:
    """The pydicom data sets of a series' files (pixel data included: highdicom checks it)."""
    from medsam_agent_rt.io.dicom import import_pydicom

    pydicom = import_pydicom()
    return [pydicom.dcmread(f) for f in files]


def dicom_seg(mask_volume: np.ndarray, source_datasets: Sequence[Any], label: str = "target"):
    """The highdicom ``Segmentation`` of ``mask_volume`` (module docstring). Raises ValueError
    when the mask's shape does not match the sources (count, rows, columns)."""
    hd = import_highdicom()
    from pydicom.sr.codedict import codes

    from medsam_agent_rt import __version__

    mask = np.asarray(mask_volume)
    if mask.ndim != 3:
        raise ValueError(f"mask_volume must be (D, H, W), got shape {mask.shape}")
    sources = list(source_datasets)
    first = sources[0] if sources else None
    want = (len(sources), int(first.Rows), int(first.Columns)) if first is not None else (0,)
    if mask.shape != want:
        raise ValueError(
            f"mask_volume is {mask.shape} but the source series is {want} (slices, rows, columns)"
        )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=str(label)[:64] or "target",
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=ALGORITHM,
            version=__version__,
            family=codes.cid7162.ArtificialIntelligence,
        ),
    )
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=int(getattr(first, "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=ALGORITHM,
        manufacturer_model_name=ALGORITHM,
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"{ALGORITHM} {label}"[:64],
    )


def write_dicom_seg(
    mask_volume: np.ndarray,
    source_datasets: Sequence[Any],
    path: str | os.PathLike[str],
    label: str = "target",
) -> Path:
    """Write the DICOM-SEG of ``mask_volume`` over ``source_datasets`` to ``path`` (atomic)."""
    from medsam_agent_rt.io.atomic import atomic_write_bytes

    seg = dicom_seg(mask_volume, source_datasets, label)
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return atomic_write_bytes(path, buffer.getvalue())


def write_image_dicom_seg(
    path: str | os.PathLike[str], mask: np.ndarray, like: Any, label: str = "target"
) -> Path:
    """Write the DICOM-SEG of a 2-D ``mask`` (H, W) over the DICOM image it was drawn on.

    like: the ``io.LoadedImage`` of a single-frame DICOM file or of one slice of a series (its
    ``info["file"]`` names the slice's file). Raises ValueError for other inputs."""
    if like.format != "dicom":
        raise ValueError(f"DICOM-SEG needs a DICOM input; this image is {like.format!r}")
    if like.frame_count > 1:
        raise ValueError(
            "DICOM-SEG of one frame of a multi-frame DICOM file is not supported; "
            "download mask.nii.gz or mask.png"
        )
    source = like.info.get("file", like.path)
    return write_dicom_seg(
        np.asarray(mask, bool)[None], read_source_datasets([source]), path, label
    )
