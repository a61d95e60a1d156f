"""Public kernels. The single dispatch point: NumPy reference | _C CPU | _C CUDA
(``MSRT_OPS_BACKEND`` overrides; see ``_dispatch``). Host inputs are NumPy arrays; CUDA inputs
are DLPack-capable tensors (torch, CuPy), read zero-copy on their current stream."""

from medsam_agent_rt.ops._dispatch import BACKENDS, active_backend
from medsam_agent_rt.ops.components import (
    Components,
    count_components,
    fill_holes,
    keep_largest_component,
    label_components,
)
from medsam_agent_rt.ops.distance import Click, distance_transform, error_regions, next_click
from medsam_agent_rt.ops.metrics import MaskMetrics, dice, iou, mask_metrics
from medsam_agent_rt.ops.postprocess import postprocess_masks
from medsam_agent_rt.ops.prompt import (
    PromptEncoderWeights,
    encode_sparse_prompts,
    prompt_encoder_weights,
    sam_prompt_tokens,
)
from medsam_agent_rt.ops.render import render_overlay

__all__ = [
    "BACKENDS",
    "Click",
    "Components",
    "MaskMetrics",
    "PromptEncoderWeights",
    "active_backend",
    "count_components",
    "dice",
    "distance_transform",
    "encode_sparse_prompts",
    "error_regions",
    "fill_holes",
    "iou",
    "keep_largest_component",
    "label_components",
    "mask_metrics",
    "next_click",
    "postprocess_masks",
    "prompt_encoder_weights",
    "render_overlay",
    "sam_prompt_tokens",
]
