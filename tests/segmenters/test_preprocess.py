"""Each family's official preprocessing: resize method against the library the official code
calls (cv2 INTER_AREA, skimage order-3 resize, PIL bilinear), normalisation, padding and the
prompt coordinate mapping."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_agent_rt.segmenters.families import FAMILIES
from medsam_agent_rt.segmenters.preprocess import (
    as_rgb_uint8,
    preprocess_image,
    resize_area_numpy,
    resize_cubic_spline,
    to_input_coords,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "shape, size",
    [
        ((1024, 1024, 3), (256, 256)),
        ((512, 768, 3), (256, 384)),
        ((96, 1024, 3), (24, 256)),
        ((300, 600, 3), (100, 200)),
    ],
)
def test_area_resize_is_bit_exact_for_integer_factors(shape, size):
    cv2 = pytest.importorskip("cv2")
    img = RNG.integers(0, 256, shape, dtype=np.uint8)
    want = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(resize_area_numpy(img, size), want)


@pytest.mark.parametrize(
    "shape, size, max_mismatch",
    [
        ((1000, 800, 3), (256, 205), 1e-3),
        ((300, 200, 3), (256, 171), 1e-3),
        ((100, 50, 3), (256, 128), 0.1),
    ],
)
def test_area_resize_other_factors_within_one_level(shape, size, max_mismatch):
    """Non-integer shrink: cv2 sums in float32 (rare ±1 at .5); enlarging: cv2's fixed-point
    bilinear path (±1 on a few percent of pixels)."""
    cv2 = pytest.importorskip("cv2")
    img = RNG.integers(0, 256, shape, dtype=np.uint8)
    want = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype(int)
    got = resize_area_numpy(img, size).astype(int)
    assert np.abs(got - want).max() <= 1
    assert (got != want).mean() <= max_mismatch


@pytest.mark.parametrize("shape", [(60, 90, 3), (200, 150, 3), (128, 128, 3)])
def test_medsam_spline_resize_equals_skimage(shape):
    transform = pytest.importorskip("skimage.transform")
    img = RNG.integers(0, 256, shape, dtype=np.uint8)
    want = transform.resize(img, (128, 128), order=3, preserve_range=True, anti_aliasing=True)
    np.testing.assert_array_equal(resize_cubic_spline(img, (128, 128)), want.astype(np.uint8))


def test_sam_preprocessing_by_hand():
    from PIL import Image

    pre = FAMILIES["sam"].preprocessing
    img = RNG.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    x, size = preprocess_image(img, pre)
    assert size == (614, 1024) and x.shape == (1, 3, 1024, 1024) and x.dtype == np.float32
    resized = np.asarray(Image.fromarray(img).resize((1024, 614), Image.BILINEAR), np.float32)
    want = (resized - np.array(pre.pixel_mean, np.float32)) / np.array(pre.pixel_std, np.float32)
    np.testing.assert_array_equal(x[0, :, :614].transpose(1, 2, 0), want)
    assert not x[0, :, 614:].any()  # zero padding after normalisation


def test_litemedsam_preprocessing_by_hand():
    pre = FAMILIES["litemedsam"].preprocessing
    img = RNG.integers(10, 200, (1024, 512, 3), dtype=np.uint8)
    x, size = preprocess_image(img, pre)
    assert size == (256, 128) and x.shape == (1, 3, 256, 256)
    small = img.reshape(256, 4, 128, 4, 3).astype(np.float64).mean(axis=(1, 3))
    small = np.rint(small)  # block mean, round half to even (cv2's integer-factor area path)
    want = (small - small.min()) / (small.max() - small.min())
    np.testing.assert_allclose(x[0, :, :, :128].transpose(1, 2, 0), want, atol=1e-7)
    assert not x[0, :, :, 128:].any()


def test_medsam_preprocessing_is_square_minmax():
    pytest.importorskip("scipy")
    pre = FAMILIES["medsam"].preprocessing
    img = RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    small = FAMILIES["medsam"].preprocessing.__class__(**{**pre.__dict__, "input_size": 48})
    x, size = preprocess_image(img, small)
    assert size == (48, 48)
    assert x.min() == 0.0 and x.max() == 1.0  # min-max over the whole resized image


def test_constant_image_does_not_divide_by_zero():
    x, _ = preprocess_image(np.full((40, 40, 3), 7, np.uint8), FAMILIES["litemedsam"].preprocessing)
    assert np.isfinite(x).all() and not x.any()


def test_coordinate_mapping():
    sam = FAMILIES["sam"].preprocessing
    lite = FAMILIES["litemedsam"].preprocessing
    medsam = FAMILIES["medsam"].preprocessing
    pts = np.array([[499.0, 299.0], [10.0, 20.0]])
    # SAM: per-axis ratio of the rounded resized size (ResizeLongestSide.apply_coords)
    np.testing.assert_allclose(
        to_input_coords(pts, (300, 500), sam), pts * [1024 / 500, 614 / 300], rtol=1e-6
    )
    # LiteMedSAM: int(v * 256 / max(H, W))
    np.testing.assert_array_equal(
        to_input_coords(pts, (300, 500), lite), [[255.0, 153.0], [5.0, 10.0]]
    )
    # MedSAM: v / (W, H) * 1024 (square resize)
    np.testing.assert_allclose(
        to_input_coords(pts, (300, 500), medsam), pts / [500, 300] * 1024, rtol=1e-6
    )


def test_as_rgb_uint8():
    g = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    rgb = as_rgb_uint8(g)
    assert rgb.shape == (5, 6, 3) and (rgb == g[:, :, None]).all()
    rgba = RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(as_rgb_uint8(rgba), rgba[:, :, :3])
    with pytest.raises(ValueError, match="uint8.*bool.*convert"):
        as_rgb_uint8(np.zeros((5, 6), bool))
