"""Low-resolution mask logits -> masks at the original image size, in one pass."""

from __future__ import annotations

from typing import Any

import numpy as np

from medsam_agent_rt.ops import _validate as V
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import as_host_array


def postprocess_masks(
    low_res_logits: Any,
    input_size: tuple[int, int],
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """SAM's mask post-processing: (N, h, w) float32 logits -> bilinear to ``input_size`` (padded
    model input) -> crop to ``resized_size`` (rows, cols of the image inside the padding) ->
    bilinear to ``original_size`` (H, W) -> threshold. Returns (logits (N, H, W) float32,
    masks (N, H, W) bool)."""
    V.check_ndim(low_res_logits, "low_res_logits", 3)
    x = as_host_array(low_res_logits, "low_res_logits")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"low_res_logits must be float, got {V.describe(x)}")
    for name, size in (
        ("input_size", input_size),
        ("resized_size", resized_size),
        ("original_size", original_size),
    ):
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"{name} must be (rows, cols) >= 1, got {size}")
    if resized_size[0] > input_size[0] or resized_size[1] > input_size[1]:
        raise ValueError(f"resized_size {resized_size} must fit inside input_size {input_size}")
    return ref.postprocess_masks(x, input_size, resized_size, original_size, threshold)
