"""The phantom drawing helpers against scipy: connected components, erosion/dilation, blur."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from medsam_agent_rt.data.phantoms._canvas import (
    Blob,
    Canvas,
    random_blob,
)
from medsam_agent_rt.data.phantoms._components import (
    keep_largest,
)
from medsam_agent_rt.data.phantoms._filters import (
    blur,
    dilate,
    erode,
)


def test_keep_largest_matches_scipy():
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        m = rng.random((h, w)) < rng.uniform(0.1, 0.7)
        lab, n = ndi.label(m, np.ones((3, 3)))
        if n == 0:
            want = np.zeros_like(m)
        else:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            want = lab == int(np.argmax(sizes))
        np.testing.assert_array_equal(keep_largest(m), want)


@pytest.mark.parametrize("r", [1, 2, 4])
def test_erode_dilate_match_scipy(r):
    rng = np.random.default_rng(r)
    m = ndi.binary_opening(rng.random((37, 41)) < 0.6)
    se = np.ones((2 * r + 1, 2 * r + 1), bool)
    np.testing.assert_array_equal(erode(m, r), ndi.binary_erosion(m, se, border_value=0))
    np.testing.assert_array_equal(dilate(m, r), ndi.binary_dilation(m, se))


@pytest.mark.parametrize("sigma", [1.0, 3.0, 6.0])
def test_blur_is_close_to_a_gaussian(sigma):
    a = np.zeros((121, 121), np.float32)
    a[60, 60] = 1.0
    b = blur(a, sigma)
    assert abs(float(b.sum()) - 1.0) < 1e-4
    x = np.arange(121) - 60
    var_x = float((b.sum(0) * x * x).sum())
    var_y = float((b.sum(1) * x * x).sum())
    # the box approximation rounds the width: within 30 % of the Gaussian's variance
    assert abs(var_x / sigma**2 - 1) < 0.3 and abs(var_y / sigma**2 - 1) < 0.3
    g = ndi.gaussian_filter(a.astype(np.float64), sigma)
    assert np.abs(b - g).max() < 0.35 * g.max()
    rgb = np.random.default_rng(1).random((20, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(blur(rgb, 2.0)[..., 2], blur(rgb[..., 2], 2.0))


def test_blob_geometry():
    cv = Canvas(200, 300)
    assert cv.half_w == 1.5 and cv.half_h == 1.0
    e = Blob(0.2, -0.1, 0.3, 0.2, angle=0.0)
    area = e.mask(cv).sum()
    assert abs(area / (np.pi * 0.3 * 0.2 * cv.s**2) - 1) < 0.03
    b = random_blob(np.random.default_rng(3), 0.0, 0.0, 0.4, 0.3, 0.7, rough=0.3)
    m = b.mask(cv)
    assert ndi.label(m)[1] == 1
    edge = m & ~ndi.binary_erosion(m)
    ys, xs = np.nonzero(edge)
    for x, y in b.boundary(64):
        c, r = cv.to_pixel(x, y)
        assert np.min((xs - c) ** 2 + (ys - r) ** 2) <= 2.0
