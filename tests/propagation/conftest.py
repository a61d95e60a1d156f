"""A synthetic CT series (one file per slice, real geometry) written from a phantom volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_ct_series(frames: np.ndarray, spacing, out_dir: Path, shuffle_names: bool = True):
    """frames (D, H, W) uint8 -> D CT files (HU = value * 4 - 500, window 0/1000) with Image
    Position stepping by spacing[0] along +z; file names in reverse slice order so that readers
    must sort by position. Returns the folder."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    out_dir.mkdir(parents=True, exist_ok=True)
    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    d = len(frames)
    for k, img in enumerate(frames):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
            "Phantom^Test",
            "P0",
            "",
            "O",
        )
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame_of_ref
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "000000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, k + 1
        ds.Manufacturer = "test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [-20.0, -30.0, 10.0 + spacing[0] * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = img.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -500, 4, "HU"
        ds.WindowCenter, ds.WindowWidth = 0, 1000
        ds.PixelData = img.astype(np.int16).tobytes()
        name = f"im{(d - 1 - k) if shuffle_names else k:04d}.dcm"
        pydicom.dcmwrite(out_dir / name, ds, enforce_file_format=True)
    return out_dir


class ThresholdSegmenter:
    """Stand-in Segmenter for fast CLI tests: inside the box prompt (or around the clicks), the
    pixels brighter than ``level`` (channel 0); score 0.9."""

    family, backend, spec = "litemedsam", "fake", "threshold"

    def __init__(self, level: int = 150) -> None:
        self.level, self.calls = level, 0

    def encode(self, image):
        from medsam_agent_rt.segmenters import Encoded

        image = np.asarray(image)
        return Encoded(image, image.shape[:2], image.shape[:2], str(hash(image.tobytes())))

    def decode(
        self, encoded, point_coords=None, point_labels=None, box=None, mask_input=None,
        multimask_output=True,
    ):  # fmt: skip
        from medsam_agent_rt.segmenters.base import Prediction

        self.calls += 1
        img = encoded.embedding
        h, w = img.shape[:2]
        if box is None:
            (x, y), r = np.asarray(point_coords)[0], 12
            box = (x - r, y - r, x + r, y + r)
        x1, y1, x2, y2 = (int(round(v)) for v in np.asarray(box).reshape(-1)[:4])
        m = np.zeros((h, w), bool)
        m[max(y1, 0) : y2, max(x1, 0) : x2] = img[max(y1, 0) : y2, max(x1, 0) : x2, 0] > self.level
        n = 3 if multimask_output else 1
        logits = np.zeros((n, 256, 256), np.float32)
        return Prediction(np.repeat(m[None], n, 0), np.full(n, 0.9, np.float32), logits)


@pytest.fixture
def threshold_segmenter(monkeypatch):
    """Every ``build_segmenter`` call of the CLI returns this one ThresholdSegmenter."""
    import medsam_agent_rt.segmenters as segmenters

    seg = ThresholdSegmenter()
    monkeypatch.setattr(segmenters, "build_segmenter", lambda *a, **k: seg)
    return seg


@pytest.fixture
def standins():
    """The helpers of this conftest for tests that call them directly."""
    import types

    return types.SimpleNamespace(
        ThresholdSegmenter=ThresholdSegmenter, write_ct_series=write_ct_series
    )
