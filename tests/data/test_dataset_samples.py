"""``Sample``: lazy pixels read through ``medsam_agent_rt.io`` (any format it reads, NIfTI mask
volumes cut like their image), shape checks, records; the mask reader and the PNG writer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.data import Sample, counts, filter_samples, group_by_image
from medsam_agent_rt.io import read_image, read_mask, write_png


def read_rgb(path):
    return read_image(path).rgb


def _sample(tmp_path, image, mask, sid="d/test/a_CT_x_t"):
    ip, mp = tmp_path / "a_CT_x.png", tmp_path / "a_CT_x_t.png"
    Image.fromarray(image).save(ip)
    Image.fromarray(mask).save(mp)
    return Sample(sid, "d/test/a_CT_x", "d", "test", "t", "t in x CT", "CT", "x", ip, mp)


def test_lazy_file_backed_sample(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:9, 3:12] = 255
    s = _sample(tmp_path, img, mask)
    got_img, got_mask = s.load()
    np.testing.assert_array_equal(got_img, img)
    assert got_mask.dtype == bool and got_mask.sum() == 4 * 9
    np.testing.assert_array_equal(got_mask, mask > 0)


def test_image_modes(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "g.png"), np.repeat(grey[:, :, None], 3, 2))
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., :3] = 7
    rgba[0, 0, :3] = 9  # not constant: a constant image is refused (nothing to segment)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgba[..., :3])
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    got = read_rgb(tmp_path / "d.png")
    assert got.dtype == np.uint8 and got[0, 0, 0] == 0 and got[-1, -1, 0] == 255


def test_mask_modes(tmp_path):
    m = np.zeros((4, 5), bool)
    m[1:3, 2:4] = True
    # 0/1 grey, 0/255 RGB, RGBA with an opaque alpha everywhere: all the same mask
    Image.fromarray(m.astype(np.uint8)).save(tmp_path / "m01.png")
    rgb = np.repeat((m * 255).astype(np.uint8)[:, :, None], 3, 2)
    Image.fromarray(rgb).save(tmp_path / "mrgb.png")
    rgba = np.concatenate([rgb, np.full((4, 5, 1), 255, np.uint8)], 2)
    Image.fromarray(rgba).save(tmp_path / "mrgba.png")
    for name in ("m01.png", "mrgb.png", "mrgba.png"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), m)


def test_missing_and_mismatched_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_rgb(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="mask file not found"):
        read_mask(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="junk.png: unsupported or unrecognised format"):
        read_rgb(tmp_path / "junk.png")
    with pytest.raises(ValueError, match="junk.png: unsupported or unrecognised format"):
        read_mask(tmp_path / "junk.png")
    ramp = np.repeat(np.arange(100, dtype=np.uint8).reshape(10, 10, 1), 3, 2)  # not constant
    s = _sample(tmp_path, ramp, np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match="is 12x10 but image .* is 10x10"):
        s.load()


def test_write_png_is_atomic_and_checked(tmp_path):
    m = np.eye(5, dtype=bool)
    write_png(tmp_path / "m.png", m)
    assert list(tmp_path.iterdir()) == [tmp_path / "m.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png")), m * 255)
    with pytest.raises(ValueError, match="must be uint8"):
        write_png(tmp_path / "f.png", np.zeros((3, 3), np.float32))
    assert not (tmp_path / "f.png").exists()


def test_in_memory_sample_and_records(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="needs image_path or image_array"):
        Sample("x", "x", "d", "s", "t", "t", "CT", "x")
    s = _sample(tmp_path, img, np.ones((4, 4), np.uint8))
    rec = s.to_record()
    back = Sample.from_record(rec)
    assert back.to_record() == rec
    with pytest.raises(ValueError, match="missing image_path"):
        Sample.from_record({"sample_id": "a", "mask_path": "m.png"})


def test_grouping_filters_counts():
    arr = np.zeros((2, 2, 3), np.uint8)
    m = np.zeros((2, 2), bool)

    def mk(ds, split, image, target, mod):
        return Sample(
            f"{ds}/{split}/{image}_{target}",
            f"{ds}/{split}/{image}",
            ds,
            split,
            target,
            target,
            mod,
            "x",
            image_array=arr,
            mask_array=m,
        )

    ss = [
        mk("a", "train", "1", "liver", "CT"),
        mk("a", "train", "1", "spleen", "CT"),
        mk("a", "test", "2", "liver", "CT"),
        mk("b", "test", "3", "polyp", "endoscope"),
    ]
    assert [len(v) for v in group_by_image(ss).values()] == [2, 1, 1]
    assert len(filter_samples(ss, modalities=["endoscopy"])) == 1
    assert len(filter_samples(ss, datasets=["a"], splits=["test"])) == 1
    assert counts(ss) == {
        "a": {"train": {"liver": 1, "spleen": 1}, "test": {"liver": 1}},
        "b": {"test": {"polyp": 1}},
    }


def test_nifti_volume_sample_cuts_the_mask_like_the_image(tmp_path):
    """A dataset of NIfTI volumes: the sample's meta picks the slice, the mask volume is cut at
    the same slice and orientation as the image (reference: the same read_image call on a volume
    whose voxels ARE the mask)."""
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(2)
    vol = rng.integers(0, 1000, (12, 10, 5)).astype(np.int16)
    seg = np.zeros((12, 10, 5), np.uint8)
    seg[2:7, 3:9, 1] = 1
    seg[4:10, 1:4, 3] = 1
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(seg, affine), tmp_path / "ct_liver.nii.gz")
    nib.save(nib.Nifti1Image((seg * 200).astype(np.int16), affine), tmp_path / "ref.nii.gz")
    for k in (1, 3):
        s = Sample("d/test/ct_liver", "d/test/ct", "d", "test", "liver", "liver in CT", "CT",
                   "abdomen", tmp_path / "ct.nii.gz", tmp_path / "ct_liver.nii.gz",
                   meta={"slice_index": k, "window": "minmax"})  # fmt: skip
        image, mask = s.load()
        want = read_image(tmp_path / "ref.nii.gz", slice_index=k).rgb[:, :, 0] > 0
        assert mask.shape == image.shape[:2] and mask.sum() == seg[:, :, k].sum() > 0
        np.testing.assert_array_equal(mask, want)
        np.testing.assert_array_equal(s.load_mask(), mask)  # the image is read to cut it
        direct = read_image(tmp_path / "ct.nii.gz", slice_index=k, window="minmax").rgb
        np.testing.assert_array_equal(image, direct)
    with pytest.raises(ValueError, match="needs the NIfTI image it belongs to"):
        read_mask(tmp_path / "ct_liver.nii.gz")
