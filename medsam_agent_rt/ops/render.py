"""Overlay rendering: the observation image of PROTOCOL.md (green mask at alpha 0.5).

Byte-exact with ``reference.render_overlay`` on every backend (integer arithmetic only), so the
NumPy reference stands in when ``_C`` is missing.
"""

from __future__ import annotations

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
)


def render_overlay(
    view: Any,
    mask: Any,
    content_box: tuple[int, int, int, int],
    color: tuple[int, int, int] = (0, 255, 0),
    alpha: float = 0.5,
) -> Any:
    """Blend ``color`` into ``view`` ((V, V, 3) uint8) where ``mask`` ((H, W) bool/uint8, image
    resolution, resized by nearest neighbour into ``content_box`` = (x0, y0, w, h) of the view)
    is set. Returns a new (V, V, 3) uint8 array (a tensor of the inputs' framework for CUDA
    inputs); see ``reference.render_overlay`` for the exact rule."""
    V.check_ndim(view, "view", 3)
    V.check_ndim(mask, "mask", 2)
    V.check_mask_dtype(mask, "mask")
    if dtype_name(view) != "uint8" or view.shape[2] != 3:
        raise ValueError(f"view must be (V, V, 3) uint8, got {V.describe(view)}")
    V.check_nonempty(mask, "mask")
    vh, vw = int(view.shape[0]), int(view.shape[1])
    try:
        x0, y0, w, h = (int(c) for c in content_box)
    except (TypeError, ValueError):
        raise ValueError(f"content_box must be (x0, y0, w, h), got {content_box!r}") from None
    if w < 1 or h < 1 or x0 < 0 or y0 < 0 or x0 + w > vw or y0 + h > vh:
        raise ValueError(f"content_box {content_box} must lie inside the view {(vh, vw)}")
    try:
        rgb = tuple(int(c) for c in color)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or min(rgb) < 0 or max(rgb) > 255:
        raise ValueError(f"color must be 3 integers in 0..255, got {color!r}")
    a = ref.overlay_alpha_weight(alpha)  # validates alpha
    box = (x0, y0, w, h)
    backend = select("render_overlay", view, mask, exact_fallback=True)
    if backend == "reference":
        v, m = as_host_array(view, "view"), as_host_array(mask, "mask")
        return ref.render_overlay(v, m, box, rgb, alpha)
    ext = require_ext()
    if backend == "cpu":
        v, m = as_host_array(view, "view"), as_host_array(mask, "mask")
        out = np.empty(v.shape, np.uint8)
        ext.render_overlay(v, m, out, box, rgb, a, 0)
        return out
    same_cuda_device({"view": view, "mask": mask})
    stream = cuda_stream_of(view)
    out = empty_like_framework(view, (vh, vw, 3), "uint8")
    cuda_call(ext.render_overlay, view, mask, out, box, rgb, a, stream=stream)
    return out
