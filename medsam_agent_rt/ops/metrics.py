"""Batched mask metrics: intersection, union, areas, IoU and Dice (PROTOCOL.md conventions).

Backends: ``_C`` CPU (one pass, SIMD, csrc/cpu/parallel.h threads), ``_C`` CUDA (torch / CuPy tensors, zero-copy), and
the NumPy reference, which gives identical counts and is used when ``_C`` is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsam_agent_rt._ext import require_ext
from medsam_agent_rt.ops import _validate as V
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import (
    as_host_array,
    cuda_call,
    cuda_stream_of,
    dtype_name,
    empty_like_framework,
    same_cuda_device,
    select,
    to_host,
)

# dtypes the kernels binarise themselves; others (float16, bfloat16, long double, non-native
# byte order) are binarised by the reference rule first, which is exact by construction.
_KERNEL_DTYPES = ("bool", "uint8", "float32", "float64")
_KERNEL_NP_DTYPES = tuple(np.dtype(d) for d in _KERNEL_DTYPES)  # native byte order


@dataclass(frozen=True)
class MaskMetrics:
    """Per-mask counts (int64, shape (N,)) and scores (float64, shape (N,))."""

    intersection: np.ndarray
    union: np.ndarray
    pred_area: np.ndarray
    ref_area: np.ndarray
    iou: np.ndarray
    dice: np.ndarray


def _count(x: Any) -> int:
    return int(x.shape[0]) if len(x.shape) == 3 else 1


def _host_operand(x: Any, name: str, threshold: float) -> np.ndarray:
    a = as_host_array(x, name)
    if a.dtype in _KERNEL_NP_DTYPES:
        return a
    return ref.binarize(a, threshold)


def _cuda_operand(x: Any, threshold: float) -> Any:
    if dtype_name(x) in _KERNEL_DTYPES:
        return x
    return x > threshold  # the framework's own rule (compared in x's precision), as bool


def mask_metrics(pred: Any, target: Any, threshold: float = 0.0) -> MaskMetrics:
    """IoU/Dice of N predicted masks against one (broadcast) or N reference masks.

    pred: (N, H, W) or (H, W); target: (H, W) or (N, H, W); a single mask on either side (2-D or
    length 1) is compared with every mask of the other. bool / uint8 (non-zero = inside) or float
    logits binarised as ``> threshold`` in the array's own precision (NumPy / torch semantics).
    NumPy arrays (any strides) run on the CPU; torch / CuPy CUDA tensors on their device and
    current stream. Both empty -> IoU = Dice = 1.0. Returns host arrays of shape (N,).
    """
    V.check_ndim(pred, "pred", 2, 3)
    V.check_ndim(target, "target", 2, 3)
    V.check_mask_dtype(pred, "pred", allow_float=True)
    V.check_mask_dtype(target, "target", allow_float=True)
    V.check_same_hw(pred, "pred", target, "target")
    n_pred, n_target = _count(pred), _count(target)
    if n_pred != n_target and 1 not in (n_pred, n_target):
        raise ValueError(
            f"pred and target must hold the same number of masks (or one of them 1), got "
            f"{n_pred} and {n_target}"
        )
    n = max(n_pred, n_target)
    threshold = float(threshold)
    backend = select("mask_metrics", pred, target, exact_fallback=True)
    if backend == "reference":
        inter, pa, ra = ref.mask_counts(
            as_host_array(pred, "pred"), as_host_array(target, "target"), threshold
        )
        iou, dice = ref.iou_dice_from_counts(inter, pa, ra)
        return MaskMetrics(inter, pa + ra - inter, pa, ra, iou, dice)
    ext = require_ext()
    if backend == "cpu":
        p = _host_operand(pred, "pred", threshold)
        t = _host_operand(target, "target", threshold)
        counts = np.empty((n, 3), np.int64)
        ext.mask_counts(p, t, counts, threshold, 0)
    else:
        same_cuda_device({"pred": pred, "target": target})
        p, t = _cuda_operand(pred, threshold), _cuda_operand(target, threshold)
        stream = cuda_stream_of(p)
        out = empty_like_framework(p, (n, 3), "int64")
        cuda_call(ext.mask_counts, p, t, out, threshold, stream=stream)
        counts = np.ascontiguousarray(to_host(out))
    scores = np.empty((n, 2), np.float64)
    ext.iou_dice(counts, scores)  # reference.iou_dice_from_counts' float64 arithmetic, in C++
    inter, pa, ra = counts.T.copy()
    iou, dice = scores.T.copy()
    return MaskMetrics(inter, pa + ra - inter, pa, ra, iou, dice)


def iou(pred: Any, target: Any, threshold: float = 0.0) -> float:
    """IoU of one (H, W) prediction against one (H, W) reference."""
    V.check_ndim(pred, "pred", 2)
    V.check_ndim(target, "target", 2)
    return float(mask_metrics(pred, target, threshold).iou[0])


def dice(pred: Any, target: Any, threshold: float = 0.0) -> float:
    """Dice of one (H, W) prediction against one (H, W) reference."""
    V.check_ndim(pred, "pred", 2)
    V.check_ndim(target, "target", 2)
    return float(mask_metrics(pred, target, threshold).dice[0])
