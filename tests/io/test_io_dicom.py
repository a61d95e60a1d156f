"""DICOM reading on pydicom's bundled CT / MR / ultrasound files. Expected pixels come from
pydicom's own modality / VOI functions, hand-written LUT look-ups and the YCbCr formula."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from medsam_agent_rt.io import ImageReadError, MissingDecoderError, read_image

pydicom = pytest.importorskip("pydicom")
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array  # noqa: E402


def _u8(y):
    return np.clip(np.floor(np.asarray(y, np.float64) + 0.5), 0, 255).astype(np.uint8)


def _hu(path):
    ds = pydicom.dcmread(path)
    return apply_modality_lut(ds.pixel_array, ds), ds


def test_ct_rescale_and_default_minmax(dicom_file):
    hu, _ = _hu(dicom_file("CT_small.dcm"))
    loaded = read_image(dicom_file("CT_small.dcm"))
    assert loaded.format == "dicom" and loaded.modality == "CT"
    assert loaded.rescale == (1.0, -1024.0) and loaded.mapping.kind == "minmax"
    assert (loaded.mapping.low, loaded.mapping.high) == (hu.min(), hu.max())
    np.testing.assert_array_equal(
        loaded.rgb[:, :, 0], _u8((hu - hu.min()) / (hu.max() - hu.min()) * 255)
    )
    assert (loaded.rgb[:, :, 0] == loaded.rgb[:, :, 2]).all()
    assert loaded.original_dtype == "int16" and loaded.original_shape == (128, 128)
    assert loaded.spacing == pytest.approx((0.661468, 0.661468))


@pytest.mark.parametrize("window", ["abdomen", "lung", "bone", (40, 400), (-600, 1500)])
def test_ct_window_presets_in_hu(dicom_file, window):
    from medsam_agent_rt.io import WINDOW_PRESETS

    hu, _ = _hu(dicom_file("CT_small.dcm"))
    c, w = WINDOW_PRESETS[window] if isinstance(window, str) else window
    want = _u8(np.clip((hu - (c - w / 2)) / w, 0, 1) * 255)
    loaded = read_image(dicom_file("CT_small.dcm"), window=window)
    np.testing.assert_array_equal(loaded.rgb[:, :, 1], want)
    assert (loaded.mapping.center, loaded.mapping.width) == (c, w)


def test_pixel_padding_is_left_out_of_minmax(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    stored = ds.pixel_array.copy()
    stored[:10, :] = -2000  # outside the field of view
    ds.PixelData = stored.tobytes()
    ds.PixelPaddingValue = -2000
    ds.save_as(tmp_path / "pad.dcm")
    loaded = read_image(tmp_path / "pad.dcm")
    hu = stored[10:].astype(float) - 1024
    assert loaded.info["padding_pixels"] == 10 * 128
    assert (loaded.rgb[:10] == 0).all()
    np.testing.assert_array_equal(
        loaded.rgb[10:, :, 0], _u8((hu - hu.min()) / (hu.max() - hu.min()) * 255)
    )


def test_file_window_matches_pydicom_voi(dicom_file):
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    y = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)  # LINEAR, signed 16-bit range
    want = (y + 32768.0) / 65535.0 * 255
    loaded = read_image(dicom_file("MR_small.dcm"))
    assert loaded.mapping.source == "file" and loaded.mapping.function == "LINEAR"
    assert (loaded.mapping.center, loaded.mapping.width) == (600, 1600)
    diff = np.abs(loaded.rgb[:, :, 0].astype(float) - want)
    assert diff.max() <= 0.5 + 1e-6
    # several windows in the file: the first one is the default
    multi = read_image(dicom_file("examples_overlay.dcm"))
    assert (multi.mapping.center, multi.mapping.width) == (450, 790)


def test_transfer_syntaxes_decode_to_the_same_pixels(dicom_file):
    ref = read_image(dicom_file("MR_small.dcm")).rgb
    for name in ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]:
        np.testing.assert_array_equal(read_image(dicom_file(name)).rgb, ref)


def test_lossless_jpeg2000_and_one_bit_segmentation(dicom_file):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    if get_decoder(JPEG2000Lossless).is_available:
        np.testing.assert_array_equal(
            read_image(dicom_file("MR_small_jp2klossless.dcm")).rgb,
            read_image(dicom_file("MR_small.dcm")).rgb,
        )
    seg = read_image(dicom_file("liver_1frame.dcm"))  # 1 bit stored: 0/1 -> 0/255
    want = pydicom.dcmread(dicom_file("liver_1frame.dcm")).pixel_array.astype(np.uint8) * 255
    assert seg.mapping.kind == "minmax"
    np.testing.assert_array_equal(seg.rgb[:, :, 0], want)


def test_monochrome1_is_inverted(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    normal = read_image(dicom_file("CT_small.dcm"), window="abdomen").rgb
    inverted = read_image(tmp_path / "m1.dcm", window="abdomen")
    assert inverted.mapping.inverted and inverted.photometric == "MONOCHROME1"
    np.testing.assert_array_equal(inverted.rgb, 255 - normal)


def test_voi_lut_sequence(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    del ds.WindowCenter, ds.WindowWidth
    first, n = 100, 1024
    lut = ((np.arange(n) / (n - 1)) ** 0.5 * 4095).astype(np.uint16)  # 12-bit gamma curve
    item = pydicom.Dataset()
    item.add_new("LUTDescriptor", "US", [n, first, 12])
    item.add_new("LUTData", "US", lut.tolist())
    ds.VOILUTSequence = [item]
    ds.save_as(tmp_path / "voi.dcm")
    stored = ds.pixel_array.astype(np.int64)
    want = _u8(lut[np.clip(stored - first, 0, n - 1)] / 4095.0 * 255)
    loaded = read_image(tmp_path / "voi.dcm")
    assert loaded.mapping.kind == "voi_lut"
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], want)


def _ybr_to_rgb(ybr):
    y, cb, cr = (ybr[..., k].astype(np.float64) for k in range(3))
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255)


def test_ultrasound_multiframe_ybr(dicom_file):
    path = dicom_file("examples_ybr_color.dcm")
    ds = pydicom.dcmread(path)
    loaded = read_image(path, frame=5)
    assert loaded.modality == "US" and loaded.frame == 5 and loaded.frame_count == 30
    assert loaded.original_shape == (30, 240, 320, 3) and loaded.rgb.shape == (240, 320, 3)
    raw = pixel_array(ds, index=5, as_rgb=False)  # YCbCr as decoded
    assert np.abs(loaded.rgb.astype(float) - _ybr_to_rgb(raw)).max() <= 2.0
    # ultrasound region calibration: PhysicalDeltaX/Y in cm -> mm
    assert loaded.spacing == pytest.approx((0.5104970559477806, 0.5104970559477806))
    with pytest.raises(ImageReadError, match=r"frame 30 is out of range: the file has 30 frames"):
        read_image(path, frame=30)


def test_ybr_uncompressed_and_rgb_ultrasound(dicom_file):
    path = dicom_file("SC_ybr_full_422_uncompressed.dcm")
    raw = pixel_array(pydicom.dcmread(path), as_rgb=False)
    loaded = read_image(path)
    assert np.abs(loaded.rgb.astype(float) - _ybr_to_rgb(raw)).max() <= 2.0
    rgb_path = dicom_file("examples_rgb_color.dcm")
    loaded = read_image(rgb_path)
    assert loaded.mapping.kind == "identity"
    np.testing.assert_array_equal(loaded.rgb, pydicom.dcmread(rgb_path).pixel_array)


def test_palette_colour(dicom_file):
    path = dicom_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    index = ds.pixel_array.astype(np.int64)
    channels = []
    for colour in ("Red", "Green", "Blue"):
        n, first, bits = ds[f"{colour}PaletteColorLookupTableDescriptor"].value
        lut = np.frombuffer(ds[f"{colour}PaletteColorLookupTableData"].value, "<u2")
        assert bits == 16
        channels.append(lut[np.clip(index - first, 0, (n or 65536) - 1)] / 257.0)
    loaded = read_image(path)
    assert loaded.mapping.kind == "palette"
    np.testing.assert_array_equal(loaded.rgb, _u8(np.stack(channels, -1)))


def test_enhanced_multiframe_functional_groups(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    stored = ds.pixel_array
    frames = np.stack([stored, stored[::-1]])
    ds.PixelData = frames.tobytes()
    ds.NumberOfFrames = 2
    per_frame = []
    for intercept, center in [(-1024, 40), (-1000, 300)]:
        pvt, voi, item = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept = 1, intercept
        voi.WindowCenter, voi.WindowWidth = center, 400
        item.PixelValueTransformationSequence = [pvt]
        item.FrameVOILUTSequence = [voi]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.save_as(tmp_path / "enh.dcm")
    loaded = read_image(tmp_path / "enh.dcm", frame=1)
    values = stored[::-1].astype(float) - 1000
    want = _u8(np.clip((values - (300 - 0.5 - 399 / 2)) / 399, 0, 1) * 255)  # LINEAR
    assert loaded.rescale == (1.0, -1000.0) and loaded.mapping.center == 300
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], want)


def test_affine_maps_pixels_to_patient_space(dicom_file):
    path = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    loaded = read_image(path)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    dr, dc = (float(v) for v in ds.PixelSpacing)
    for r, c in [(0, 0), (10, 3), (127, 64)]:
        lps = ipp + c * dc * iop[:3] + r * dr * iop[3:]
        ras = loaded.affine @ [c, r, 0, 1]
        np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-9)


def test_file_without_preamble(dicom_file, tmp_path):
    from pydicom.dataset import FileMetaDataset

    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.preamble = None
    ds.file_meta = FileMetaDataset()
    for name in ("raw.dcm", "raw_no_extension"):
        pydicom.dcmwrite(
            tmp_path / name, ds, enforce_file_format=False, implicit_vr=True, little_endian=True
        )
        np.testing.assert_array_equal(
            read_image(tmp_path / name).rgb, read_image(dicom_file("CT_small.dcm")).rgb
        )


def test_missing_decoder_names_the_transfer_syntax(dicom_file):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(MissingDecoderError) as info:
        read_image(dicom_file("MR_small_jpeg_ls_lossless.dcm"))
    msg = str(info.value)
    assert "MR_small_jpeg_ls_lossless.dcm" in msg and "JPEG-LS Lossless" in msg
    assert "1.2.840.10008.1.2.4.80" in msg and "pip install" in msg


def test_corrupt_dicom(dicom_file, tmp_path):
    with pytest.raises(ImageReadError, match=r"MR_truncated\.dcm: corrupt pixel data"):
        read_image(dicom_file("MR_truncated.dcm"))
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PixelData = b"\x13\x37" * 50  # garbage of the wrong length
    ds.save_as(tmp_path / "garbage.dcm")
    with pytest.raises(ImageReadError, match=r"garbage\.dcm: corrupt pixel data"):
        read_image(tmp_path / "garbage.dcm")
    with pytest.raises(ImageReadError, match=r"rtplan\.dcm: DICOM file has no pixel data"):
        read_image(dicom_file("rtplan.dcm"))
    data = dicom_file("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:700])  # cut inside the header
    with pytest.raises(ImageReadError, match=r"cut\.dcm"):
        read_image(tmp_path / "cut.dcm")


# ----------------------------------------------------------------------------- series
def _series(dicom_file, tmp_path):
    src = dicom_file("dicomdirtests/98892001/CT5N")
    out = tmp_path / "series"
    out.mkdir()
    files = sorted(p for p in src.iterdir())
    for k, f in enumerate(files):  # names that do not sort like the slices
        shutil.copy(f, out / f"img{(k * 3) % 5}")
    (out / "README.txt").write_text("not dicom")
    return out


def test_series_directory_sorted_by_position(dicom_file, tmp_path):
    directory = _series(dicom_file, tmp_path)
    z = {
        p.name: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
        for p in directory.iterdir()
        if p.name.startswith("img")
    }
    by_z = sorted(z, key=z.get)  # axial slices (IOP 1,0,0,0,1,0): the normal is +z
    for k in (0, 2, 4):
        loaded = read_image(directory, slice_index=k)
        assert loaded.slice_count == 5 and loaded.slice_index == k
        assert loaded.info["file"].endswith(by_z[k]) and loaded.info["series_order"] == "position"
        np.testing.assert_array_equal(loaded.rgb, read_image(directory / by_z[k]).rgb)
    assert read_image(directory).slice_index == 2
    with pytest.raises(ImageReadError, match=r"slice_index 5 is out of range: the series has 5"):
        read_image(directory, slice_index=5)


def test_series_directory_errors(dicom_file, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageReadError, match=r"empty: is a directory without DICOM images"):
        read_image(empty)
    mixed = _series(dicom_file, tmp_path)
    shutil.copy(dicom_file("CT_small.dcm"), mixed / "other")
    with pytest.raises(ImageReadError, match=r"holds 2 DICOM series"):
        read_image(mixed)
