"""PNG / JPEG / TIFF / BMP reading: the real demo PNGs plus files written here with known pixels;
expected values computed independently (Pillow / tifffile / NumPy)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.io import ImageReadError, read_image


def _minmax(x):
    x = x.astype(np.float64)
    return np.floor((x - x.min()) / (x.max() - x.min()) * 255 + 0.5).astype(np.uint8)


def test_demo_rgba_png_drops_alpha(demo_png):
    with Image.open(demo_png) as im:
        want = np.asarray(im.convert("RGBA"))[:, :, :3]
    loaded = read_image(demo_png)
    assert loaded.rgb.shape == (1024, 1024, 3) and loaded.rgb.dtype == np.uint8
    np.testing.assert_array_equal(loaded.rgb, want)
    assert loaded.format == "png" and loaded.original_shape == (1024, 1024, 4)
    assert loaded.mapping.kind == "identity" and loaded.original_dtype == "uint8"
    assert loaded.shape == (1024, 1024) and loaded.frame == 0 and loaded.frame_count == 1


def test_alpha_is_not_composited(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 200, 100, 50
    rgba[..., 3] = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10  # partly transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = read_image(tmp_path / "a.png").rgb
    assert (rgb == [200, 100, 50]).all()


def test_grayscale_8bit_and_la_and_palette(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    rgb = read_image(tmp_path / "g.png").rgb
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], gray)
    Image.fromarray(np.dstack([gray, 255 - gray]), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png").rgb[:, :, 1], gray)
    rgbimg = Image.fromarray(np.dstack([gray, gray[::-1], gray.T]))
    pal = rgbimg.quantize(colors=32)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        read_image(tmp_path / "p.png").rgb, np.asarray(pal.convert("RGB"))
    )


def test_16bit_gray_png_minmax_and_window(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(900, 4000, size=(20, 30)).astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "g16.png")
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.original_dtype == "uint16" and loaded.mapping.kind == "minmax"
    assert (loaded.mapping.low, loaded.mapping.high) == (data.min(), data.max())
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], _minmax(data))
    windowed = read_image(tmp_path / "g16.png", window=(2000, 1000)).rgb[:, :, 2]
    lo = 1500.0
    want = np.floor(np.clip((data - lo) / 1000.0, 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(windowed, want)


def test_window_applies_to_8bit_when_given(tmp_path):
    gray = np.array([[0, 100, 150, 255]] * 2, np.uint8)  # 2 rows: one row is refused
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png", window=(125, 50)).rgb[0, :, 0].tolist() == [
        0,
        0,
        255,
        255,
    ]


def test_16bit_colour_png(tmp_path, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.zeros((6, 7, 3), np.uint16)
    rgb16[..., 0] = np.arange(42).reshape(6, 7) * 50
    rgb16[..., 1] = 1000
    rgb16[..., 2] = 2050
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1])  # cv2 writes BGR
    loaded = read_image(tmp_path / "c16.png")
    assert loaded.original_dtype == "uint16" and loaded.mapping.kind == "minmax"
    np.testing.assert_array_equal(loaded.rgb, _minmax(rgb16))  # joint over channels
    # without OpenCV Pillow keeps the high byte: say so
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.warns(UserWarning, match="high byte"):
        fallback = read_image(tmp_path / "c16.png")
    assert fallback.mapping.kind == "high_byte"
    np.testing.assert_array_equal(fallback.rgb, (rgb16 >> 8).astype(np.uint8))


def test_jpeg_and_exif_orientation(tmp_path):
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    with Image.open(tmp_path / "a.jpg") as im:
        decoded = np.asarray(im)
    loaded = read_image(tmp_path / "a.jpg")
    assert loaded.format == "jpeg" and not loaded.info["exif_transposed"]
    np.testing.assert_array_equal(loaded.rgb, decoded)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    Image.fromarray(arr).save(tmp_path / "r.jpg", quality=95, exif=exif)
    rotated = read_image(tmp_path / "r.jpg")
    assert rotated.shape == (40, 24) and rotated.info["exif_transposed"]
    np.testing.assert_array_equal(rotated.rgb, np.rot90(decoded, k=-1))


def test_grayscale_jpeg_and_bmp(tmp_path):
    gray = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(48, 64)
    Image.fromarray(gray).save(tmp_path / "g.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "g.bmp").rgb[:, :, 1], gray)
    Image.fromarray(gray).save(tmp_path / "g.jpg")
    with Image.open(tmp_path / "g.jpg") as im:
        np.testing.assert_array_equal(read_image(tmp_path / "g.jpg").rgb[:, :, 0], np.asarray(im))


def test_tiff_multipage_16bit(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(3)
    pages = rng.integers(0, 60000, size=(3, 10, 12)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", pages, photometric="minisblack")
    for k in range(3):
        loaded = read_image(tmp_path / "s.tif", frame=k)
        assert loaded.frame == k and loaded.frame_count == 3
        np.testing.assert_array_equal(loaded.rgb[:, :, 0], _minmax(pages[k]))
    assert read_image(tmp_path / "s.tif").frame == 0
    with pytest.raises(ImageReadError, match=r"frame 3 is out of range: the file has 3 frames"):
        read_image(tmp_path / "s.tif", frame=3)
    with pytest.raises(ImageReadError, match="1 frame "):
        Image.fromarray(pages[0]).save(tmp_path / "one.png")
        read_image(tmp_path / "one.png", frame=1)


def test_tiff_flavours_pillow_cannot_read(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rgb16 = (np.arange(5 * 6 * 3).reshape(5, 6, 3) * 997 % 65536).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    loaded = read_image(tmp_path / "rgb16.tif")
    assert loaded.info["reader"] == "tifffile" and loaded.original_dtype == "uint16"
    np.testing.assert_array_equal(loaded.rgb, _minmax(rgb16))
    planar = np.ascontiguousarray(np.moveaxis(rgb16, -1, 0))
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif").rgb, _minmax(rgb16))
    f32 = np.linspace(-1.5, 2.5, 5 * 6 * 3, dtype=np.float32).reshape(5, 6, 3)
    tifffile.imwrite(tmp_path / "f32.tif", f32, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "f32.tif").rgb, _minmax(f32))


def test_float_gray_tiff_with_nan(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    data = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    data[0, 0] = np.nan
    tifffile.imwrite(tmp_path / "f.tif", data)
    rgb = read_image(tmp_path / "f.tif").rgb[:, :, 0]
    assert rgb[0, 0] == 0 and rgb[0, 1] == 0 and rgb[-1, -1] == 255
    finite = data[np.isfinite(data)]
    want = np.floor((data[1:] - finite.min()) / (finite.max() - finite.min()) * 255 + 0.5)
    np.testing.assert_array_equal(rgb[1:], want)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_corrupt_rasters(tmp_path, demo_png):
    data = demo_png.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: corrupt or unreadable PNG.*truncated"):
        read_image(tmp_path / "cut.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 99).save(tmp_path / "a.jpg")
    jpg = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[:200])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: corrupt or unreadable JPEG"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "cut.tif").write_bytes(b"II*\x00" + b"\x08\x00\x00\x00" + b"\xff" * 20)
    with pytest.raises(ImageReadError, match=r"cut\.tif: corrupt or unreadable TIFF"):
        read_image(tmp_path / "cut.tif")
