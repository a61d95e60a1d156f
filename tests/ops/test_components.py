"""Connected components (ops.components) against the NumPy reference (flood fill), scipy.ndimage
(label, find_objects, sum, binary_fill_holes) and OpenCV, on hand-made cases, random shapes and
the real demo masks; every CUDA path against the CPU result on a GPU (needs_cuda)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsam_agent_rt import has_ext, ops
from medsam_agent_rt.ops import reference as ref

ndi = pytest.importorskip("scipy.ndimage")

STRUCTURE = {4: None, 8: np.ones((3, 3), bool)}  # scipy's structuring element per connectivity
needs_ext = pytest.mark.skipif(not has_ext(), reason="medsam_agent_rt._C is not built")


def scipy_components(mask: np.ndarray, connectivity: int):
    """Labels, areas and inclusive (x0, y0, x1, y1) boxes from scipy.ndimage."""
    labels, k = ndi.label(mask, STRUCTURE[connectivity])
    areas = np.asarray(ndi.sum(np.ones_like(labels), labels, np.arange(1, k + 1)), np.int64)
    boxes = [
        [s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in ndi.find_objects(labels)
    ]
    return labels.astype(np.int32), areas.reshape(-1), np.asarray(boxes, np.int64).reshape(-1, 4)


def assert_components(c: ops.Components, labels, areas, boxes) -> None:
    np.testing.assert_array_equal(np.asarray(c.labels), labels)
    np.testing.assert_array_equal(np.asarray(c.areas), areas)
    np.testing.assert_array_equal(np.asarray(c.boxes), boxes)
    assert np.asarray(c.labels).dtype == np.int32
    assert np.asarray(c.areas).dtype == np.int64 and np.asarray(c.boxes).dtype == np.int64


def blobs(n: int, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """Smoothed-noise blobs with holes, (n, n) uint8 0/255."""
    rng = np.random.default_rng(seed)
    x = ndi.zoom(rng.standard_normal((n // 16, n // 16)), 16, order=1)
    x = ndi.gaussian_filter(x, n / 256)
    return np.where(x > level * x.std(), 255, 0).astype(np.uint8)


# ----------------------------------------------------------------------------- hand-made cases


def test_checkerboard_4_vs_8():
    m = np.indices((3, 3)).sum(0) % 2 == 0  # 5 corners+centre pixels, touching diagonally
    c8, c4 = ops.label_components(m, 8), ops.label_components(m, 4)
    assert c8.count == 1 and c4.count == 5
    np.testing.assert_array_equal(c4.labels, [[1, 0, 2], [0, 3, 0], [4, 0, 5]])
    np.testing.assert_array_equal(c8.boxes, [[0, 0, 2, 2]])
    assert ops.count_components(m, 4) == 5 and ops.count_components(m, 8) == 1


def test_anti_diagonal_chain_and_first_pixel_order():
    # an anti-diagonal chain starting top-right: its first raster pixel is (x=4, y=0), so it is
    # label 1 although another component starts further left on row 1
    m = np.zeros((5, 5), np.uint8)
    for i in range(5):
        m[i, 4 - i] = 7  # any non-zero value is foreground
    m[1, 0] = 1
    c = ops.label_components(m, 8)
    assert c.count == 2
    assert c.labels[0, 4] == 1 and c.labels[1, 0] == 2 and c.labels[4, 0] == 1
    np.testing.assert_array_equal(c.areas, [5, 1])
    np.testing.assert_array_equal(c.boxes, [[0, 0, 4, 4], [0, 1, 0, 1]])
    assert ops.label_components(m, 4).count == 6


def test_u_shape_merges_late():
    # the two arms of a U are separate until the bottom row joins them: one label, first pixel's
    m = np.zeros((4, 5), bool)
    m[:, 0] = m[:, 4] = m[3, :] = True
    c = ops.label_components(m, 4)
    assert c.count == 1 and c.areas[0] == 11
    np.testing.assert_array_equal(c.boxes, [[0, 0, 4, 3]])


def test_empty_full_and_single_pixel():
    z = np.zeros((7, 9), bool)
    c = ops.label_components(z)
    assert c.count == 0 and c.boxes.shape == (0, 4) and not c.labels.any()
    assert not ops.keep_largest_component(z).any() and not ops.fill_holes(z).any()
    f = np.ones((7, 9), bool)
    c = ops.label_components(f, 4)
    np.testing.assert_array_equal(c.boxes, [[0, 0, 8, 6]])
    assert ops.fill_holes(f).all() and ops.keep_largest_component(f).all()
    one = np.zeros((1, 1), np.uint8)
    one[0, 0] = 255
    np.testing.assert_array_equal(ops.label_components(one).labels, [[1]])


def test_keep_largest_tie_goes_to_first_label():
    m = np.zeros((4, 9), bool)
    m[0:2, 6:8] = True  # area 4, first pixel (6, 0): label 1
    m[2:4, 0:2] = True  # area 4, label 2
    out = ops.keep_largest_component(m)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, ops.label_components(m).labels == 1)


def test_fill_holes_area_limit_and_border():
    m = np.ones((9, 12), bool)
    m[2, 2] = False  # 1-px hole
    m[4:6, 4:7] = False  # 6-px hole
    m[0:3, 10] = False  # touches the border: not a hole
    small = m.copy()
    small[2, 2] = True
    np.testing.assert_array_equal(ops.fill_holes(m, 1), small)
    filled = ops.fill_holes(m)
    assert filled[:3, 10].sum() == 0 and filled[2:7, 2:7].all()
    np.testing.assert_array_equal(ops.fill_holes(m, 0), m)
    np.testing.assert_array_equal(ops.fill_holes(m, -3), m)  # a negative limit fills nothing


def test_fill_holes_complementary_connectivity():
    # a diamond ring: its hole leaks diagonally through the ring's corners for an 8-connected
    # background, so only the 8-connected foreground (4-connected holes) fills it
    m = np.zeros((5, 5), bool)
    m[[0, 1, 1, 2, 2, 3, 3, 4], [2, 1, 3, 0, 4, 1, 3, 2]] = True
    assert ops.fill_holes(m, None, 8)[2, 2]
    assert not ops.fill_holes(m, None, 4)[2, 2]


# ----------------------------------------------------------------------------- random shapes

# widths around the kernels' 64-pixel words too
widths = st.one_of(st.integers(1, 24), st.sampled_from([63, 64, 65, 127, 128, 129, 191]))
masks = st.tuples(st.integers(1, 24), widths, st.floats(0.0, 1.0), st.integers(0, 2**31 - 1)).map(
    lambda a: np.random.default_rng(a[3]).random((a[0], a[1])) < a[2]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=masks, connectivity=st.sampled_from([4, 8]))
def test_random_masks_match_reference_and_scipy(m, connectivity):
    expected = ref.label_components(m, connectivity)
    assert_components(ops.label_components(m, connectivity), *expected)
    assert_components(ops.label_components(m, connectivity), *scipy_components(m, connectivity))
    assert ops.count_components(m, connectivity) == len(expected[1])
    np.testing.assert_array_equal(
        ops.keep_largest_component(m, connectivity), ref.keep_largest_component(m, connectivity)
    )
    for max_area in (None, 0, 1, 3, 10**9):
        np.testing.assert_array_equal(
            ops.fill_holes(m, max_area, connectivity), ref.fill_holes(m, max_area, connectivity)
        )
    scipy_filled = ndi.binary_fill_holes(m, STRUCTURE[12 - connectivity])
    np.testing.assert_array_equal(ops.fill_holes(m, None, connectivity), scipy_filled)


@needs_ext
@settings(max_examples=60, deadline=None)
@given(m=masks, connectivity=st.sampled_from([4, 8]))
def test_results_do_not_depend_on_thread_count(m, connectivity):
    from medsam_agent_rt import _C

    base = _C.label_components_cpu(m, connectivity, 1)
    for threads in (2, 3, 7):  # strips of a few rows each, merged at their borders
        got = _C.label_components_cpu(m, connectivity, threads)
        for a, b in zip(got, base):
            np.testing.assert_array_equal(a, b)
        assert _C.count_components_cpu(m, connectivity, threads) == len(base[1])
        np.testing.assert_array_equal(
            _C.keep_largest_component_cpu(m, connectivity, threads),
            _C.keep_largest_component_cpu(m, connectivity, 1),
        )
        np.testing.assert_array_equal(
            _C.fill_holes_cpu(m, connectivity, -1, threads),
            _C.fill_holes_cpu(m, connectivity, -1, 1),
        )


def test_non_contiguous_and_foreign_inputs():
    rng = np.random.default_rng(3)
    base = (rng.random((40, 30)) < 0.5).astype(np.uint8) * 255
    views = [base.T, base[::-1], base[:, ::-1], base[3:-5:2, 1::3], np.asfortranarray(base)]
    for v in views:
        expected = ref.label_components(np.ascontiguousarray(v), 8)
        assert_components(ops.label_components(v), *expected)
        np.testing.assert_array_equal(
            ops.fill_holes(v, 4), ref.fill_holes(np.ascontiguousarray(v), 4)
        )
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(base > 0)
    assert_components(ops.label_components(t.T), *ref.label_components(base.T > 0, 8))


@needs_ext
def test_cpu_entry_points_take_host_capsules():
    torch = pytest.importorskip("torch")
    from medsam_agent_rt import _C

    m = blobs(96, seed=8) > 0
    want = scipy_components(m, 8)
    got = _C.label_components_cpu(torch.from_numpy(m).__dlpack__(), 8, 2)
    assert_components(ops.Components(*got), *want)
    with pytest.raises(ValueError, match="mask must be a NumPy array or a DLPack capsule"):
        _C.label_components_cpu(m.tolist(), 8, 0)


@needs_ext
def test_concurrent_callers_and_forked_child():
    """The CPU kernels share one helper pool: concurrent Python threads (the GIL is released)
    and a forked child (whose pool threads do not exist) must still get exact results."""
    import multiprocessing
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    masks = [blobs(384, seed=s) for s in range(6)]
    expected = [scipy_components(m > 0, 8) for m in masks]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda m: ops.label_components(m), masks * 3))
    for c, want in zip(results, expected * 3):
        assert_components(c, *want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (Python >= 3.12)
        with multiprocessing.get_context("fork").Pool(1) as child:
            counts = child.map_async(ops.count_components, masks[:2]).get(timeout=60)
    assert counts == [len(w[1]) for w in expected[:2]]


def test_reference_backend_override(monkeypatch):
    m = blobs(64, seed=5) > 0
    expected = ops.label_components(m)
    monkeypatch.setenv("MSRT_OPS_BACKEND", "reference")
    assert ops.active_backend() == "reference"
    assert_components(ops.label_components(m), expected.labels, expected.areas, expected.boxes)


def test_reference_serves_without_the_extension(monkeypatch):
    from medsam_agent_rt.ops import _dispatch

    monkeypatch.setattr(_dispatch, "has_ext", lambda: False)  # as if _C had not been built
    m = blobs(48, seed=6) > 0
    assert_components(ops.label_components(m), *ref.label_components(m, 8))
    np.testing.assert_array_equal(ops.fill_holes(m, 7, 4), ref.fill_holes(m, 7, 4))


# ----------------------------------------------------------------------------- full size


def demo_masks(demo_dir: Path, count: int) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((demo_dir / "demo_mask").glob("*.png"))[:count]
    return [np.asarray(Image.open(f))[..., 0] for f in files]


def test_full_size_against_scipy_and_opencv(demo_dir):
    cv2 = pytest.importorskip("cv2")
    cases = demo_masks(demo_dir, 6) + [blobs(1024, seed=1)]
    for m in cases:
        for connectivity in (4, 8):
            c = ops.label_components(m, connectivity)
            labels, areas, boxes = scipy_components(m, connectivity)
            assert_components(c, labels, areas, boxes)
            k, _, stats, _ = cv2.connectedComponentsWithStats(
                (m > 0).astype(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S
            )
            # OpenCV numbers components in its own order: compare as sorted rows
            cv_rows = np.c_[stats[1:, :2], stats[1:, :2] + stats[1:, 2:4] - 1, stats[1:, 4]]
            ours = np.c_[c.boxes, c.areas]
            assert c.count == k - 1
            np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(cv_rows, axis=0))
            scipy_filled = ndi.binary_fill_holes(m > 0, STRUCTURE[12 - connectivity])
            np.testing.assert_array_equal(ops.fill_holes(m, None, connectivity), scipy_filled)
            largest = labels == (int(np.argmax(areas)) + 1 if len(areas) else -1)
            np.testing.assert_array_equal(ops.keep_largest_component(m, connectivity), largest)


@needs_ext
def test_noise_at_scale_and_thread_counts():
    from medsam_agent_rt import _C

    m = np.random.default_rng(7).random((512, 700)) < 0.45  # ~40k tiny components, many runs
    expected = scipy_components(m, 8)
    for threads in (1, 2, 5):
        assert_components(ops.Components(*_C.label_components_cpu(m, 8, threads)), *expected)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.zeros((4, 4), np.float32), "mask must be bool or uint8"),
        (np.zeros((4, 4), np.int32), "mask must be bool or uint8"),
        (np.zeros((2, 4, 4), bool), "mask must be 2-D"),
        (np.zeros(4, bool), "mask must be 2-D"),
    ],
)
def test_bad_mask_raises(mask, match):
    for fn in (
        ops.label_components,
        ops.count_components,
        ops.keep_largest_component,
        ops.fill_holes,
    ):
        with pytest.raises(ValueError, match=match):
            fn(mask)


def test_bad_arguments_raise():
    m = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="connectivity must be 4 or 8, got 6"):
        ops.label_components(m, 6)
    with pytest.raises(ValueError, match="connectivity"):
        ops.fill_holes(m, None, True)
    with pytest.raises(ValueError, match="max_area must be an int or None"):
        ops.fill_holes(m, 2.5)


@needs_ext
def test_native_binding_checks():
    from medsam_agent_rt import _C

    with pytest.raises(ValueError, match="unit column stride"):
        _C.label_components_cpu(np.zeros((4, 4), bool)[:, ::2], 8, 0)
    with pytest.raises(ValueError, match="mask must not be empty"):
        _C.count_components_cpu(np.zeros((0, 4), bool), 8, 0)


def test_zero_size_masks():
    c = ops.label_components(np.zeros((0, 5), bool))
    assert c.count == 0 and c.labels.shape == (0, 5)
    assert ops.fill_holes(np.zeros((3, 0), np.uint8)).shape == (3, 0)


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.needs_cuda
def test_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    cases = [
        blobs(1024, seed=2),
        (rng.random((300, 517)) < 0.5).astype(np.uint8),
        np.zeros((33, 65), bool),
        np.ones((65, 33), bool),
        np.eye(70, dtype=bool)[:, ::-1].copy(),
        rng.random((1, 97)) < 0.5,
        rng.random((97, 1)) < 0.5,
    ]
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # kernels must follow the caller's current stream
        for m in cases:
            for t in (
                torch.from_numpy(m).cuda(),
                torch.from_numpy(np.ascontiguousarray(m.T)).cuda().T,
            ):
                host = t.cpu().numpy()
                for connectivity in (4, 8):
                    c = ops.label_components(t, connectivity)
                    assert c.labels.is_cuda and c.labels.dtype == torch.int32
                    assert_components(
                        ops.Components(c.labels.cpu(), c.areas.cpu(), c.boxes.cpu()),
                        *ref_or_scipy(host, connectivity),
                    )
                    assert ops.count_components(t, connectivity) == c.count
                    np.testing.assert_array_equal(
                        ops.keep_largest_component(t, connectivity).cpu().numpy(),
                        ops.keep_largest_component(host, connectivity),
                    )
                    for max_area in (None, 0, 5):
                        np.testing.assert_array_equal(
                            ops.fill_holes(t, max_area, connectivity).cpu().numpy(),
                            ops.fill_holes(host, max_area, connectivity),
                        )
    stream.synchronize()


def ref_or_scipy(m: np.ndarray, connectivity: int):
    return scipy_components(m > 0, connectivity)


@pytest.mark.needs_cuda
def test_cuda_bad_inputs_raise():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="mask must be bool or uint8"):
        ops.label_components(torch.zeros((4, 4), device="cuda"))
