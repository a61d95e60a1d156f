"""Exact distance transform, error regions and the click simulator (ops.distance) against the
NumPy reference (brute-force envelope), a closed form, scipy.ndimage.distance_transform_edt and a
scipy-based click simulator written here; every CUDA path against the CPU result (needs_cuda)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsam_agent_rt import has_ext, ops
from medsam_agent_rt.ops import reference as ref

ndi = pytest.importorskip("scipy.ndimage")
needs_ext = pytest.mark.skipif(not has_ext(), reason="medsam_agent_rt._C is not built")


def scipy_edt(mask: np.ndarray) -> np.ndarray:
    return ndi.distance_transform_edt(mask).astype(np.float32)


def scipy_error_regions(pred, gt, exclude=()):
    """The simulator of PROTOCOL.md written with scipy: padded EDTs of FN and FP."""
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    d_fn = scipy_edt(np.pad(g & ~p, 1))[1:-1, 1:-1]
    d_fp = scipy_edt(np.pad(p & ~g, 1))[1:-1, 1:-1]
    for x, y in exclude:
        if 0 <= x < p.shape[1] and 0 <= y < p.shape[0]:
            d_fn[y, x] = d_fp[y, x] = 0
    return d_fn, d_fp


def scipy_click(pred, gt, exclude=()):
    d_fn, d_fp = scipy_error_regions(pred, gt, exclude)
    fn_max, fp_max = d_fn.max(), d_fp.max()
    if fn_max == 0 and fp_max == 0:
        return None
    d = d_fn if fn_max > fp_max else d_fp
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return ops.Click(int(x), int(y), bool(fn_max > fp_max), float(d[y, x]))


def blobs(n: int, seed: int = 0, level: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(ndi.zoom(rng.standard_normal((n // 16, n // 16)), 16, order=1), n / 256)
    return x > level * x.std()


# ----------------------------------------------------------------------------- hand-made cases


def test_closed_form_single_zero():
    h, w, y0, x0 = 7, 11, 2, 8
    m = np.ones((h, w), bool)
    m[y0, x0] = False
    yy, xx = np.mgrid[:h, :w]
    expected = np.sqrt((yy - y0) ** 2.0 + (xx - x0) ** 2.0).astype(np.float32)
    np.testing.assert_array_equal(ops.distance_transform(m), expected)


def test_no_zero_is_inf_and_all_zero_is_zero():
    d = ops.distance_transform(np.ones((5, 4), np.uint8))
    assert d.dtype == np.float32 and np.isposinf(d).all()
    assert not ops.distance_transform(np.zeros((5, 4), bool)).any()
    np.testing.assert_array_equal(ops.distance_transform(np.ones((1, 1), bool)), [[np.inf]])


def test_click_on_identical_masks_is_none():
    m = blobs(64, 3)
    assert ops.next_click(m, m) is None
    assert ops.next_click(np.zeros((3, 3), bool), np.zeros((3, 3), np.uint8)) is None
    d_fn, d_fp = ops.error_regions(m, m)
    assert not d_fn.any() and not d_fp.any()


def test_click_centre_of_missing_square_with_border():
    gt = np.zeros((9, 9), bool)
    gt[2:7, 2:7] = True  # 5x5 false negative: centre at distance 3
    assert ops.next_click(np.zeros_like(gt), gt) == ops.Click(4, 4, True, 3.0)
    full = np.ones((4, 6), bool)  # the 1-px zero border makes the image edge a boundary
    assert ops.next_click(np.zeros_like(full), full) == ops.Click(1, 1, True, 2.0)


def test_tie_goes_negative_and_row_major():
    pred = np.zeros((5, 11), bool)
    gt = np.zeros((5, 11), bool)
    gt[1:4, 1:4] = True  # FN 3x3 square: max 2 at (2, 2)
    pred[1:4, 6:9] = True  # FP 3x3 square: max 2 at (7, 2)
    assert ops.next_click(pred, gt) == ops.Click(7, 2, False, 2.0)
    gt2 = np.zeros((4, 8), bool)
    gt2[1:3, 1:7] = True  # a 2x6 bar: many maxima at 1.0... first in row-major order wins
    assert ops.next_click(np.zeros_like(gt2), gt2) == ops.Click(1, 1, True, 1.0)


def test_exclusions_skip_clicked_pixels_and_ignore_outside():
    gt = np.zeros((9, 9), bool)
    gt[2:7, 2:7] = True
    pred = np.zeros_like(gt)
    first = ops.next_click(pred, gt)
    second = ops.next_click(pred, gt, [(first.x, first.y), (-1, 3), (4, 99), (99, 4)])
    assert (second.x, second.y) != (first.x, first.y)
    assert second == scipy_click(pred, gt, [(first.x, first.y)])
    np.testing.assert_array_equal(
        ops.error_regions(pred, gt, np.array([[4, 4], [4, 4], [-5, -5]]))[0],
        scipy_error_regions(pred, gt, [(4, 4)])[0],
    )
    single = np.zeros((3, 3), bool)
    single[1, 1] = True
    assert ops.next_click(np.zeros_like(single), single, [(1, 1)]) is None  # nothing left


# ----------------------------------------------------------------------------- random shapes

# widths around the kernels' 64-pixel words too
widths = st.one_of(st.integers(1, 24), st.sampled_from([63, 64, 65, 127, 128, 129, 191]))
masks = st.tuples(st.integers(1, 24), widths, st.floats(0.0, 1.0), st.integers(0, 2**31 - 1)).map(
    lambda a: np.random.default_rng(a[3]).random((a[0], a[1])) < a[2]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=masks)
def test_random_distance_matches_reference_and_scipy(m):
    d = ops.distance_transform(m)
    np.testing.assert_array_equal(d, ref.distance_transform(m))  # bit-exact
    if not m.all():
        np.testing.assert_array_equal(d, scipy_edt(m))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pred=masks,
    seed=st.integers(0, 2**31 - 1),
    flip=st.floats(0.0, 0.6),
    n_ex=st.integers(0, 4),
)
def test_random_clicks_match_reference(pred, seed, flip, n_ex):
    rng = np.random.default_rng(seed)
    gt = pred ^ (rng.random(pred.shape) < flip)
    h, w = pred.shape
    exclude = np.c_[rng.integers(-2, w + 2, n_ex), rng.integers(-2, h + 2, n_ex)]
    if n_ex and rng.random() < 0.5:  # often exclude the current best click itself
        best = ref.next_click(pred, gt)
        if best is not None:
            exclude[0] = best[:2]
    expected = ref.next_click(pred, gt, exclude)
    assert ops.next_click(pred, gt, exclude) == (None if expected is None else ops.Click(*expected))
    for got, want in zip(
        ops.error_regions(pred, gt, exclude), ref.error_regions(pred, gt, exclude)
    ):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


@needs_ext
@settings(max_examples=50, deadline=None)
@given(m=masks, seed=st.integers(0, 2**31 - 1))
def test_results_do_not_depend_on_thread_count(m, seed):
    from medsam_agent_rt import _C

    gt = m ^ (np.random.default_rng(seed).random(m.shape) < 0.3)
    ex = np.array([[1, 1]])
    for threads in (2, 3, 6):  # several row strips per thread
        np.testing.assert_array_equal(
            _C.distance_transform_cpu(m, threads), _C.distance_transform_cpu(m, 1)
        )
        assert _C.next_click_cpu(m, gt, ex, threads) == _C.next_click_cpu(m, gt, ex, 1)
        for a, b in zip(
            _C.error_regions_cpu(m, gt, ex, threads), _C.error_regions_cpu(m, gt, ex, 1)
        ):
            np.testing.assert_array_equal(a, b)


def test_non_contiguous_and_foreign_inputs():
    rng = np.random.default_rng(9)
    base = (rng.random((30, 41)) < 0.7).astype(np.uint8) * 255
    other = np.roll(base, 3, axis=1)
    for v, o in [
        (base.T, other.T),
        (base[::-1], other[::-1]),
        (base[2::3, ::-2], other[2::3, ::-2]),
    ]:
        vc, oc = np.ascontiguousarray(v), np.ascontiguousarray(o)
        np.testing.assert_array_equal(ops.distance_transform(v), ref.distance_transform(vc))
        assert ops.next_click(v, o) == ops.Click(*ref.next_click(vc, oc))
        np.testing.assert_array_equal(ops.error_regions(v, o)[1], ref.error_regions(vc, oc)[1])
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(base > 0)
    np.testing.assert_array_equal(ops.distance_transform(t.T), ref.distance_transform(base.T > 0))
    assert ops.next_click(t, torch.from_numpy(other), torch.tensor([[0, 0]])) == ops.Click(
        *ref.next_click(base, other, [[0, 0]])
    )


def test_reference_serves_without_the_extension(monkeypatch):
    from medsam_agent_rt.ops import _dispatch

    monkeypatch.setattr(_dispatch, "has_ext", lambda: False)  # as if _C had not been built
    gt = blobs(48, 8)
    pred = np.roll(gt, 2, 1)
    assert ops.next_click(pred, gt) == ops.Click(*ref.next_click(pred, gt))
    np.testing.assert_array_equal(ops.distance_transform(gt), ref.distance_transform(gt))


# ----------------------------------------------------------------------------- full size


def demo_masks(demo_dir: Path, count: int) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((demo_dir / "demo_mask").glob("*.png"))[:count]
    return [np.asarray(Image.open(f))[..., 0] for f in files]


def test_full_size_against_scipy(demo_dir):
    for i, gt in enumerate(demo_masks(demo_dir, 4) + [blobs(1024, 4).astype(np.uint8)]):
        np.testing.assert_array_equal(ops.distance_transform(gt), scipy_edt(gt))
        g = gt > 0
        # a plausible prediction: the mask shifted and eroded, plus a spurious blob
        pred = ndi.binary_erosion(np.roll(g, (5 + i, -7), (0, 1)), iterations=3)
        pred[100:140, 900:980] = True
        exclude = [(10, 10), (2000, 5)]
        want = scipy_click(pred, g, exclude)
        assert ops.next_click(pred, gt, exclude) == want
        d_fn, d_fp = ops.error_regions(pred, gt, exclude)
        s_fn, s_fp = scipy_error_regions(pred, g, exclude)
        np.testing.assert_array_equal(d_fn, s_fn)
        np.testing.assert_array_equal(d_fp, s_fp)


def float32_tie_case() -> tuple[np.ndarray, np.ndarray, ops.Click]:
    """A false-negative region whose float32 maximum is shared by two squared distances.

    Past ~2048 px two squared distances can share a float32 root, and the reference compares
    float32 distances: its click is the first pixel of the float32 maximum, which need not hold
    the largest squared distance. Here gt is full (4200 x 4200: the centre pixels are 2100 px
    from the zero border) and pred has two pixels: one 2057 rows down and 422 columns right of
    A = (x 2100, y 2099), so d2(A) = 2057^2 + 422^2 = 4409333, and one 1974 rows up and 716
    columns left of B = (x 2099, y 2099), so d2(B) = 1974^2 + 716^2 = 4409332. Both round to
    2099.841 in float32; every other pixel is farther from the border's 2100 or nearer a pred
    pixel. B comes first in row-major order, so the click is B, not the d2-maximal A.
    """
    n = 4200
    gt = np.ones((n, n), bool)
    pred = np.zeros((n, n), bool)
    pred[2099 + 2057, 2100 + 422] = True
    pred[2099 - 1974, 2099 - 716] = True
    root = float(np.float32(np.sqrt(4409333.0)))
    assert root == float(np.float32(np.sqrt(4409332.0)))
    return pred, gt, ops.Click(2099, 2099, True, root)


@needs_ext
def test_float32_tie_beyond_2048_px():
    pred, gt, want = float32_tie_case()
    assert ops.next_click(pred, gt) == want
    d_fn, d_fp = ops.error_regions(pred, gt)
    assert d_fn[2099, 2099] == d_fn[2099, 2100] == d_fn.max() == np.float32(want.distance)
    assert not d_fp.any()


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise():
    m = np.zeros((4, 5), bool)
    with pytest.raises(ValueError, match="mask must be bool or uint8"):
        ops.distance_transform(m.astype(np.float64))
    with pytest.raises(ValueError, match="mask must be 2-D"):
        ops.distance_transform(m[None])
    with pytest.raises(ValueError, match="pred must be bool or uint8"):
        ops.next_click(m.astype(np.int16), m)
    with pytest.raises(ValueError, match="gt must be 2-D"):
        ops.error_regions(m, m[0])
    with pytest.raises(ValueError, match="pred and gt must have the same H x W"):
        ops.next_click(m, m.T)
    with pytest.raises(ValueError, match=r"exclude must be \(K, 2\)"):
        ops.next_click(m, m, [[1, 2, 3]])
    with pytest.raises(ValueError, match="exclude must hold integer"):
        ops.error_regions(m, m, [[0.5, 1.0]])


def test_zero_size_masks():
    assert ops.distance_transform(np.zeros((0, 3), bool)).shape == (0, 3)
    assert ops.next_click(np.zeros((2, 0), bool), np.zeros((2, 0), bool)) is None


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.needs_cuda
def test_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    g = blobs(1024, 6)
    cases = [
        (g, ndi.binary_erosion(np.roll(g, 9, 0), iterations=2)),
        (rng.random((257, 300)) < 0.5, rng.random((257, 300)) < 0.5),
        (np.ones((40, 70), bool), np.zeros((40, 70), bool)),
        (rng.random((1, 50)) < 0.5, rng.random((1, 50)) < 0.5),
        (rng.random((50, 1)) < 0.5, rng.random((50, 1)) < 0.5),
        (rng.random((9, 5000)) < 0.9, rng.random((9, 5000)) < 0.9),  # > 48 KiB of shared memory
    ]
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for gt, pred in cases:
            tg = torch.from_numpy(gt).cuda()
            tp = torch.from_numpy(np.ascontiguousarray(pred.T)).cuda().T  # a strided view
            for m, t in ((gt, tg), (pred, tp)):
                d = ops.distance_transform(t)
                assert d.is_cuda and d.dtype == torch.float32
                np.testing.assert_array_equal(d.cpu().numpy(), ops.distance_transform(m))
            h, w = gt.shape
            exclude = [(0, 0), (w // 2, h // 2), (w + 3, 0)]
            assert ops.next_click(tp, tg, exclude) == ops.next_click(pred, gt, exclude)
            assert ops.next_click(tg, tg) is None
            for a, b in zip(
                ops.error_regions(tp, tg, exclude), ops.error_regions(pred, gt, exclude)
            ):
                np.testing.assert_array_equal(a.cpu().numpy(), b)
    stream.synchronize()


@pytest.mark.needs_cuda
def test_cuda_no_zero_and_tie_path():
    torch = pytest.importorskip("torch")
    full = torch.ones((6, 9), dtype=torch.bool, device="cuda")
    assert torch.isinf(ops.distance_transform(full)).all()
    pred, gt, want = float32_tie_case()
    assert ops.next_click(torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda()) == want


@pytest.mark.needs_cuda
def test_cuda_mixed_devices_raise():
    torch = pytest.importorskip("torch")
    m = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="both be CUDA tensors"):
        ops.next_click(torch.from_numpy(m).cuda(), m)


@pytest.mark.needs_cuda
def test_cuda_widest_rows_and_misaligned_scratch():
    """Rows of exactly cuda_max_width pixels fit edt_rows' shared memory (its envelope size lives
    there too); one more is refused naming the limit. Scratch must be 8-byte aligned (64-bit
    atomics), so an offset view is refused instead of faulting."""
    torch = pytest.importorskip("torch")
    from medsam_agent_rt import _C

    w = int(_C.cuda_max_width(0))
    rng = np.random.default_rng(21)
    m = rng.random((3, w)) < 0.97
    d = ops.distance_transform(torch.from_numpy(m).cuda())
    np.testing.assert_array_equal(d.cpu().numpy(), ref.distance_transform(m))
    pred, gt = rng.random((3, w)) < 0.9, rng.random((3, w)) < 0.9
    assert ops.next_click(torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda()) == (
        ops.next_click(pred, gt)
    )
    with pytest.raises(ValueError, match="too wide"):
        ops.distance_transform(torch.ones((2, w + 1), dtype=torch.bool, device="cuda"))
    mask = torch.from_numpy(m[:, :64].copy()).cuda()
    stream = torch.cuda.current_stream().cuda_stream or 1
    out = torch.empty((3, 64), dtype=torch.float32, device="cuda")
    scratch = torch.empty(int(_C.dt_scratch_elems(0)) + 1, dtype=torch.int32, device="cuda")[1:]
    with pytest.raises(ValueError, match="8-byte boundary"):
        _C.distance_transform_cuda(
            mask.__dlpack__(stream=stream),
            out.__dlpack__(stream=stream),
            scratch.__dlpack__(stream=stream),
            stream,
        )
