"""The 512 view and the 0..999 grid <-> pixel mapping: exact formula (Fraction oracle), letterbox,
clamping, round-trip properties, view and overlay images."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from medsam_agent_rt.protocol import ViewGeometry, render_observation, render_view, view_geometry

sizes = st.integers(1, 3000)


def rhu(q: Fraction) -> int:
    """Round half up, exactly."""
    return int((q + Fraction(1, 2)).__floor__())


def oracle_pixel(v: int, length: int, other: int) -> tuple[int, bool]:
    """The documented formula with Fractions: grid over the padded square of side S."""
    s = max(length, other)
    pad = (s - length) // 2
    clamped = not 0 <= v <= 999
    v = min(max(v, 0), 999)
    px = (rhu(Fraction(v * (s - 1), 999)) if s > 1 else 0) - pad
    if not 0 <= px <= length - 1:
        return min(max(px, 0), length - 1), True
    return px, clamped


@given(w=sizes, v=st.integers(0, 999))
def test_square_images_use_the_protocol_formula(w, v):
    g = ViewGeometry(w, w)
    px, py, clamped = g.grid_to_pixel(v, v)
    assert px == py == rhu(Fraction(v, 999) * (w - 1))
    assert not clamped


@given(h=sizes, w=sizes, vx=st.integers(-2000, 3000), vy=st.integers(-2000, 3000))
def test_grid_to_pixel_matches_the_fraction_oracle(h, w, vx, vy):
    g = ViewGeometry(h, w)
    px, py, clamped = g.grid_to_pixel(vx, vy)
    ox, cx = oracle_pixel(vx, w, h)
    oy, cy = oracle_pixel(vy, h, w)
    assert (px, py, clamped) == (ox, oy, cx or cy)
    assert 0 <= px < w and 0 <= py < h


@settings(max_examples=300)
@given(h=st.integers(1, 1000), w=st.integers(1, 1000), data=st.data())
def test_pixel_grid_pixel_is_exact_up_to_1000_px(h, w, data):
    x = data.draw(st.integers(0, w - 1))
    y = data.draw(st.integers(0, h - 1))
    g = ViewGeometry(h, w)
    gx, gy, c1 = g.pixel_to_grid(x, y)
    assert not c1 and 0 <= gx <= 999 and 0 <= gy <= 999
    assert g.grid_to_pixel(gx, gy) == (x, y, False)


@settings(max_examples=300)
@given(h=st.integers(1000, 5000), w=st.integers(1000, 5000), v=st.integers(0, 999))
def test_grid_pixel_grid_is_exact_from_1000_px(h, w, v):
    g = ViewGeometry(h, w)
    for axis in ("x", "y"):
        px, clamped = g.grid_to_pixel_1d(v, axis)
        if clamped:  # v lands in the letterbox padding: no pixel to come back from
            continue
        assert g.pixel_to_grid_1d(px, axis) == (v, False)


def test_round_trip_boundaries_are_tight():
    """Just past each bound the round trip fails somewhere (the documented bounds are sharp)."""
    g = ViewGeometry(1001, 1001)
    assert any(g.grid_to_pixel_1d(g.pixel_to_grid_1d(p, "x")[0], "x")[0] != p for p in range(1001))
    g = ViewGeometry(999, 999)
    assert any(g.pixel_to_grid_1d(g.grid_to_pixel_1d(v, "x")[0], "x")[0] != v for v in range(1000))


@given(h=sizes, w=sizes)
def test_mapping_is_monotonic_and_covers_the_image(h, w):
    g = ViewGeometry(h, w)
    xs = [g.grid_to_pixel_1d(v, "x")[0] for v in range(0, 1000, 7)] + [
        g.grid_to_pixel_1d(999, "x")[0]
    ]
    assert xs == sorted(xs)
    s = max(h, w)
    # the image edges are reachable from the grid
    gx0, _ = g.pixel_to_grid_1d(0, "x")
    gx1, _ = g.pixel_to_grid_1d(w - 1, "x")
    assert g.grid_to_pixel_1d(gx0, "x")[0] == 0 or s > 1000
    assert g.grid_to_pixel_1d(gx1, "x")[0] == w - 1 or s > 1000


def test_letterbox_padding_and_odd_split():
    g = ViewGeometry(3, 6)  # S = 6: 3 rows of padding, 1 on top, 2 below
    assert (g.side, g.pad_x, g.pad_y) == (6, 0, 1)
    # grid 0 is the top padding row -> clamped to row 0; grid 999 is padded row 5 -> row 2
    assert g.grid_to_pixel_1d(0, "y") == (0, True)
    assert g.grid_to_pixel_1d(999, "y") == (2, True)
    # rows 0..2 are padded rows 1..3 -> grid round(q * 999 / 5)
    assert [g.pixel_to_grid_1d(r, "y")[0] for r in range(3)] == [200, 400, 599]
    assert [g.pixel_to_grid_1d(c, "x")[0] for c in range(6)] == [0, 200, 400, 599, 799, 999]
    assert g.pixel_to_grid(7, -1) == (999, 200, True)


@given(h=st.integers(1, 2500), w=st.integers(1, 2500), data=st.data())
def test_grid_points_land_where_the_pixel_is_drawn_in_the_view(h, w, data):
    """The letterbox is undone: a pixel's grid value, read as a position on the 512 view
    (v / 999 * 511), is within half a source pixel (256 / S view px) + 1 view px of where the view
    draws that pixel's centre. (The authors' code mapped letterboxed views as if unpadded.)"""
    g = ViewGeometry(h, w)
    x = data.draw(st.integers(0, w - 1))
    y = data.draw(st.integers(0, h - 1))
    gx, gy, _ = g.pixel_to_grid(x, y)
    x0, y0, bw, bh = g.content_box
    drawn_x = x0 + (x + 0.5) * bw / w - 0.5
    drawn_y = y0 + (y + 0.5) * bh / h - 0.5
    tol = 256 / g.side + 1.0
    assert abs(gx / 999 * 511 - drawn_x) <= tol
    assert abs(gy / 999 * 511 - drawn_y) <= tol


@given(h=sizes, w=sizes)
def test_content_box_is_centred_and_scaled(h, w):
    g = ViewGeometry(h, w)
    x0, y0, bw, bh = g.content_box
    assert 0 <= x0 and x0 + bw <= 512 and 0 <= y0 and y0 + bh <= 512
    assert bw >= 1 and bh >= 1
    assert abs(bw - w * 512 / max(h, w)) <= 1.0 and abs(bh - h * 512 / max(h, w)) <= 1.0
    # centred up to the whole-pixel padding split (half a source pixel) and rounding
    tol = 256 / max(h, w) + 1.0
    assert abs((512 - bw) / 2 - x0) <= tol and abs((512 - bh) / 2 - y0) <= tol
    if h == w:
        assert g.content_box == (0, 0, 512, 512)


def test_view_of_a_square_image_is_a_pillow_bicubic_resize():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(img).resize((512, 512), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(render_view(img), expected)


def test_view_letterbox_is_black_and_the_content_exact():
    img = np.zeros((100, 250, 3), np.uint8)
    img[:] = (10, 200, 30)
    g = view_geometry(img.shape)
    x0, y0, bw, bh = g.content_box
    # S = 250, pad_y = 75: rows [75, 175) of the square -> view rows round(75 * 512 / 250) = 154
    # to round(175 * 512 / 250) = 358
    assert (x0, bw, y0, bh) == (0, 512, 154, 204)
    view = render_view(img, g)
    assert view.shape == (512, 512, 3) and view.dtype == np.uint8
    assert (view[y0 : y0 + bh] == (10, 200, 30)).all()
    assert not view[:y0].any() and not view[y0 + bh :].any()


def test_view_accepts_gray_and_rgba_and_refuses_other_dtypes():
    gray = np.full((20, 20), 7, np.uint8)
    assert (render_view(gray) == 7).all()
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 3] = 255
    assert not render_view(rgba).any()
    with pytest.raises(ValueError, match="uint8"):
        render_view(np.zeros((20, 20, 3), np.uint16))
    with pytest.raises(ValueError, match="geometry is for"):
        render_view(gray, ViewGeometry(10, 20))


def test_overlay_is_green_alpha_half_inside_the_content_only():
    img = np.full((100, 200, 3), 100, np.uint8)
    g = view_geometry(img.shape)
    view = render_view(img, g)
    mask = np.zeros((100, 200), bool)
    mask[:, 100:] = True  # right half of the image
    out = render_observation(view, mask, g)
    x0, y0, bw, bh = g.content_box
    # expected blend, computed by hand: (v * 128 + c * 128 + 128) >> 8
    green = ((100 * 128 + 0 * 128 + 128) >> 8, (100 * 128 + 255 * 128 + 128) >> 8, 50)
    assert green == (50, 178, 50)
    right = out[y0 : y0 + bh, 256 + 1 : 512]
    assert (right == green).all()
    np.testing.assert_array_equal(out[y0 : y0 + bh, :255], view[y0 : y0 + bh, :255])
    np.testing.assert_array_equal(out[:y0], view[:y0])
    with pytest.raises(ValueError, match="image resolution"):
        render_observation(view, np.zeros((50, 50), bool), g)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="height"):
        ViewGeometry(0, 5)
    with pytest.raises(ValueError, match="axis"):
        ViewGeometry(5, 5).grid_to_pixel_1d(3, "z")
    with pytest.raises(ValueError, match="image_shape"):
        view_geometry((5,))
