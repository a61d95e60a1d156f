"""Backend selection of medsam_agent_rt.ops: MSRT_OPS_BACKEND, the fallback rules when _C is
missing, host framework tensors, results independent of the thread count (MSRT_NUM_THREADS /
OMP_NUM_THREADS and each kernel's explicit count), and CUDA interop (streams, device checks)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsam_agent_rt import _ext, has_ext, ops
from medsam_agent_rt.ops import _dispatch
from medsam_agent_rt.ops import reference as ref

pytestmark = pytest.mark.skipif(not has_ext(), reason="medsam_agent_rt._C is not built")

RNG = np.random.default_rng(0)
MASKS = RNG.random((2, 30, 40)) < 0.5
TARGET = RNG.random((30, 40)) < 0.5
LOGITS = (RNG.standard_normal((2, 16, 16)) * 4).astype(np.float32)
VIEW = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
WEIGHTS = ops.PromptEncoderWeights(
    RNG.standard_normal((2, 4)), RNG.standard_normal((5, 8)), (64, 64)
)
COORDS = np.array([[3.0, 4.0], [10.0, 50.0], [0.0, 0.0]], np.float32)
LABELS = np.array([1, 0, -1], np.int32)

CALLS = {
    "mask_metrics": lambda: ops.mask_metrics(MASKS, TARGET).intersection,
    "encode_sparse_prompts": lambda: ops.encode_sparse_prompts(COORDS, LABELS, WEIGHTS, 4),
    "postprocess_masks": lambda: ops.postprocess_masks(LOGITS, (64, 64), (60, 64), (90, 96))[0],
    "render_overlay": lambda: ops.render_overlay(VIEW, MASKS[0], (2, 1, 28, 30)),
}
REFERENCE_NAME = {
    "mask_metrics": "mask_counts",
    "encode_sparse_prompts": "encode_sparse_prompts",
    "postprocess_masks": "postprocess_masks",
    "render_overlay": "render_overlay",
}
EXT_NAME = {
    "mask_metrics": "mask_counts",
    "encode_sparse_prompts": "encode_sparse_prompts",
    "postprocess_masks": "postprocess_masks",
    "render_overlay": "render_overlay",
}


def spy(monkeypatch, owner, name, calls):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize("op", sorted(CALLS))
@pytest.mark.parametrize("backend", ["reference", "cpu", "auto"])
def test_env_override_is_honoured(monkeypatch, op, backend):
    monkeypatch.setenv("MSRT_OPS_BACKEND", backend)
    ref_calls, ext_calls = [], []
    spy(monkeypatch, ref, REFERENCE_NAME[op], ref_calls)
    spy(monkeypatch, _ext.require_ext(), EXT_NAME[op], ext_calls)
    result = CALLS[op]()
    if backend == "reference":
        assert ref_calls and not ext_calls
    else:
        assert ext_calls and not ref_calls
    monkeypatch.setenv("MSRT_OPS_BACKEND", "reference" if backend != "reference" else "cpu")
    other = CALLS[op]()
    if op in ("mask_metrics", "render_overlay"):
        np.testing.assert_array_equal(result, other)  # bit-identical backends
    else:
        np.testing.assert_allclose(result, other, rtol=2.0**-23, atol=1e-6)


def test_bad_env_values(monkeypatch):
    monkeypatch.setenv("MSRT_OPS_BACKEND", "gpu")
    with pytest.raises(ValueError, match="MSRT_OPS_BACKEND must be one of"):
        CALLS["mask_metrics"]()
    monkeypatch.setenv("MSRT_OPS_BACKEND", "cuda")
    with pytest.raises(ValueError, match="MSRT_OPS_BACKEND=cuda needs CUDA tensors"):
        CALLS["render_overlay"]()


def test_missing_extension_falls_back_only_where_exact(monkeypatch):
    monkeypatch.delenv("MSRT_OPS_BACKEND", raising=False)
    monkeypatch.setattr(_dispatch, "has_ext", lambda: False)

    def missing():
        raise _ext.ExtensionMissingError("medsam_agent_rt._C is not available (test); rebuild it")

    monkeypatch.setattr(_dispatch, "require_ext", missing)
    for module in ("metrics", "prompt", "postprocess", "render"):
        monkeypatch.setattr(f"medsam_agent_rt.ops.{module}.require_ext", missing)
    np.testing.assert_array_equal(
        CALLS["mask_metrics"](), ref.mask_counts(MASKS, TARGET)[0]
    )  # exact fallback
    np.testing.assert_array_equal(
        CALLS["render_overlay"](), ref.render_overlay(VIEW, MASKS[0], (2, 1, 28, 30))
    )
    for op in ("encode_sparse_prompts", "postprocess_masks"):  # not bit-identical: no fallback
        with pytest.raises(_ext.ExtensionMissingError, match="rebuild"):
            CALLS[op]()
    monkeypatch.setenv("MSRT_OPS_BACKEND", "reference")  # an explicit choice still works
    assert CALLS["postprocess_masks"]().shape == (2, 90, 96)


def test_host_framework_tensors_are_read_in_place():
    torch = pytest.importorskip("torch")
    got = ops.mask_metrics(torch.from_numpy(MASKS), torch.from_numpy(TARGET))
    np.testing.assert_array_equal(got.intersection, CALLS["mask_metrics"]())
    out = ops.render_overlay(torch.from_numpy(VIEW), torch.from_numpy(MASKS[0]), (2, 1, 28, 30))
    np.testing.assert_array_equal(out, CALLS["render_overlay"]())
    logits, _ = ops.postprocess_masks(torch.from_numpy(LOGITS), (64, 64), (60, 64), (90, 96))
    np.testing.assert_array_equal(logits, CALLS["postprocess_masks"]())
    assert not _dispatch.is_cuda_array(torch.zeros(1)) and not _dispatch.is_cuda_array(VIEW)


_THREADS_SCRIPT = """
import hashlib, numpy as np
from medsam_agent_rt import ops
rng = np.random.default_rng(1)
h = hashlib.sha256()
m = rng.random((8, 1024, 1024)) < 0.5
h.update(ops.mask_metrics(m, m[0]).intersection.tobytes())
x = (rng.standard_normal((3, 256, 256)) * 8).astype(np.float32)
logits, masks = ops.postprocess_masks(x, (1024, 1024), (1024, 800), (1500, 1172))
h.update(logits.tobytes()); h.update(masks.tobytes())
view = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
h.update(ops.render_overlay(view, m[1], (0, 0, 1024, 1024)).tobytes())
print(h.hexdigest())
"""


@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "MSRT_NUM_THREADS"])
def test_results_do_not_depend_on_thread_count(variable):
    digests, reported = set(), []
    script = (
        _THREADS_SCRIPT + "from medsam_agent_rt import _C; print(_C.build_info()['cpu_threads'])\n"
    )
    for threads in ("1", "3"):
        env = {k: v for k, v in os.environ.items() if not k.endswith("NUM_THREADS")}
        env.update({variable: threads, "MSRT_OPS_BACKEND": "cpu"})
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        digest, count = out.stdout.split()
        digests.add(digest)
        reported.append(int(count))
    assert len(digests) == 1
    assert reported == [1, 3]  # the knob is read (MSRT_NUM_THREADS, else OMP_NUM_THREADS)


def test_msrt_num_threads_wins_over_omp_num_threads():
    env = {**os.environ, "MSRT_NUM_THREADS": "3", "OMP_NUM_THREADS": "1"}
    code = "from medsam_agent_rt import _C; print(_C.build_info()['cpu_threads'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    n=st.integers(1, 3),
    threads=st.sampled_from([2, 3, 7]),
)
def test_explicit_thread_counts_give_identical_results(seed, h, w, n, threads):
    """mask_counts, postprocess_masks and render_overlay cut even tiny inputs into several pieces
    when given an explicit thread count; every piece must land exactly as on one thread."""
    ext = _ext.require_ext()
    rng = np.random.default_rng(seed)
    pred, target = rng.random((n, h, w)) < 0.5, rng.random((h, w)) < 0.5
    counts = [np.empty((n, 3), np.int64) for _ in range(2)]
    for c, t in zip(counts, (1, threads)):
        ext.mask_counts(pred, target, c, 0.0, 0, threads=t)
    np.testing.assert_array_equal(counts[0], counts[1])
    np.testing.assert_array_equal(counts[0], np.stack(ref.mask_counts(pred, target), 1))

    x = (rng.standard_normal((n, 1 + h // 4, 1 + w // 4)) * 4).astype(np.float32)
    outs = [(np.empty((n, h, w), np.float32), np.empty((n, h, w), np.bool_)) for _ in range(2)]
    for (lg, mk), t in zip(outs, (1, threads)):
        ext.postprocess_masks(x, (64, 64), (60, 64), (h, w), 0.0, lg, mk, None, 0, threads=t)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])

    view = rng.integers(0, 256, (h + 3, w + 2, 3), dtype=np.uint8)
    renders = [np.empty_like(view) for _ in range(2)]
    for r, t in zip(renders, (1, threads)):
        ext.render_overlay(view, pred[0], r, (1, 2, w, h), (0, 255, 0), 128, 0, threads=t)
    np.testing.assert_array_equal(renders[0], renders[1])
    np.testing.assert_array_equal(renders[0], ref.render_overlay(view, pred[0], (1, 2, w, h)))


def test_dlpack_capsule_of_host_tensor_is_accepted_by_the_binding():
    torch = pytest.importorskip("torch")
    ext = _ext.require_ext()
    t = torch.from_numpy(MASKS.copy())
    out = np.empty((2, 3), np.int64)
    ext.mask_counts(t.__dlpack__(), TARGET, out, 0.0, 0)
    np.testing.assert_array_equal(out[:, 0], CALLS["mask_metrics"]())
    digest = hashlib.sha256(out.tobytes()).hexdigest()
    assert digest  # the call consumed the capsule without error


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.needs_cuda
def test_cuda_runs_on_the_current_stream():
    import torch

    stream = torch.cuda.Stream()
    big = torch.rand((4, 2048, 2048), device="cuda")
    with torch.cuda.stream(stream):
        assert _dispatch.cuda_stream_of(big) == stream.cuda_stream
        masks = big > 0.5  # enqueued on `stream`; our kernel must see it complete
        got = ops.mask_metrics(masks, masks[0])
        logits, m = ops.postprocess_masks(
            big[:, :256, :256], (1024, 1024), (1024, 1024), (700, 900)
        )
    stream.synchronize()
    want = ops.mask_metrics(masks.cpu().numpy(), masks[0].cpu().numpy())
    np.testing.assert_array_equal(got.intersection, want.intersection)
    host = ops.postprocess_masks(
        big[:, :256, :256].cpu().numpy(), (1024, 1024), (1024, 1024), (700, 900)
    )
    np.testing.assert_allclose(logits.cpu().numpy(), host[0], rtol=2.0**-23, atol=1e-12)


@pytest.mark.needs_cuda
def test_cuda_mixed_devices_and_framework_errors():
    import torch

    view = torch.zeros((8, 8, 3), dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match="mask must be on cuda:0"):
        ops.render_overlay(view, np.zeros((4, 4), bool), (0, 0, 8, 8))
    ext = _ext.require_ext()
    with pytest.raises(ValueError, match="must be on the same device"):
        ext.render_overlay(
            view.__dlpack__(),
            np.zeros((4, 4), bool),
            np.empty((8, 8, 3), np.uint8),
            (0, 0, 8, 8),
            (0, 255, 0),
            128,
            0,
        )
