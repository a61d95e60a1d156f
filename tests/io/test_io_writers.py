"""Writers: content read back with Pillow / nibabel / json, geometry checked against DICOM tags,
and failures that leave nothing behind (no temporary file, old target unchanged)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.io import atomic as atomic_mod
from medsam_agent_rt.io import (
    atomic_directory,
    read_image,
    write_json,
    write_mask_nifti,
    write_mask_png,
)


def _mask(shape, seed=0):
    return np.random.default_rng(seed).random(shape) > 0.6


def test_mask_png_round_trip(tmp_path, demo_png):
    loaded = read_image(demo_png)
    mask = _mask(loaded.shape)
    out = write_mask_png(tmp_path / "mask.png", mask, like=loaded)
    with Image.open(out) as im:
        assert im.mode == "L" and im.size == (1024, 1024)
        back = np.asarray(im)
    np.testing.assert_array_equal(back, mask.astype(np.uint8) * 255)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png"]
    label = np.where(mask, 7, 0).astype(np.int32)  # any non-zero integer is foreground
    write_mask_png(tmp_path / "mask2.png", label)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "mask2.png")), back)


def _umask():
    current = os.umask(0)
    os.umask(current)
    return current


def test_bad_masks_write_nothing(tmp_path, demo_png):
    loaded = read_image(demo_png)
    with pytest.raises(ValueError, match=r"mask must have the image's size \(1024, 1024\)"):
        write_mask_png(tmp_path / "m.png", np.zeros((512, 512), bool), like=loaded)
    with pytest.raises(ValueError, match="mask must be bool or integer.*float32"):
        write_mask_png(tmp_path / "m.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"mask must be a non-empty \(H, W\) array, got 3-D"):
        write_mask_png(tmp_path / "m.png", np.zeros((4, 4, 1), bool))
    with pytest.raises(ValueError, match=r"path must end in \.nii or \.nii\.gz"):
        write_mask_nifti(tmp_path / "m.png", np.zeros((4, 4), bool))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stage", ["fsync", "replace"])
def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch, stage):
    target = tmp_path / "traj.json"
    target.write_text('{"old": true}')

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_mod.os, stage, boom)
    with pytest.raises(OSError, match="No space left"):
        write_json(target, {"new": 1})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["traj.json"]


def test_interrupted_write_is_cleaned_up(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic_mod.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_mask_png(tmp_path / "m.png", np.ones((3, 3), bool))
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_and_directory_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="output directory does not exist"):
        write_json(tmp_path / "nope" / "t.json", {})
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        write_json(tmp_path / "d", {})


def test_json_round_trip_and_strictness(tmp_path):
    class Record:
        def to_dict(self):
            return {"turns": [{"iou": np.float32(0.5), "xy": np.array([1, 2])}], "n": np.int64(3)}

    out = write_json(tmp_path / "t.json", Record())
    assert json.loads(out.read_text()) == {"turns": [{"iou": 0.5, "xy": [1, 2]}], "n": 3}
    with pytest.raises(ValueError, match="NaN or infinity"):
        write_json(tmp_path / "nan.json", {"dice": float("nan")})
    with pytest.raises(TypeError, match="JSON-serialisable.*object"):
        write_json(tmp_path / "obj.json", {"x": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_nifti_mask_for_dicom_is_world_aligned(tmp_path, dicom_file):
    nib = pytest.importorskip("nibabel")
    pydicom = pytest.importorskip("pydicom")
    path = dicom_file("CT_small.dcm")
    loaded = read_image(path)
    mask = np.zeros(loaded.shape, bool)
    mask[10, 3] = True
    img = nib.load(write_mask_nifti(tmp_path / "m.nii.gz", mask, like=loaded))
    data = np.asanyarray(img.dataobj)
    assert data.shape == (128, 128, 1) and data[3, 10, 0] == 1 and data.sum() == 1
    ds = pydicom.dcmread(path)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    dr, dc = (float(v) for v in ds.PixelSpacing)
    lps = ipp + 3 * dc * iop[:3] + 10 * dr * iop[3:]  # pixel (row 10, column 3)
    world = nib.affines.apply_affine(img.affine, [3, 10, 0])
    np.testing.assert_allclose(world, [-lps[0], -lps[1], lps[2]], atol=1e-4)
    assert img.header.get_sform(coded=True)[1] == 1  # scanner


def test_nifti_mask_for_png(tmp_path, demo_png):
    nib = pytest.importorskip("nibabel")
    loaded = read_image(demo_png)
    mask = _mask(loaded.shape, 1)
    data = np.asanyarray(nib.load(write_mask_nifti(tmp_path / "m.nii", mask, like=loaded)).dataobj)
    assert data.shape == (1024, 1024, 1)
    np.testing.assert_array_equal(data[:, :, 0], mask.T.astype(np.uint8))


def test_atomic_directory(tmp_path):
    out = tmp_path / "run"
    with atomic_directory(out) as tmp:
        write_json(tmp / "a.json", {"a": 1})
        assert not out.exists()
    assert [p.name for p in out.iterdir()] == ["a.json"]
    with pytest.raises(FileExistsError, match="not empty"):
        with atomic_directory(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(out, overwrite=True) as tmp:
            write_json(tmp / "b.json", {})
            raise RuntimeError("episode failed")
    assert [p.name for p in out.iterdir()] == ["a.json"]  # untouched
    with atomic_directory(out, overwrite=True) as tmp:
        write_json(tmp / "b.json", {})
    assert [p.name for p in out.iterdir()] == ["b.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporaries left
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_directory(empty) as tmp:
        write_json(tmp / "c.json", {})
    assert [p.name for p in empty.iterdir()] == ["c.json"]
