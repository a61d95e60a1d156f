"""Mask post-processing against torch's F.interpolate chain (the behaviour SAM's
postprocess_masks has) and the float64 NumPy reference.

Tolerances: logits vs torch <= 1e-5 absolute for |logits| <= 32 (torch blends in float32: its
rounding is a few float32 ulps of the logit, <= 4e-6 at 32); masks vs torch exact except where
torch's logit is within 1e-4 of the threshold (ties). Logits vs the reference: the same float64
value rounded once to float32 (<= 1 float32 ulp apart); masks equal wherever logits are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsam_agent_rt import has_ext, ops
from medsam_agent_rt.ops import reference as ref

pytestmark = pytest.mark.skipif(not has_ext(), reason="medsam_agent_rt._C is not built")

ATOL_TORCH = 1e-5
TIE = 1e-4


def torch_chain(x, input_size, resized_size, original_size):
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]
    t = F.interpolate(t, input_size, mode="bilinear", align_corners=False)
    t = t[..., : resized_size[0], : resized_size[1]]
    t = F.interpolate(t, original_size, mode="bilinear", align_corners=False)
    return t[0].numpy()


def logits_like_sam(rng, shape, scale=8.0):
    return np.clip(rng.standard_normal(shape) * scale, -32, 32).astype(np.float32)


def check_vs_torch(x, input_size, resized_size, original_size, threshold=0.0):
    logits, masks = ops.postprocess_masks(x, input_size, resized_size, original_size, threshold)
    want = torch_chain(x, input_size, resized_size, original_size)
    assert logits.shape == masks.shape == want.shape
    assert logits.dtype == np.float32 and masks.dtype == np.bool_
    np.testing.assert_allclose(logits, want, rtol=0, atol=ATOL_TORCH)
    clear = np.abs(want - threshold) > TIE
    np.testing.assert_array_equal(masks[clear], (want > threshold)[clear])
    np.testing.assert_array_equal(masks, logits > np.float32(threshold))
    return logits, masks


def check_vs_reference(x, input_size, resized_size, original_size, threshold=0.0):
    logits, masks = ops.postprocess_masks(x, input_size, resized_size, original_size, threshold)
    rl, rm = ref.postprocess_masks(x, input_size, resized_size, original_size, threshold)
    np.testing.assert_allclose(logits, rl, rtol=2.0**-23, atol=1e-12)
    same = logits == rl
    np.testing.assert_array_equal(masks[same], rm[same])


CASES = [
    # (low h, w), input_size, resized_size, original_size
    ((256, 256), (1024, 1024), (1024, 768), (1365, 1024)),  # SAM, portrait image
    ((256, 256), (1024, 1024), (576, 1024), (1080, 1920)),  # SAM, landscape video frame
    ((256, 256), (256, 256), (256, 192), (600, 450)),  # LiteMedSAM (256 input)
    ((256, 256), (1024, 1024), (1024, 1024), (1024, 1024)),  # square, identity second resize
    ((256, 256), (1024, 1024), (1024, 1024), (300, 200)),  # downsampling
    ((64, 48), (100, 77), (90, 77), (33, 250)),
    ((1, 1), (4, 4), (3, 2), (5, 7)),
    ((3, 5), (7, 9), (7, 4), (1, 13)),
    ((5, 3), (9, 7), (4, 7), (13, 1)),
]


@pytest.mark.parametrize("low,input_size,resized_size,original_size", CASES)
def test_matches_torch_chain(low, input_size, resized_size, original_size):
    rng = np.random.default_rng(sum(original_size))
    x = logits_like_sam(rng, (2, *low))
    check_vs_torch(x, input_size, resized_size, original_size)
    check_vs_reference(x, input_size, resized_size, original_size)
    # the reference itself (the spec) follows torch too: float32 FMA source indices
    rl, _ = ref.postprocess_masks(x, input_size, resized_size, original_size)
    want = torch_chain(x, input_size, resized_size, original_size)
    np.testing.assert_allclose(rl, want, rtol=0, atol=ATOL_TORCH)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3),
    low=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    input_size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    crop_frac=st.tuples(st.floats(0.01, 1.0), st.floats(0.01, 1.0)),
    original_size=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    threshold=st.sampled_from([0.0, -1.5, 2.25]),
)
def test_random_sizes(seed, n, low, input_size, crop_frac, original_size, threshold):
    rng = np.random.default_rng(seed)
    x = logits_like_sam(rng, (n, *low))
    resized = tuple(max(1, int(round(f * s))) for f, s in zip(crop_frac, input_size))
    check_vs_torch(x, input_size, resized, original_size, threshold)
    check_vs_reference(x, input_size, resized, original_size, threshold)


def test_real_mask_as_logits(demo_dir: Path):
    from PIL import Image

    mask = np.asarray(Image.open(demo_dir / "demo_mask" / "06_CT_abdomen_liver.png").convert("L"))
    low = mask.reshape(256, 4, 256, 4).mean(axis=(1, 3)) / 255.0  # 1024 -> 256 area average
    x = ((low - 0.5) * 24.0).astype(np.float32)[None]
    logits, masks = check_vs_torch(x, (1024, 1024), (1024, 1024), (1024, 1024))
    agree = np.mean(masks[0] == (mask > 0))
    assert agree > 0.99  # a round trip through 256x256 keeps the organ


def test_masks_only_path_and_threshold():
    rng = np.random.default_rng(1)
    x = logits_like_sam(rng, (3, 256, 256))
    logits, masks = ops.postprocess_masks(x, (1024, 1024), (1024, 800), (1500, 1172), 1.5)
    none, masks_only = ops.postprocess_masks(
        x, (1024, 1024), (1024, 800), (1500, 1172), 1.5, return_logits=False
    )
    assert none is None
    np.testing.assert_array_equal(masks_only, masks)
    np.testing.assert_array_equal(masks, logits > 1.5)


def test_layouts_and_dtypes():
    rng = np.random.default_rng(2)
    x = logits_like_sam(rng, (2, 40, 56))
    want = ops.postprocess_masks(x, (160, 224), (150, 200), (99, 131))
    variants = [
        np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1),  # column-major planes
        np.repeat(x, 2, axis=2)[:, :, ::2],  # strided columns
        np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1],  # negative strides
        x.astype(np.float64),  # read as float32 (exact here: values are float32)
        x.astype(">f4"),  # non-native byte order
    ]
    for v in variants:
        got = ops.postprocess_masks(v, (160, 224), (150, 200), (99, 131))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize(
    "x,sizes,match",
    [
        (np.zeros((4, 4), np.float32), ((8, 8), (8, 8), (8, 8)), "low_res_logits must be 3-D"),
        (np.zeros((1, 4, 4), np.int32), ((8, 8), (8, 8), (8, 8)), "low_res_logits must be float"),
        (np.zeros((1, 4, 4), np.float32), ((8, 8), (9, 8), (8, 8)), "must fit inside input_size"),
        (np.zeros((1, 4, 4), np.float32), ((8, 8), (8, 8), (0, 8)), "original_size must be"),
        (np.zeros((1, 4, 4), np.float32), ((8,), (8, 8), (8, 8)), "input_size must be"),
        (np.zeros((1, 0, 4), np.float32), ((8, 8), (8, 8), (8, 8)), "h, w >= 1"),
    ],
)
def test_bad_arguments_raise_naming_them(x, sizes, match):
    with pytest.raises(ValueError, match=match):
        ops.postprocess_masks(x, *sizes)


def test_kernel_rejects_bad_outputs():
    from medsam_agent_rt._ext import require_ext

    ext = require_ext()
    x = np.zeros((2, 4, 4), np.float32)
    masks = np.empty((2, 8, 8), np.bool_)
    with pytest.raises(ValueError, match=r"out_logits must be \(2, 8, 8\) float32"):
        ext.postprocess_masks(
            x, (8, 8), (8, 8), (8, 8), 0.0, np.empty((2, 8, 9), np.float32), masks
        )
    with pytest.raises(ValueError, match="out_masks must be bool"):
        ext.postprocess_masks(x, (8, 8), (8, 8), (8, 8), 0.0, None, np.empty((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="low_res_logits must be float32"):
        ext.postprocess_masks(x.astype(np.float64), (8, 8), (8, 8), (8, 8), 0.0, None, masks)


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.needs_cuda
@pytest.mark.parametrize("low,input_size,resized_size,original_size", CASES[:5])
def test_cuda_matches_host_and_torch(low, input_size, resized_size, original_size):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(5)
    x = logits_like_sam(rng, (3, *low))
    xc = torch.from_numpy(x).cuda()
    logits, masks = ops.postprocess_masks(xc, input_size, resized_size, original_size)
    assert logits.is_cuda and masks.dtype == torch.bool
    host_logits, host_masks = ops.postprocess_masks(x, input_size, resized_size, original_size)
    np.testing.assert_allclose(logits.cpu().numpy(), host_logits, rtol=2.0**-23, atol=1e-12)
    # torch's own CUDA chain, the GPU user's baseline
    t = F.interpolate(xc[None], input_size, mode="bilinear", align_corners=False)
    t = F.interpolate(
        t[..., : resized_size[0], : resized_size[1]],
        original_size,
        mode="bilinear",
        align_corners=False,
    )[0]
    np.testing.assert_allclose(logits.cpu().numpy(), t.cpu().numpy(), rtol=0, atol=ATOL_TORCH)
    same = logits.cpu().numpy() == host_logits
    np.testing.assert_array_equal(masks.cpu().numpy()[same], host_masks[same])
    none, masks_only = ops.postprocess_masks(
        xc, input_size, resized_size, original_size, return_logits=False
    )
    assert none is None
    assert torch.equal(masks_only, masks)


@pytest.mark.needs_cuda
def test_cuda_strided_half_input():
    import torch

    rng = np.random.default_rng(6)
    x = torch.from_numpy(logits_like_sam(rng, (2, 64, 80))).cuda()
    xt = x.transpose(1, 2).contiguous().transpose(1, 2)  # column-major planes
    a = ops.postprocess_masks(x, (256, 320), (256, 300), (500, 600))
    b = ops.postprocess_masks(xt, (256, 320), (256, 300), (500, 600))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    h = ops.postprocess_masks(x.half(), (256, 320), (256, 300), (500, 600))
    want = ops.postprocess_masks(x.half().float().cpu().numpy(), (256, 320), (256, 300), (500, 600))
    np.testing.assert_allclose(h[0].cpu().numpy(), want[0], rtol=2.0**-23, atol=1e-12)
