"""NIfTI slices: volumes built here with known affines; the display layout is checked against
world coordinates (nibabel.affines.apply_affine), and masks round-trip into the right voxels."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_agent_rt.io import ImageReadError, read_image, write_mask_nifti

nib = pytest.importorskip("nibabel")
from nibabel.affines import apply_affine  # noqa: E402

SHAPE = (7, 6, 5)  # small and not cubic: every axis has its own length


def _labelled(shape=SHAPE) -> np.ndarray:
    """uint8 volume with a different value in every voxel (< 256 voxels): a pixel's value says
    which voxel it came from, and uint8 data is kept as is by the reader."""
    assert np.prod(shape) < 256
    return np.arange(1, np.prod(shape) + 1, dtype=np.uint8).reshape(shape)


def _save(vol, affine, path, **header):
    img = nib.Nifti1Image(vol, affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, path)
    return path


def _voxels_of(image, vol):
    """(rows, cols, 3) voxel indices of each pixel, found by value."""
    lookup = {int(v): idx for idx, v in np.ndenumerate(vol)}
    return np.array([[lookup[int(v)] for v in row] for row in image])


RAS = np.diag([2.0, 3.0, 4.0, 1.0])
LPS_LIKE = np.diag([-2.0, -3.0, 4.0, 1.0])
PERMUTED = np.array(  # voxel i -> -S, j -> +R, k -> +A (an odd acquisition)
    [[0, 1.5, 0, 10], [0, 0, 2.5, -20], [-3.0, 0, 0, 30], [0, 0, 0, 1]], dtype=float
)


def test_voxel_orientation_is_np_take(tmp_path):
    vol = _labelled()
    path = _save(vol, RAS, tmp_path / "v.nii.gz")
    for axis in range(3):
        loaded = read_image(path, axis=axis, orientation="voxel")
        k = SHAPE[axis] // 2
        assert loaded.slice_index == k and loaded.slice_count == SHAPE[axis]
        np.testing.assert_array_equal(loaded.rgb[:, :, 0], np.take(vol, k, axis=axis))
    default = read_image(path)
    assert default.axis == 2 and default.slice_index == 2 and default.format == "nifti"


def test_display_axial_hand_computed(tmp_path):
    vol = _labelled()
    k = 3
    ras = read_image(_save(vol, RAS, tmp_path / "a.nii"), slice_index=k)
    np.testing.assert_array_equal(ras.rgb[:, :, 0], vol[:, :, k].T[::-1, ::-1])
    lps = read_image(_save(vol, LPS_LIKE, tmp_path / "b.nii"), slice_index=k)
    np.testing.assert_array_equal(lps.rgb[:, :, 0], vol[:, :, k].T)
    assert ras.info["plane"] == "axial" and ras.spacing == (3.0, 2.0)


@pytest.mark.parametrize("affine", [RAS, LPS_LIKE, PERMUTED], ids=["ras", "lps", "permuted"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_display_layout_follows_world_directions(tmp_path, affine, axis):
    """Radiological view: axial = anterior up, patient right on the left; coronal / sagittal =
    superior up; columns run right -> left (axial, coronal) or anterior -> posterior (sagittal)."""
    vol = _labelled()
    loaded = read_image(_save(vol, affine, tmp_path / "v.nii.gz"), axis=axis)
    world = apply_affine(affine, _voxels_of(loaded.rgb[:, :, 0], vol))  # (rows, cols, 3) RAS
    plane = loaded.info["plane"]
    vertical, horizontal = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}[plane]
    normal = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    assert np.all(np.diff(world[:, :, vertical], axis=0) < 0)  # top is anterior / superior
    assert np.all(np.diff(world[:, :, horizontal], axis=1) < 0)  # left is right / anterior
    assert np.ptp(world[:, :, normal]) == 0  # one plane
    assert loaded.rgb.shape[:2] == loaded.layout.image_shape


def test_mask_round_trip_lands_in_the_right_voxels(tmp_path):
    vol = _labelled()
    for affine in (RAS, PERMUTED):
        for axis in range(3):
            src = _save(vol, affine, tmp_path / "in.nii.gz")
            loaded = read_image(src, axis=axis, slice_index=1)
            mask = np.zeros(loaded.shape, np.uint8)
            mask[0, -1] = mask[-1, 0] = mask[1, 1] = 1
            out = write_mask_nifti(tmp_path / "mask.nii.gz", mask, like=loaded)
            written = nib.load(out)
            data = np.asanyarray(written.dataobj)
            assert data.shape == SHAPE and data.dtype == np.uint8
            np.testing.assert_array_equal(written.affine, nib.load(src).affine)
            # the voxels set are exactly those whose values the masked pixels showed
            picked = set(loaded.rgb[:, :, 0][mask == 1].tolist())
            assert set(vol[data == 1].tolist()) == picked and int(data.sum()) == 3
            assert set(np.unique(data).tolist()) == {0, 1}


def test_header_kept_qform_sform(tmp_path):
    vol = _labelled().astype(np.int16)
    img = nib.Nifti1Image(vol, PERMUTED)
    img.set_qform(RAS, code=1)
    img.set_sform(PERMUTED, code=2)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / "in.nii")
    loaded = read_image(tmp_path / "in.nii")
    out = nib.load(write_mask_nifti(tmp_path / "m.nii", np.ones(loaded.shape, bool), loaded))
    assert out.header.get_qform(coded=True)[1] == 1 and out.header.get_sform(coded=True)[1] == 2
    np.testing.assert_allclose(out.header.get_qform(), img.header.get_qform())
    np.testing.assert_array_equal(out.header.get_sform(), img.header.get_sform())
    np.testing.assert_array_equal(out.header.get_zooms(), img.header.get_zooms())
    assert out.header.get_intent()[0] == "label"


def test_4d_and_2d_volumes(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=SHAPE + (3,)).astype(np.float32)
    path = _save(data, RAS, tmp_path / "t.nii.gz")
    loaded = read_image(path, frame=2, orientation="voxel")
    want = data[:, :, 2, 2]
    lo, hi = want.min(), want.max()
    np.testing.assert_array_equal(
        loaded.rgb[:, :, 0], np.floor((want - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8)
    )
    assert loaded.frame == 2 and loaded.frame_count == 3 and loaded.original_shape == SHAPE + (3,)
    with pytest.raises(ImageReadError, match=r"frame 3 is out of range: the file has 3 frames"):
        read_image(path, frame=3)
    mask_img = nib.load(write_mask_nifti(tmp_path / "m.nii", np.ones(loaded.shape, bool), loaded))
    assert mask_img.shape == SHAPE  # the 3-D space of the 4-D input

    flat = _labelled((12, 9))
    two_d = read_image(_save(flat, RAS, tmp_path / "flat.nii"), orientation="voxel")
    np.testing.assert_array_equal(two_d.rgb[:, :, 0], flat)
    m = np.zeros(two_d.shape, bool)
    m[3, 4] = True
    out = np.asanyarray(nib.load(write_mask_nifti(tmp_path / "f.nii", m, two_d)).dataobj)
    assert out.shape == (12, 9) and out[3, 4] == 1 and out.sum() == 1


def test_scaling_and_windows(tmp_path):
    stored = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    img = nib.Nifti1Image(stored, RAS)
    img.header.set_slope_inter(2.0, -100.0)
    img.set_data_dtype(np.int16)
    nib.save(img, tmp_path / "s.nii")
    hu = stored[:, :, 2].astype(float) * 2 - 100
    loaded = read_image(tmp_path / "s.nii", window=(40, 100), orientation="voxel")
    want = np.floor(np.clip((hu - (40 - 50)) / 100, 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], want)
    assert loaded.rescale == (2.0, -100.0) and loaded.original_dtype == "int16"
    # the header's display range is the default window
    _save(stored, RAS, tmp_path / "c.nii", cal_min=0.0, cal_max=100.0)
    cal = read_image(tmp_path / "c.nii", orientation="voxel")
    assert cal.mapping.source == "file" and (cal.mapping.low, cal.mapping.high) == (0.0, 100.0)
    raw = stored[:, :, 2].astype(float)
    np.testing.assert_array_equal(
        cal.rgb[:, :, 0], np.floor(np.clip(raw / 100, 0, 1) * 255 + 0.5).astype(np.uint8)
    )


def test_nifti2_round_trip(tmp_path):
    vol = _labelled()
    nib.save(nib.Nifti2Image(vol, PERMUTED), tmp_path / "v2.nii")
    loaded = read_image(tmp_path / "v2.nii")
    assert loaded.info["nifti_version"] == 2
    out = nib.load(write_mask_nifti(tmp_path / "m2.nii", np.ones(loaded.shape, bool), loaded))
    assert isinstance(out, nib.Nifti2Image) and out.shape == SHAPE


def test_bad_arguments_and_corrupt_files(tmp_path):
    path = _save(_labelled(), RAS, tmp_path / "v.nii.gz")
    with pytest.raises(ImageReadError, match=r"slice_index 5 is out of range: axis 2 has 5"):
        read_image(path, slice_index=5)
    with pytest.raises(ValueError, match="axis must be in 0..2"):
        read_image(path, axis=3)
    with pytest.raises(ValueError, match="orientation must be one of"):
        read_image(path, orientation="neurological")
    data = path.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) - 40])
    with pytest.raises(ImageReadError, match=r"cut\.nii\.gz: corrupt"):
        read_image(tmp_path / "cut.nii.gz")
    raw = _save(_labelled(), RAS, tmp_path / "raw.nii")
    (tmp_path / "short.nii").write_bytes(raw.read_bytes()[:400])
    with pytest.raises(ImageReadError, match=r"short\.nii: corrupt"):
        read_image(tmp_path / "short.nii")
