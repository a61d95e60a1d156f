"""`medsam-agent data sequences` then `medsam-agent track` on the phantom NIfTI volume (GT-box on
the key slice, mask written with the input's affine, 3-D Dice reported) with the threshold
stand-in replaced by the real embedded LiteMedSAM only in the slow test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsam_agent_rt.cli import main

nib = pytest.importorskip("nibabel")


def test_data_sequences_writes_volumes_and_videos(tmp_path):
    assert main(["data", "sequences", "--out", str(tmp_path), "--depth", "6", "--size", "64"]) == 0
    img = nib.load(str(tmp_path / "volume_0.nii.gz"))
    gt = nib.load(str(tmp_path / "volume_0_organ.nii.gz"))
    assert img.shape == gt.shape == (64, 64, 6)
    assert np.allclose(img.affine, gt.affine) and np.asarray(gt.dataobj).any()
    assert len(list((tmp_path / "video_0" / "frames").glob("*.png"))) == 6


def test_track_reports_a_clear_error(tmp_path, capsys):
    assert main(["track", str(tmp_path / "nope.nii.gz"), "--out", str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err


@pytest.mark.slow
def test_track_volume_with_litemedsam(tmp_path):
    pytest.importorskip("torch")
    data = tmp_path / "data"
    assert main(["data", "sequences", "--out", str(data), "--depth", "8", "--size", "96"]) == 0
    out = tmp_path / "out"
    rc = main([
        "track", str(data / "volume_0.nii.gz"), "--gt", str(data / "volume_0_organ.nii.gz"),
        "--target", "organ", "--out", str(out),
    ])  # fmt: skip
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    written = nib.load(str(out / "mask.nii.gz"))
    src = nib.load(str(data / "volume_0.nii.gz"))
    assert written.shape == src.shape and np.allclose(written.affine, src.affine)
    assert report["dice_3d"] >= 0.75 and report["tracker"] == "box"
