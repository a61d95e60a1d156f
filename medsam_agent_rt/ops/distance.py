"""Exact Euclidean distance transform and the next-click simulator of PROTOCOL.md.

Masks are (H, W) bool/uint8 (non-zero = set): NumPy arrays (or CPU DLPack arrays), or CUDA
tensors (torch, CuPy) that stay on their device and current stream. Distances are
float32(sqrt(exact integer squared distance)) on every backend, bit-identical to
``reference.distance_transform``. Host arrays whose columns are not adjacent in memory are
copied once; row strides are read in place. ``exclude`` (already-clicked pixels) is a host
sequence or array of (x, y) integer pairs, shape (K, 2); pixels outside the image are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsam_agent_rt._ext import require_ext
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import (
    cuda_call,
    cuda_stream_of,
    empty_like_framework,
    is_cuda_array,
    select,
)
from medsam_agent_rt.ops._validate import check_same_hw, describe
from medsam_agent_rt.ops.components import check_mask, host_mask


@dataclass(frozen=True)
class Click:
    """A simulated click in image pixels: x = column, y = row; positive adds to the mask;
    distance = its distance (px) to the error region's boundary."""

    x: int
    y: int
    positive: bool
    distance: float


def exclusions(exclude: Any) -> np.ndarray:
    """``exclude`` as a C-contiguous (K, 2) int64 host array of (x, y) pixels."""
    if exclude is None:
        return np.zeros((0, 2), np.int64)
    if is_cuda_array(exclude):
        exclude = exclude.get() if hasattr(exclude, "get") else exclude.cpu()
    ex = np.asarray(exclude)
    if ex.size == 0:
        return np.zeros((0, 2), np.int64)
    if not np.issubdtype(ex.dtype, np.integer):
        raise ValueError(f"exclude must hold integer (x, y) pixels, got {describe(ex)}")
    if ex.ndim not in (1, 2) or ex.shape[-1] != 2:
        raise ValueError(f"exclude must be (K, 2) (x, y) pixels, got {describe(ex)}")
    return np.ascontiguousarray(ex.reshape(-1, 2), dtype=np.int64)


def _pair(op: str, pred: Any, gt: Any) -> str:
    check_mask(pred, "pred")
    check_mask(gt, "gt")
    check_same_hw(pred, "pred", gt, "gt")
    backend = select(op, pred, gt, exact_fallback=True)
    if backend == "cuda" and not (is_cuda_array(pred) and is_cuda_array(gt)):
        raise ValueError(
            f"pred and gt must both be CUDA tensors or both host arrays, got "
            f"{type(pred).__name__} and {type(gt).__name__}"
        )
    if backend != "cuda" and any(int(s) == 0 for s in pred.shape):
        return "reference"
    return backend


def distance_transform(mask: Any) -> Any:
    """(H, W) float32: distance from each non-zero pixel to the nearest zero pixel (exact L2);
    +inf everywhere when the mask has no zero pixel."""
    check_mask(mask)
    backend = select("distance_transform", mask, exact_fallback=True)
    if backend == "cuda":
        ext = require_ext()
        stream = cuda_stream_of(mask)
        out = empty_like_framework(mask, tuple(int(s) for s in mask.shape), "float32")
        scratch = empty_like_framework(mask, (int(ext.dt_scratch_elems(0)),), "int32")
        cuda_call(ext.distance_transform_cuda, mask, out, scratch, stream=stream)
        return out
    m = host_mask(mask)
    if backend == "cpu" and m.size:
        return require_ext().distance_transform_cpu(m)
    return ref.distance_transform(m)


def error_regions(pred: Any, gt: Any, exclude: Any = None) -> tuple[Any, Any]:
    """(dist_fn, dist_fp), each (H, W) float32: the distance maps of the false-negative
    (gt & ~pred) and false-positive (pred & ~gt) regions with a 1-px zero border, ``exclude``
    pixels at 0 — what :func:`next_click` maximises, for callers that resample among
    near-maximum pixels."""
    backend = _pair("error_regions", pred, gt)
    ex = exclusions(exclude)
    if backend == "cuda":
        ext = require_ext()
        stream = cuda_stream_of(pred)
        shape = tuple(int(s) for s in pred.shape)
        d_fn = empty_like_framework(pred, shape, "float32")
        d_fp = empty_like_framework(pred, shape, "float32")
        scratch = empty_like_framework(pred, (int(ext.dt_scratch_elems(len(ex))),), "int32")
        cuda_call(ext.error_regions_cuda, pred, gt, ex, d_fn, d_fp, scratch, stream=stream)
        return d_fn, d_fp
    p, g = host_mask(pred, "pred"), host_mask(gt, "gt")
    if backend == "cpu":
        return tuple(require_ext().error_regions_cpu(p, g, ex))
    return ref.error_regions(p, g, ex)


def next_click(pred: Any, gt: Any, exclude: Any = None) -> Click | None:
    """The next corrective click for ``pred`` against ``gt`` ((H, W) bool/uint8 each), never on a
    pixel listed in ``exclude`` ((K, 2) int (x, y)); None when pred == gt.

    The larger maximum of :func:`error_regions` wins (ties: negative); the click is its first
    pixel in row-major order. One fused native call: no distance map is materialised."""
    backend = _pair("next_click", pred, gt)
    ex = exclusions(exclude)
    if backend == "cuda":
        ext = require_ext()
        stream = cuda_stream_of(pred)
        h, w = (int(s) for s in pred.shape)
        n = int(ext.click_scratch_elems(h, w, len(ex)))
        scratch = empty_like_framework(pred, (n,), "int32")
        out = cuda_call(ext.next_click_cuda, pred, gt, ex, scratch, stream=stream)
    else:
        p, g = host_mask(pred, "pred"), host_mask(gt, "gt")
        if backend == "cpu":
            out = require_ext().next_click_cpu(p, g, ex)
        else:
            out = ref.next_click(p, g, ex)
    return None if out is None else Click(*out)
