"""Batched mask metrics: intersection, union, areas, IoU and Dice (PROTOCOL.md conventions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsam_agent_rt.ops import _validate as V
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import as_host_array, select


@dataclass(frozen=True)
class MaskMetrics:
    """Per-mask counts (int64, shape (N,)) and scores (float64, shape (N,))."""

    intersection: np.ndarray
    union: np.ndarray
    pred_area: np.ndarray
    ref_area: np.ndarray
    iou: np.ndarray
    dice: np.ndarray


def mask_metrics(pred: Any, target: Any, threshold: float = 0.0) -> MaskMetrics:
    """IoU/Dice of N predicted masks against one (broadcast) or N reference masks.

    pred: (N, H, W) or (H, W); target: (H, W) or (N, H, W); bool / uint8 (non-zero = inside) or
    float logits binarised as ``> threshold``. Both empty -> IoU = Dice = 1.0.
    """
    V.check_ndim(pred, "pred", 2, 3)
    V.check_ndim(target, "target", 2, 3)
    V.check_mask_dtype(pred, "pred", allow_float=True)
    V.check_mask_dtype(target, "target", allow_float=True)
    V.check_same_hw(pred, "pred", target, "target")
    if len(pred.shape) == 3 and len(target.shape) == 3 and pred.shape[0] != target.shape[0]:
        raise ValueError(
            f"pred and target must hold the same number of masks, got {pred.shape[0]} and "
            f"{target.shape[0]}"
        )
    backend = select("mask_metrics", pred, target, exact_fallback=True)
    inter, pa, ra = ref.mask_counts(
        as_host_array(pred, "pred"), as_host_array(target, "target"), threshold
    )
    del backend
    iou, dice = ref.iou_dice_from_counts(inter, pa, ra)
    return MaskMetrics(inter, pa + ra - inter, pa, ra, iou, dice)


def iou(pred: Any, target: Any, threshold: float = 0.0) -> float:
    """IoU of one (H, W) prediction against one (H, W) reference."""
    V.check_ndim(pred, "pred", 2)
    return float(mask_metrics(pred, target, threshold).iou[0])


def dice(pred: Any, target: Any, threshold: float = 0.0) -> float:
    """Dice of one (H, W) prediction against one (H, W) reference."""
    V.check_ndim(pred, "pred", 2)
    return float(mask_metrics(pred, target, threshold).dice[0])
