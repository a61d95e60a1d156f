"""Exact Euclidean distance transform and the next-click simulator of PROTOCOL.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsam_agent_rt.ops import _validate as V
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import as_host_array


@dataclass(frozen=True)
class Click:
    """A simulated click in image pixels: x = column, y = row; positive adds to the mask;
    distance = its distance (px) to the error region's boundary."""

    x: int
    y: int
    positive: bool
    distance: float


def distance_transform(mask: Any) -> np.ndarray:
    """(H, W) float32: distance from each non-zero pixel to the nearest zero pixel (exact L2)."""
    V.check_ndim(mask, "mask", 2)
    V.check_mask_dtype(mask, "mask")
    return ref.distance_transform(as_host_array(mask, "mask"))


def next_click(pred: Any, gt: Any, exclude: Any = None) -> Click | None:
    """The next corrective click for ``pred`` against ``gt`` ((H, W) bool/uint8 each), never on a
    pixel listed in ``exclude`` ((K, 2) int (x, y)); None when pred == gt."""
    V.check_ndim(pred, "pred", 2)
    V.check_ndim(gt, "gt", 2)
    V.check_mask_dtype(pred, "pred")
    V.check_mask_dtype(gt, "gt")
    V.check_same_hw(pred, "pred", gt, "gt")
    out = ref.next_click(as_host_array(pred, "pred"), as_host_array(gt, "gt"), exclude)
    return None if out is None else Click(*out)
