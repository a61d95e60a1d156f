"""Overlay rendering: the observation image of PROTOCOL.md (green mask at alpha 0.5)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medsam_agent_rt.ops import _validate as V
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import as_host_array


def render_overlay(
    view: Any,
    mask: Any,
    content_box: tuple[int, int, int, int],
    color: tuple[int, int, int] = (0, 255, 0),
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend ``color`` into ``view`` ((V, V, 3) uint8) where ``mask`` ((H, W), image resolution,
    resized by nearest neighbour into ``content_box`` = (x0, y0, w, h) of the view) is set.
    Returns a new (V, V, 3) uint8 array; see ``reference.render_overlay`` for the exact rule."""
    V.check_ndim(view, "view", 3)
    V.check_ndim(mask, "mask", 2)
    V.check_mask_dtype(mask, "mask")
    v = as_host_array(view, "view")
    if v.dtype != np.uint8 or v.shape[2] != 3:
        raise ValueError(f"view must be (V, V, 3) uint8, got {V.describe(v)}")
    x0, y0, w, h = (int(c) for c in content_box)
    if w < 1 or h < 1 or x0 < 0 or y0 < 0 or x0 + w > v.shape[1] or y0 + h > v.shape[0]:
        raise ValueError(f"content_box {content_box} must lie inside the view {v.shape[:2]}")
    return ref.render_overlay(v, as_host_array(mask, "mask"), (x0, y0, w, h), color, alpha)
