"""Low-resolution mask logits -> masks at the original image size, in one pass.

The kernels evaluate the composition of SAM's two bilinear resizes directly (no (1024, 1024)
intermediate): torch's float32 source indices and weights, blended in float64. Logits match
torch's ``F.interpolate`` chain to <= 1e-5 for |logits| <= 32 (torch's own float32 rounding;
measured in tests/ops/test_postprocess.py) and the NumPy reference to float32 rounding; masks
match exactly away from ties, and always equal ``logits > threshold``. The CPU and CUDA kernels
do the same float64 operations in the same order (no FMA contraction on the GPU), so they agree
to the bit on x86-64 hosts. Logits must be finite: an inf next to a zero-weight tap gives NaN in
torch in places where the kernels (which skip zero weights) give inf, and vice versa.
Needs ``_C`` (no silent fallback: the reference is slower and not bit-identical);
``MSRT_OPS_BACKEND=reference`` selects the NumPy reference explicitly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medsam_agent_rt._ext import require_ext
from medsam_agent_rt.ops import _validate as V
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import (
    as_host_array,
    cast_framework,
    cuda_call,
    cuda_stream_of,
    dtype_name,
    empty_like_framework,
    select,
)


def _size(value: Any, name: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (rows, cols) >= 1, got {value!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"{name} must be (rows, cols) >= 1, got {value!r}")
    return rows, cols


def postprocess_masks(
    low_res_logits: Any,
    input_size: tuple[int, int],
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float = 0.0,
    *,
    return_logits: bool = True,
) -> tuple[Any, Any]:
    """SAM's mask post-processing: (N, h, w) float logits -> bilinear to ``input_size`` (padded
    model input) -> crop to ``resized_size`` (rows, cols of the image inside the padding) ->
    bilinear to ``original_size`` (H, W) -> ``> threshold``.

    Returns (logits (N, H, W) float32, masks (N, H, W) bool); with ``return_logits=False``
    (faster: no float output is written) returns (None, masks). NumPy input (any strides; float64
    / float16 are read as float32) gives NumPy outputs; a torch / CuPy CUDA tensor gives tensors
    of its framework, computed on its device and current stream.
    """
    V.check_ndim(low_res_logits, "low_res_logits", 3)
    if not V.is_float_name(dtype_name(low_res_logits)):
        raise ValueError(f"low_res_logits must be float, got {V.describe(low_res_logits)}")
    input_size = _size(input_size, "input_size")
    resized_size = _size(resized_size, "resized_size")
    original_size = _size(original_size, "original_size")
    if resized_size[0] > input_size[0] or resized_size[1] > input_size[1]:
        raise ValueError(f"resized_size {resized_size} must fit inside input_size {input_size}")
    if min(low_res_logits.shape[1:]) < 1:
        raise ValueError(f"low_res_logits must have h, w >= 1, got {V.describe(low_res_logits)}")
    threshold = float(threshold)
    backend = select("postprocess_masks", low_res_logits, exact_fallback=False)
    n = int(low_res_logits.shape[0])
    shape = (n, *original_size)
    if backend == "reference":
        logits, masks = ref.postprocess_masks(
            as_host_array(low_res_logits, "low_res_logits"),
            input_size,
            resized_size,
            original_size,
            threshold,
        )
        return (logits if return_logits else None), masks
    ext = require_ext()
    if backend == "cpu":
        x = as_host_array(low_res_logits, "low_res_logits")
        if x.dtype != np.float32 or not x.dtype.isnative:
            x = x.astype(np.float32)
        masks = np.empty(shape, np.bool_)
        logits = np.empty(shape, np.float32) if return_logits else None
        ext.postprocess_masks(x, input_size, resized_size, original_size, threshold, logits, masks)
        return logits, masks
    x = low_res_logits
    if dtype_name(x) != "float32":
        x = cast_framework(x, "float32")
    stream = cuda_stream_of(x)
    masks = empty_like_framework(x, shape, "bool")
    logits = empty_like_framework(x, shape, "float32") if return_logits else None
    h = int(x.shape[1])
    # float64 rows of the horizontal pass. Freed when this returns: the framework's caching
    # allocator is stream-ordered and it was allocated on `stream`, so no later work on the
    # stream can reuse it before the kernels that read it have run.
    workspace = empty_like_framework(x, (max(1, n * h * original_size[1]),), "float64")
    cuda_call(
        ext.postprocess_masks,
        *(x, input_size, resized_size, original_size, threshold, logits, masks, workspace),
        stream=stream,
    )
    return logits, masks
