"""Degenerate and oversized inputs: each gets a clear ImageReadError / DatasetFormatError naming
the file (and the DICOM element), or is handled as documented; nothing crashes later."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.io import ImageReadError, read_image


def png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("shape", [(1, 1), (1, 5000), (5000, 1)])
def test_one_pixel_sides_are_refused_with_the_size(tmp_path, shape):
    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with pytest.raises(ImageReadError, match=rf"is {shape[1]} x {shape[0]} pixels; at least 2"):
        read_image(png(tmp_path / "thin.png", a))


def test_tiff_fallback_reader_is_pixel_limited(tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    rgb16 = np.random.default_rng(0).integers(0, 65535, (200, 200, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "deep.tif", rgb16, photometric="rgb")  # Pillow hands it over
    assert read_image(tmp_path / "deep.tif").info["reader"] == "tifffile"
    monkeypatch.setenv("MSRT_MAX_PIXELS", "10000")
    with pytest.raises(
        ImageReadError, match=r"200 x 200 = 40,000 pixels exceeds .*MSRT_MAX_PIXELS"
    ):
        read_image(tmp_path / "deep.tif")


def test_png_and_dicom_and_nifti_are_pixel_limited(tmp_path, monkeypatch, pydicom_files):
    nib = pytest.importorskip("nibabel")
    a = np.random.default_rng(0).integers(0, 256, (120, 120), dtype=np.uint8)
    nib.save(
        nib.Nifti1Image(a[:, :, None].repeat(3, 2).astype(np.int16), np.eye(4)),
        tmp_path / "v.nii.gz",
    )
    monkeypatch.setenv("MSRT_MAX_PIXELS", "10000")
    with pytest.raises(ImageReadError, match="MSRT_MAX_PIXELS"):
        read_image(png(tmp_path / "a.png", a))
    with pytest.raises(ImageReadError, match=r"DICOM frame .*MSRT_MAX_PIXELS"):
        read_image(pydicom_files / "CT_small.dcm")
    with pytest.raises(ImageReadError, match=r"slice along axis 2 .*MSRT_MAX_PIXELS"):
        read_image(tmp_path / "v.nii.gz")


def test_a_nifti_header_declaring_a_huge_volume_is_refused_before_reading(tmp_path, nibabel_files):
    nib = pytest.importorskip("nibabel")
    img = nib.load(nibabel_files / "anatomical.nii")
    hdr = img.header.copy()
    hdr.set_data_shape((4000, 4000, 4000))
    bomb = tmp_path / "bomb.nii"
    bomb.write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 1024)
    with pytest.raises(ImageReadError, match=r"voxels exceeds the limit .*MSRT_MAX_VOXELS"):
        read_image(bomb)


# ----------------------------------------------------------------------------- truncation
def test_truncated_nii_gz_is_an_error_even_for_an_early_slice(tmp_path, nibabel_files):
    raw = gzip.decompress((nibabel_files / "example4d.nii.gz").read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) * 2 // 3]))  # a well-formed but short stream
    with pytest.raises(ImageReadError, match=r"truncated: the header declares [\d,]+ bytes"):
        read_image(cut, slice_index=0)
    torn = tmp_path / "torn.nii.gz"
    torn.write_bytes((nibabel_files / "example4d.nii.gz").read_bytes()[:-5000])  # torn gzip
    with pytest.raises(ImageReadError, match=r"torn.nii.gz: .*(truncated|corrupt)"):
        read_image(torn, slice_index=0)


# ----------------------------------------------------------------------------- DICOM values
@pytest.mark.parametrize(
    ("slope", "match"),
    [
        ("0", r"RescaleSlope \(0028,1053\) is 0.0: every pixel"),
        ("NaN", r"RescaleSlope \(0028,1053\) is nan: not finite"),
        ("1e308", r"RescaleSlope \(0028,1053\) = 1e\+308 .* overflow"),
        ("-0", r"RescaleSlope \(0028,1053\) is -0.0: every pixel"),
        ("abc", r"RescaleSlope \(0028,1053\) is malformed"),
    ],
)
def test_bad_rescale_slopes_name_the_file_and_element(tmp_path, pydicom_files, slope, match):
    import pydicom

    ds = pydicom.dcmread(pydicom_files / "CT_small.dcm")
    ds["RescaleSlope"].value = "7.77777"  # 8 bytes with padding: patched in the file below
    ds.save_as(tmp_path / "bad.dcm")
    raw = (tmp_path / "bad.dcm").read_bytes()
    assert raw.count(b"7.77777 ") == 1
    (tmp_path / "bad.dcm").write_bytes(raw.replace(b"7.77777 ", slope.ljust(8).encode()))
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(tmp_path / "bad.dcm")
    assert str(info.value).startswith(str(tmp_path / "bad.dcm"))


# ----------------------------------------------------------------------------- content
def test_constant_and_all_nan_images_have_nothing_to_segment(tmp_path):
    nib = pytest.importorskip("nibabel")
    with pytest.raises(ImageReadError, match=r"same value \(77\)"):
        read_image(png(tmp_path / "flat.png", np.full((16, 16), 77)))
    nan = np.full((8, 8, 3), np.nan, np.float32)
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(ImageReadError, match=r"nan.nii.gz: every pixel has the same value"):
        read_image(tmp_path / "nan.nii.gz")


def test_jpeg_gt_noise_is_not_foreground(tmp_path):
    from medsam_agent_rt.io import read_mask

    gt = np.zeros((64, 64), np.uint8)
    gt[16:48, 20:44] = 255
    Image.fromarray(gt).save(tmp_path / "gt.jpg", quality=60)
    noisy = np.asarray(Image.open(tmp_path / "gt.jpg"))
    assert ((noisy > 0) & (gt == 0)).sum() > 20  # the compression really did leave noise
    mask = read_mask(tmp_path / "gt.jpg")
    assert np.array_equal(mask, noisy >= 128)  # half range, as documented
    assert abs(int(mask.sum()) - int((gt > 0).sum())) <= 32  # about the true area


# ----------------------------------------------------------------------------- aspect ratio
@pytest.mark.parametrize("shape", [(1, 5000), (4, 4096), (4096, 4), (1, 1)])
def test_extreme_aspect_ratios_survive_pre_and_post_processing(shape):
    """The longest-side resize of every family keeps each side >= 1 (a side rounded to 0 crashed the
    resize, and the episode reported a tool error with an empty mask)."""
    from medsam_agent_rt import ops
    from medsam_agent_rt.segmenters.families import FAMILIES
    from medsam_agent_rt.segmenters.preprocess import preprocess_image

    h, w = shape
    img = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for name, fam in FAMILIES.items():
        pre = fam.preprocessing
        if pre.resize != "longest_side":
            continue  # a square resize has no side to round away (and MedSAM's spline is slow)
        x, size = preprocess_image(img, pre)
        s = pre.input_size
        assert x.shape == (1, 3, s, s) and np.isfinite(x).all(), name
        assert min(size) >= 1 and max(size) <= s, (name, size)
        logits = np.full((1, 256, 256), 5.0, np.float32)
        masks, _ = ops.postprocess_masks(logits, (s, s), size, (h, w))
        assert np.asarray(masks).shape == (1, h, w) and np.asarray(masks).all(), name


# ----------------------------------------------------------------------------- datasets
def _dataset(root, annotations):
    d = root / "ds"
    for sub in ("test", "test_mask"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    png(d / "test" / "img_CT_liver.png", rng.integers(0, 256, (16, 16, 3)))
    png(d / "test_mask" / "img_CT_liver_liver.png", np.eye(16) * 255)
    (d / "test.json").write_text(json.dumps({"annotations": annotations}))
    return d


@pytest.mark.parametrize(
    "entry",
    [
        {"file_name": "../../outside.png", "mask_file": "img_CT_liver_liver.png"},
        {"file_name": "/etc/hostname", "mask_file": "img_CT_liver_liver.png"},
        {"file_name": "img_CT_liver.png", "mask_file": "../../test/img_CT_liver.png"},
        {"file_name": "img_CT_liver.png", "mask_file": "x.png", "split": "../.."},
    ],
)
def test_dataset_json_cannot_reach_outside_its_root(tmp_path, entry):
    from medsam_agent_rt.data.biomedparse import DatasetFormatError, read_split

    png(tmp_path / "outside.png", np.eye(16) * 255)
    d = _dataset(tmp_path, [entry])
    with pytest.raises(DatasetFormatError, match="points outside the dataset folder"):
        read_split(d, "test", check_files=False)


def test_dataset_symlink_out_of_the_root_is_refused(tmp_path):
    from medsam_agent_rt.data.biomedparse import DatasetFormatError, read_split

    png(tmp_path / "secret.png", np.eye(16) * 255)
    d = _dataset(tmp_path, [{"file_name": "link.png", "mask_file": "img_CT_liver_liver.png"}])
    (d / "test" / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(DatasetFormatError, match="'link.png'.*outside"):
        read_split(d, "test")


def test_duplicated_annotations_are_counted_once(tmp_path):
    from medsam_agent_rt.data.biomedparse import read_split

    ann = {"file_name": "img_CT_liver.png", "mask_file": "img_CT_liver_liver.png"}
    d = _dataset(tmp_path, [ann, dict(ann), dict(ann, sentences=[{"sent": "liver in CT"}])])
    with pytest.warns(UserWarning, match=r"2 annotation\(s\) repeat .*counted once"):
        samples = read_split(d, "test")
    assert len(samples) == 1
    shutil.rmtree(d)


@pytest.mark.parametrize(
    "body", ["[" * 200_000 + "]" * 200_000, '{"annotations": [' + "9" * 6000 + "]}"]
)
def test_dataset_json_bombs_are_format_errors(tmp_path, body):
    from medsam_agent_rt.data.biomedparse import DatasetFormatError, read_split

    d = _dataset(tmp_path, [])
    (d / "test.json").write_text(body)
    with pytest.raises(DatasetFormatError, match="test.json: unreadable JSON"):
        read_split(d, "test")


def test_malformed_pixel_spacing_is_dropped_with_a_warning_naming_it(tmp_path, pydicom_files):
    raw = (pydicom_files / "CT_small.dcm").read_bytes()
    good = b"0.661468\\0.661468 "
    assert raw.count(good) == 1
    (tmp_path / "sp.dcm").write_bytes(raw.replace(good, b"abcdefgh\\ijklmnop "))
    with pytest.warns(
        UserWarning, match=r"sp.dcm: DICOM PixelSpacing / ImagerPixelSpacing ignored"
    ):
        img = read_image(tmp_path / "sp.dcm")
    assert img.spacing is None and img.affine is None and img.rgb.shape == (128, 128, 3)
