"""Overlay rendering: byte-exact against the NumPy reference and against the rule written out by
hand (alpha 0.5 green = the round-half-up mean of the pixel and (0, 255, 0))."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsam_agent_rt import has_ext, ops
from medsam_agent_rt.ops import reference as ref

pytestmark = pytest.mark.skipif(not has_ext(), reason="medsam_agent_rt._C is not built")


def views(a, how):
    """The same (V, V, 3) / (H, W) values in another memory layout."""
    if how == "c":
        return a
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "flipped":
        return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    if how == "strided":
        return np.repeat(a, 2, axis=1)[:, ::2]
    raise AssertionError(how)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    view_hw=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    mask_hw=st.tuples(st.integers(1, 60), st.integers(1, 60)),
    box_frac=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
    color=st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    alpha=st.sampled_from([0.0, 0.5, 0.3, 1.0, 0.123]),
    mask_kind=st.sampled_from(["bool", "uint8", "empty", "full", "pixel"]),
    layouts=st.tuples(
        st.sampled_from(["c", "fortran", "flipped", "strided"]),
        st.sampled_from(["c", "fortran", "flipped", "strided"]),
    ),
)
def test_byte_exact_vs_reference(
    seed, view_hw, mask_hw, box_frac, color, alpha, mask_kind, layouts
):
    rng = np.random.default_rng(seed)
    vh, vw = view_hw
    view = rng.integers(0, 256, (vh, vw, 3), dtype=np.uint8)
    w = 1 + int(box_frac[2] * (vw - 1))
    h = 1 + int(box_frac[3] * (vh - 1))
    x0, y0 = int(box_frac[0] * (vw - w)), int(box_frac[1] * (vh - h))
    if mask_kind == "uint8":
        mask = (rng.integers(0, 4, mask_hw) * 60).astype(np.uint8)
    elif mask_kind == "empty":
        mask = np.zeros(mask_hw, bool)
    elif mask_kind == "full":
        mask = np.ones(mask_hw, bool)
    elif mask_kind == "pixel":
        mask = np.zeros(mask_hw, bool)
        mask[rng.integers(0, mask_hw[0]), rng.integers(0, mask_hw[1])] = True
    else:
        mask = rng.random(mask_hw) < 0.5
    before = view.copy()
    got = ops.render_overlay(
        views(view, layouts[0]), views(mask, layouts[1]), (x0, y0, w, h), color, alpha
    )
    want = ref.render_overlay(view, mask, (x0, y0, w, h), color, alpha)
    assert got.dtype == np.uint8 and got.shape == view.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(view, before)  # a new array; the input is untouched


def test_protocol_view_of_real_image(demo_dir: Path):
    """The 512 observation view of a real 1024 image and mask; the blend written out by hand."""
    from PIL import Image

    image = Image.open(demo_dir / "demo" / "06_CT_abdomen.png").convert("RGB").resize((512, 512))
    view = np.asarray(image)
    mask = np.asarray(Image.open(demo_dir / "demo_mask" / "06_CT_abdomen_liver.png")) > 0
    if mask.ndim == 3:
        mask = mask[..., 0]
    got = ops.render_overlay(view, mask, (0, 0, 512, 512))
    np.testing.assert_array_equal(got, ref.render_overlay(view, mask, (0, 0, 512, 512)))
    covered = mask[1::2, 1::2]  # nearest at pixel centres for an exact 2x downscale
    mean = (view.astype(np.int32) + np.array([0, 255, 0]) + 1) >> 1  # round-half-up mean
    np.testing.assert_array_equal(got[covered], mean[covered])
    np.testing.assert_array_equal(got[~covered], view[~covered])
    assert covered.any() and (~covered).any()


def test_letterboxed_non_square_image():
    rng = np.random.default_rng(1)
    view = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    mask = rng.random((300, 500)) < 0.3  # 300 x 500 image letterboxed to 512 x 307 at y0 = 102
    box = (0, 102, 512, 307)
    got = ops.render_overlay(view, mask, box)
    np.testing.assert_array_equal(got, ref.render_overlay(view, mask, box))
    np.testing.assert_array_equal(got[:102], view[:102])
    np.testing.assert_array_equal(got[409:], view[409:])


@pytest.mark.parametrize("size", [1024, 2048])
def test_large_masks(size):
    rng = np.random.default_rng(size)
    view = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    mask = rng.random((size, size)) < 0.5
    np.testing.assert_array_equal(
        ops.render_overlay(view, mask, (0, 0, 512, 512), (255, 0, 0), 0.7),
        ref.render_overlay(view, mask, (0, 0, 512, 512), (255, 0, 0), 0.7),
    )


@pytest.mark.parametrize(
    "view,mask,box,color,alpha,match",
    [
        (
            np.zeros((8, 8, 3), np.float32),
            np.zeros((4, 4), bool),
            (0, 0, 8, 8),
            (0, 255, 0),
            0.5,
            "view must be",
        ),
        (
            np.zeros((8, 8, 4), np.uint8),
            np.zeros((4, 4), bool),
            (0, 0, 8, 8),
            (0, 255, 0),
            0.5,
            "view must be",
        ),
        (
            np.zeros((8, 8), np.uint8),
            np.zeros((4, 4), bool),
            (0, 0, 8, 8),
            (0, 255, 0),
            0.5,
            "view must be 3-D",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((4, 4), np.float32),
            (0, 0, 8, 8),
            (0, 255, 0),
            0.5,
            "mask must be bool or uint8",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((1, 4, 4), bool),
            (0, 0, 8, 8),
            (0, 255, 0),
            0.5,
            "mask must be 2-D",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((0, 4), bool),
            (0, 0, 8, 8),
            (0, 255, 0),
            0.5,
            "mask must not be empty",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((4, 4), bool),
            (1, 0, 8, 8),
            (0, 255, 0),
            0.5,
            "content_box",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((4, 4), bool),
            (0, 0, 0, 8),
            (0, 255, 0),
            0.5,
            "content_box",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((4, 4), bool),
            (0, 0, 8, 8),
            (0, 256, 0),
            0.5,
            "color must be",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((4, 4), bool),
            (0, 0, 8, 8),
            (0, 255),
            0.5,
            "color must be",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((4, 4), bool),
            (0, 0, 8, 8),
            (0, 255, 0),
            1.5,
            "alpha must be",
        ),
    ],
)
def test_bad_arguments_raise_naming_them(view, mask, box, color, alpha, match):
    with pytest.raises(ValueError, match=match):
        ops.render_overlay(view, mask, box, color, alpha)


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.needs_cuda
def test_cuda_byte_exact():
    import torch

    rng = np.random.default_rng(2)
    view = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    for mask in (rng.random((1024, 1024)) < 0.5, (rng.random((300, 500)) < 0.5).astype(np.uint8)):
        box = (0, 0, 512, 512) if mask.shape[0] == 1024 else (0, 102, 512, 307)
        want = ref.render_overlay(view, mask, box, (0, 255, 0), 0.5)
        got = ops.render_overlay(torch.from_numpy(view).cuda(), torch.from_numpy(mask).cuda(), box)
        assert got.is_cuda and got.dtype == torch.uint8
        np.testing.assert_array_equal(got.cpu().numpy(), want)
    # channels-first storage seen through a permuted view, transposed mask
    vt = torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1))).cuda().permute(1, 2, 0)
    mt = torch.from_numpy(np.ascontiguousarray(mask.T)).cuda().T
    got = ops.render_overlay(vt, mt, (0, 102, 512, 307), (255, 0, 0), 0.3)
    want = ref.render_overlay(view, mask, (0, 102, 512, 307), (255, 0, 0), 0.3)
    np.testing.assert_array_equal(got.cpu().numpy(), want)
