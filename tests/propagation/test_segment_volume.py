"""``medsam-agent segment VOLUME --propagate`` (NIfTI and DICOM series), the volume reader and the
DICOM-SEG writer. A threshold stand-in segmenter keeps it fast; every figure is checked against
an independent computation (NumPy Dice on the written files, the tracker run by hand on the
slices, the geometry from the DICOM positions, the SEG read back by highdicom)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.cli import main
from medsam_agent_rt.data.sequences import phantom_volume, write_sequences
from medsam_agent_rt.io import read_image
from medsam_agent_rt.propagation import BoxTracker, nsd_3d, propagate_volume

nib = pytest.importorskip("nibabel")


@pytest.fixture(scope="module")
def phantom_nifti(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq")
    write_sequences(d, 1, size=64, depth=8)
    return d / "volume_0.nii.gz", d / "volume_0_organ.nii.gz"


def _segment(capsys, *argv):
    code = main(["segment", *map(str, argv), "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def _dice(a, b):
    a, b = a != 0, b != 0
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def test_nifti_volume_propagates_and_scores_in_3d(
    phantom_nifti, threshold_segmenter, standins, tmp_path, capsys
):
    from medsam_agent_rt.io.volume import read_volume

    image, gt_path = phantom_nifti
    out = tmp_path / "out"
    code, summary, err = _segment(
        capsys,
        image,
        "--target",
        "organ",
        "--policy",
        "oracle-box",
        "--gt",
        gt_path,
        "--propagate",
        "--out",
        out,
    )
    assert code == 0, err
    src, gt = nib.load(str(image)), np.asarray(nib.load(str(gt_path)).dataobj)
    written = nib.load(str(out / "mask.nii.gz"))
    assert written.shape == src.shape and np.allclose(written.affine, src.affine)
    mask_vox = np.asarray(written.dataobj)
    report = json.loads((out / "propagation.json").read_text())
    # key slice: the largest GT area along voxel axis 2, computed on the raw GT file
    k = int(np.argmax(gt.sum(axis=(0, 1))))
    assert report["key_slice"] == summary["volume"]["key_slice"] == k
    # the 3-D Dice and NSD are those of the written file against the GT file
    assert report["dice_3d"] == pytest.approx(_dice(mask_vox, gt), abs=1e-4)
    zooms = src.header.get_zooms()
    spacing_zyx = (zooms[2], zooms[1], zooms[0])
    nsd = nsd_3d(mask_vox.transpose(2, 1, 0) != 0, gt.transpose(2, 1, 0) != 0, spacing_zyx, 2.0)
    assert report["nsd_2mm"] == pytest.approx(nsd, abs=1e-4)
    assert report["dice_3d"] > 0.8 and summary["dice"] > 0.9  # the stand-in segments the organ
    # the key slice's mask in the volume is the episode's mask.png
    volume = read_volume(image, key_index=k)
    key_png = np.asarray(Image.open(out / "mask.png")) > 0
    np.testing.assert_array_equal(volume.from_voxels(mask_vox)[k], key_png)
    # the other slices: the box tracker run by hand from that key mask
    by_hand, _ = propagate_volume(
        volume.slices, k, key_png, lambda: BoxTracker(standins.ThresholdSegmenter())
    )
    np.testing.assert_array_equal(volume.from_voxels(mask_vox), by_hand)
    assert "3-D Dice" in err and report["tracker"] == "box"


def test_volume_slices_match_the_2d_reader_and_round_trip_an_oblique_affine(tmp_path):
    from medsam_agent_rt.io.volume import read_mask_volume, read_volume, write_mask_volume_nifti

    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1500, (20, 16, 5)).astype(np.int16)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.array(
        [[-0.7 * c, 0.9 * s, 0, 10], [0.7 * s, 0.9 * c, 0, -5], [0, 0, -3, 7], [0, 0, 0, 1]]
    )
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "v.nii.gz"))
    labels = (rng.random(data.shape) > 0.7).astype(np.uint8)
    nib.save(nib.Nifti1Image(labels, affine), str(tmp_path / "gt.nii.gz"))
    vol = read_volume(tmp_path / "v.nii.gz", window="abdomen")
    for k in range(5):  # each slice is what `segment --slice k --window abdomen` sees
        ref = read_image(tmp_path / "v.nii.gz", slice_index=k, window="abdomen").rgb
        np.testing.assert_array_equal(vol.slices[k], ref)
    gt = read_mask_volume(tmp_path / "gt.nii.gz", vol)
    assert gt.shape == vol.slices.shape[:3]
    write_mask_volume_nifti(tmp_path / "m.nii.gz", gt, vol)
    back = nib.load(str(tmp_path / "m.nii.gz"))
    np.testing.assert_array_equal(np.asarray(back.dataobj), labels)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    # default intensity: one percentile window for every slice
    lo, hi = np.percentile(data.astype(np.float64), [0.5, 99.5])
    assert read_volume(tmp_path / "v.nii.gz").window == pytest.approx(((lo + hi) / 2, hi - lo))


@pytest.fixture
def ct_series(tmp_path, standins):
    vol = phantom_volume(1, 6, 48)
    d = standins.write_ct_series(vol.frames, vol.spacing, tmp_path / "series")
    return d, vol


def test_dicom_series_writes_series_geometry_and_a_seg(
    ct_series, threshold_segmenter, tmp_path, capsys
):
    hd = pytest.importorskip("highdicom")
    import pydicom

    series, vol = ct_series
    gt = vol.masks["organ"]
    np.save(tmp_path / "gt.npy", gt)
    out = tmp_path / "out"
    code, summary, err = _segment(
        capsys,
        series,
        "--target",
        "organ",
        "--policy",
        "oracle-box",
        "--gt",
        tmp_path / "gt.npy",
        "--propagate",
        "--out",
        out,
    )
    assert code == 0, err
    assert set(summary["volume"]["files"]) == {"mask.nii.gz", "mask_seg.dcm", "propagation.json"}
    written = nib.load(str(out / "mask.nii.gz"))
    # geometry from the files: LPS (x, y) = (-20 + 0.8 col, -30 + 0.8 row), z = 10 + 2.5 k
    expected = np.array([[-0.8, 0, 0, 20], [0, -0.8, 0, 30], [0, 0, 2.5, 10], [0, 0, 0, 1]])
    np.testing.assert_allclose(written.affine, expected, atol=1e-4)
    mask = np.asarray(written.dataobj).transpose(2, 1, 0) != 0  # (slices, rows, cols)
    report = json.loads((out / "propagation.json").read_text())
    assert report["dice_3d"] == pytest.approx(_dice(mask, gt), abs=1e-4) and report["dice_3d"] > 0.7
    # the SEG: frames equal the mask on the slices it references, in the series' frame of ref
    files = sorted(series.iterdir())
    sources = sorted((pydicom.dcmread(f) for f in files), key=lambda ds: ds.InstanceNumber)
    seg = hd.seg.segread(out / "mask_seg.dcm")
    uids = [ds.SOPInstanceUID for ds in sources]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1], ignore_spatial_locations=True
    )
    np.testing.assert_array_equal(pixels[..., 0] != 0, mask)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID


def test_write_dicom_seg_rejects_a_mask_of_another_shape(ct_series):
    pytest.importorskip("highdicom")
    from medsam_agent_rt.io.dicom_seg import read_source_datasets, write_dicom_seg

    series, vol = ct_series
    sources = read_source_datasets(sorted(series.iterdir()))
    with pytest.raises(ValueError, match=r"\(5, 48, 48\).*\(6, 48, 48\)"):
        write_dicom_seg(vol.masks["organ"][:5], sources, series.parent / "x.dcm")


@pytest.mark.parametrize(
    "case, needle",
    [
        ("2d", "propagation needs a volume"),
        ("gt_shape", "must share the voxel grid"),
        ("slice", "out of range"),
        ("empty_key", "the mask is empty on the key slice 0"),
    ],
)
def test_bad_volume_input_exits_2_and_writes_nothing(
    case, needle, phantom_nifti, threshold_segmenter, tmp_path, capsys
):
    image, gt = phantom_nifti
    args = ["--policy", "oracle-box", "--gt", gt]
    if case == "2d":
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "flat.png")
        image, args = tmp_path / "flat.png", ["--policy", "oracle-box"]
    elif case == "gt_shape":
        nib.save(
            nib.Nifti1Image(np.ones((64, 64, 7), np.uint8), np.eye(4)), str(tmp_path / "g.nii")
        )
        args = ["--policy", "oracle-box", "--gt", tmp_path / "g.nii"]
    elif case == "slice":
        args += ["--slice", "8"]
    else:
        args += ["--slice", "0"]  # the phantom organ starts after slice 0
    out = tmp_path / "out"
    code, _, err = _segment(capsys, image, "--target", "organ", *args, "--propagate", "--out", out)
    assert code == 2 and needle in err, err
    assert not out.exists()


def test_the_segmenter_family_picks_the_tracker(standins):
    pytest.importorskip("torch")
    from medsam_agent_rt.propagation.tracker import tracker_factory
    from medsam_agent_rt.segmenters.sam2.config import preset
    from medsam_agent_rt.segmenters.sam2.model import Sam2Model
    from medsam_agent_rt.segmenters.sam2.tracking import Sam2Tracker

    class Sam2Segmenter:
        family, model = "medsam2", Sam2Model(preset("medsam2_512"))

    kind, make = tracker_factory(Sam2Segmenter())
    tracker = make()
    assert kind == "sam2" and isinstance(tracker, Sam2Tracker)
    assert tracker.model is Sam2Segmenter.model and make() is not tracker  # fresh per direction
    seg = standins.ThresholdSegmenter()
    kind, make = tracker_factory(seg)
    assert kind == "box" and isinstance(make(), BoxTracker) and make().segmenter is seg
    with pytest.raises(ValueError, match="SAM2 / MedSAM2 checkpoint"):
        tracker_factory(seg, "sam2")


@pytest.mark.parametrize("reprompt", [False, True])
def test_reprompt_runs_the_agent_where_the_tracker_loses_the_target(
    reprompt, threshold_segmenter, tmp_path, capsys
):
    # a bright square that jumps 24 px between slices 3 and 4: the box from slice 3 misses it
    data = np.full((48, 48, 7), 20, np.int16)  # voxel (x, y, z)
    gt = np.zeros(data.shape, np.uint8)
    for z in range(7):
        x0 = 6 if z <= 3 else 30
        gt[x0 : x0 + 12, 10:22, z] = 1
    data[gt > 0] = 240
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "v.nii.gz"))
    nib.save(nib.Nifti1Image(gt, np.eye(4)), str(tmp_path / "gt.nii.gz"))
    out = tmp_path / "out"
    extra = ["--reprompt"] if reprompt else []
    code, _, err = _segment(
        capsys,
        tmp_path / "v.nii.gz",
        "--target",
        "square",
        "--policy",
        "oracle-box",
        "--gt",
        tmp_path / "gt.nii.gz",
        "--slice",
        "1",
        "--propagate",
        "--out",
        out,
        *extra,
    )
    assert code == 0, err
    report = json.loads((out / "propagation.json").read_text())
    mask = np.asarray(nib.load(str(out / "mask.nii.gz")).dataobj) != 0
    per_slice = mask.sum(axis=(0, 1))
    # the tracker follows the square up to slice 3 (slice 1: the episode's box, a pixel short
    # of the square on the 0..999 grid; the tracker's box margin recovers it)
    assert per_slice[1] >= 110 and (per_slice[[0, 2, 3]] == 144).all()
    assert report["dice_3d"] == pytest.approx(_dice(mask, gt != 0), abs=1e-4)
    if reprompt:  # slice 4: a new episode, then tracking again
        assert report["reprompted_slices"] == [4] and per_slice[4] >= 110
        assert (per_slice[5:] == 144).all() and report["dice_3d"] > 0.95
    else:
        assert report["reprompted_slices"] is None and not per_slice[4:].any()
