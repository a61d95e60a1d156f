"""Mask metrics: the native kernels equal the NumPy reference exactly (integer counts), on every
dtype, layout and broadcast the public function accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsam_agent_rt import has_ext, ops
from medsam_agent_rt.ops import reference as ref

pytestmark = pytest.mark.skipif(not has_ext(), reason="medsam_agent_rt._C is not built")


def expected(pred, target, threshold=0.0):
    """Counts and scores straight from the definition (NumPy, independent of the kernels)."""
    p = ref.binarize(np.asarray(pred), threshold)
    t = ref.binarize(np.asarray(target), threshold)
    p = p[None] if p.ndim == 2 else p
    t = t[None] if t.ndim == 2 else t
    p, t = np.broadcast_arrays(p, t)
    inter = (p & t).sum(axis=(1, 2))
    pa, ta = p.sum(axis=(1, 2)), t.sum(axis=(1, 2))
    union = pa + ta - inter
    iou = np.array([1.0 if u == 0 else i / u for i, u in zip(inter, union)])
    dice = np.array([1.0 if a + b == 0 else 2 * i / (a + b) for i, a, b in zip(inter, pa, ta)])
    return inter, union, pa, ta, iou, dice


def check(pred, target, threshold=0.0):
    got = ops.mask_metrics(pred, target, threshold)
    inter, union, pa, ta, iou, dice = expected(pred, target, threshold)
    np.testing.assert_array_equal(got.intersection, inter)
    np.testing.assert_array_equal(got.union, union)
    np.testing.assert_array_equal(got.pred_area, pa)
    np.testing.assert_array_equal(got.ref_area, ta)
    np.testing.assert_array_equal(got.iou, iou)  # same integer counts -> same float64 ratio
    np.testing.assert_array_equal(got.dice, dice)
    for a in (got.intersection, got.union, got.pred_area, got.ref_area):
        assert a.dtype == np.int64
    return got


def make_mask(rng, shape, kind, dtype):
    if kind == "empty":
        m = np.zeros(shape, bool)
    elif kind == "full":
        m = np.ones(shape, bool)
    elif kind == "pixel":
        m = np.zeros(shape, bool)
        m[tuple(int(rng.integers(0, s)) for s in shape)] = True
    else:
        m = rng.random(shape) < rng.random()
    if dtype == "bool":
        return m
    if dtype == "uint8":  # any non-zero value is inside
        return (m * rng.integers(1, 256, shape)).astype(np.uint8)
    # logits: inside <=> > 0.25
    lo = rng.uniform(-5, 0.25, shape)
    hi = rng.uniform(np.nextafter(0.25, 1), 5, shape)
    return np.where(m, hi, lo).astype(dtype)


def layout(a, how):
    """The same values in another memory layout (all views of a bigger or reordered buffer)."""
    if how == "c":
        return a
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "strided":  # every other column of a twice-as-wide buffer
        big = np.repeat(a, 2, axis=-1)
        return big[..., ::2]
    if how == "flipped":  # negative strides
        return np.ascontiguousarray(a[..., ::-1, ::-1])[..., ::-1, ::-1]
    if how == "transposed":
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
    raise AssertionError(how)


DTYPES = ["bool", "uint8", "float32", "float64"]
KINDS = ["random", "empty", "full", "pixel"]
LAYOUTS = ["c", "fortran", "strided", "flipped", "transposed"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.sampled_from([1, 2, 3, 17, 40]),
    w=st.sampled_from([1, 2, 5, 16, 33]),
    n=st.integers(1, 4),
    pred_batched=st.booleans(),
    target_form=st.sampled_from(["2d", "one", "batched"]),
    dtypes=st.tuples(st.sampled_from(DTYPES), st.sampled_from(DTYPES)),
    kinds=st.tuples(st.sampled_from(KINDS), st.sampled_from(KINDS)),
    layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
)
def test_matches_definition(seed, h, w, n, pred_batched, target_form, dtypes, kinds, layouts):
    rng = np.random.default_rng(seed)
    pshape = (n, h, w) if pred_batched else (h, w)
    tshape = {"2d": (h, w), "one": (1, h, w), "batched": (n, h, w)}[target_form]
    pred = layout(make_mask(rng, pshape, kinds[0], dtypes[0]), layouts[0])
    target = layout(make_mask(rng, tshape, kinds[1], dtypes[1]), layouts[1])
    check(pred, target, threshold=0.25)


@pytest.mark.parametrize("size,n", [(1024, 1), (1024, 8), (2048, 8)])
def test_large_masks_exact(size, n):
    rng = np.random.default_rng(size + n)
    pred = rng.random((n, size, size)) < 0.4
    target = rng.random((size, size)) < 0.6
    got = check(pred, target)
    assert got.iou.shape == (n,)


def test_float_logits_per_mask_reference_and_slices():
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((3, 1100, 1030)).astype(np.float32)[:, 5:-7, ::-1]
    target = rng.standard_normal((3, 1030, 1100))[:, ::-1, :].transpose(0, 2, 1)[:, 5:-7]
    check(pred, target, threshold=-0.3)


def test_threshold_compares_in_the_arrays_precision():
    # float32(0.1) > 0.1 in float64, but NumPy and torch compare float32 arrays in float32.
    x32 = np.full((2, 3), np.float32(0.1))
    x64 = np.full((2, 3), 0.1000000001)
    got = ops.mask_metrics(x32, x64, threshold=0.1)
    assert got.pred_area[0] == np.count_nonzero(x32 > 0.1) == 0
    assert got.ref_area[0] == np.count_nonzero(x64 > 0.1) == 6


def test_float16_and_nonnative_byte_order_follow_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 7)).astype(np.float16)
    y = rng.standard_normal((9, 7)).astype(">f4")
    check(x, y, threshold=0.1)
    check(x.astype(">f8"), y.astype(np.float32), threshold=-0.2)


def test_conventions_empty_and_disjoint():
    empty = np.zeros((4, 5), bool)
    full = np.ones((4, 5), bool)
    both_empty = ops.mask_metrics(empty, empty)
    assert both_empty.iou[0] == both_empty.dice[0] == 1.0
    one_empty = ops.mask_metrics(full, empty)
    assert one_empty.iou[0] == one_empty.dice[0] == 0.0
    assert ops.iou(full, full) == ops.dice(full, full) == 1.0
    half = full.copy()
    half[:2] = False
    assert ops.iou(half, full) == pytest.approx(0.5)
    assert ops.dice(half, full) == pytest.approx(2 * 10 / 30)


def test_single_pred_against_many_targets():
    rng = np.random.default_rng(3)
    pred = rng.random((20, 30)) < 0.5
    targets = rng.random((5, 20, 30)) < 0.5
    got = check(pred, targets)
    assert got.pred_area.tolist() == [int(pred.sum())] * 5


def test_real_demo_masks(demo_dir: Path):
    from PIL import Image

    files = sorted((demo_dir / "demo_mask").glob("06_CT_abdomen_*.png"))  # 4 organs, one CT
    assert len(files) >= 2
    stack = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])  # 0/255 uint8
    check(stack, stack[::-1].copy())
    check(stack, stack[0] > 0)


@pytest.mark.parametrize(
    "pred,target,match",
    [
        (np.zeros((4, 4), np.int32), np.zeros((4, 4), bool), "pred must be bool or uint8"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), np.int16), "target must be bool or uint8"),
        (np.zeros((2, 2, 4, 4), bool), np.zeros((4, 4), bool), "pred must be 2-D or 3-D"),
        (np.zeros((4,), bool), np.zeros((4, 4), bool), "pred must be 2-D or 3-D"),
        (np.zeros((4, 4), bool), np.zeros((4, 5), bool), "same H x W"),
        (np.zeros((2, 4, 4), bool), np.zeros((3, 4, 4), bool), "same number of masks"),
    ],
)
def test_bad_arguments_raise_naming_them(pred, target, match):
    with pytest.raises(ValueError, match=match):
        ops.mask_metrics(pred, target)


def test_iou_dice_need_single_masks():
    with pytest.raises(ValueError, match="pred must be 2-D"):
        ops.iou(np.zeros((2, 3, 3), bool), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="target must be 2-D"):
        ops.dice(np.zeros((3, 3), bool), np.zeros((2, 3, 3), bool))


def test_scores_bit_identical_to_reference_formula():
    from medsam_agent_rt._ext import require_ext

    rng = np.random.default_rng(9)
    inter = rng.integers(0, 10**12, 500)
    pa = inter + rng.integers(0, 10**12, 500)
    ra = inter + rng.integers(0, 10**12, 500)
    inter[:3], pa[:3], ra[:3] = [0, 0, 5], [0, 3, 5], [0, 0, 5]  # both empty, one empty, equal
    counts = np.stack([inter, pa, ra], axis=1)
    scores = np.empty((500, 2))
    require_ext().iou_dice(counts, scores)
    iou, dice = ref.iou_dice_from_counts(inter, pa, ra)
    np.testing.assert_array_equal(scores[:, 0], iou)
    np.testing.assert_array_equal(scores[:, 1], dice)
    assert scores[0].tolist() == [1.0, 1.0] and scores[1].tolist() == [0.0, 0.0]


def test_kernel_rejects_bad_output_buffer():
    from medsam_agent_rt._ext import require_ext

    ext = require_ext()
    m = np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match=r"out must be \(2, 3\)"):
        ext.mask_counts(m, m, np.empty((2, 2), np.int64), 0.0, 0)
    ro = np.empty((2, 3), np.int64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        ext.mask_counts(m, m, ro, 0.0, 0)
    with pytest.raises(ValueError, match="pred must be a NumPy array or a DLPack capsule"):
        ext.mask_counts([[1]], m, np.empty((2, 3), np.int64), 0.0, 0)


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.needs_cuda
@pytest.mark.parametrize("dtype", ["bool", "uint8", "float32", "float64", "float16"])
def test_cuda_matches_reference(dtype):
    import torch

    rng = np.random.default_rng(4)
    pred = make_mask(rng, (3, 300, 517), "random", "float32" if dtype == "float16" else dtype)
    if dtype == "float16":
        pred = pred.astype(np.float16)
    target = make_mask(rng, (300, 517), "random", "bool")
    want = expected(pred, target, 0.25)
    got = ops.mask_metrics(torch.from_numpy(pred).cuda(), torch.from_numpy(target).cuda(), 0.25)
    np.testing.assert_array_equal(got.intersection, want[0])
    np.testing.assert_array_equal(got.pred_area, want[2])
    np.testing.assert_array_equal(got.ref_area, want[3])
    np.testing.assert_array_equal(got.iou, want[4])


@pytest.mark.needs_cuda
def test_cuda_strided_broadcast_and_large():
    import torch

    rng = np.random.default_rng(5)
    pred = torch.from_numpy(rng.random((8, 2048, 2048)) < 0.5).cuda()
    target = torch.from_numpy(rng.random((2048, 2048)) < 0.5).cuda()
    got = ops.mask_metrics(pred, target)
    want = expected(pred.cpu().numpy(), target.cpu().numpy())
    np.testing.assert_array_equal(got.intersection, want[0])
    t = torch.from_numpy(rng.standard_normal((2, 64, 96))).cuda().transpose(1, 2)[:, ::2]
    assert t.shape == (2, 48, 64) and not t.is_contiguous()
    p = torch.from_numpy(rng.standard_normal((48, 64))).float().cuda()  # one pred, two targets
    got = ops.mask_metrics(p, t, 0.1)
    want = expected(p.cpu().numpy(), t.cpu().numpy(), 0.1)
    np.testing.assert_array_equal(got.intersection, want[0])
    np.testing.assert_array_equal(got.ref_area, want[3])


@pytest.mark.needs_cuda
def test_cuda_and_host_mixed_raise():
    import torch

    m = torch.zeros((4, 4), dtype=torch.bool, device="cuda")
    with pytest.raises(ValueError, match="target must be on cuda:0"):
        ops.mask_metrics(m, np.zeros((4, 4), bool))
