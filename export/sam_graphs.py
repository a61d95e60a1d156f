"""The torch wrapper modules that define the exported SAM graphs (no Python branching).

- :class:`SamEncoderGraph`: ``image`` (1, 3, S, S) float32 -> ``image_embeddings`` (1, C, h, w)
  float32.
- :class:`SamDecoderGraph`: ``image_embeddings``, ``sparse_embeddings`` (1, T, C), ``mask_input``
  (1, 1, 4h, 4w), ``has_mask_input`` (1,) -> ``low_res_masks`` (1, 4, 4h, 4w) of all mask tokens
  and ``iou_predictions`` (1, 4).

Both compute in ``dtype`` (float32 or float16) behind float32 inputs and outputs; for float32 the
casts are no-ops and vanish from the graph. :func:`half_precision_copy` gives the FP16 model with
its layer norms kept in float32.
"""

from __future__ import annotations

import copy
from typing import Any

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "exporting to ONNX needs PyTorch: pip install 'medsam-agent-rt[torch,onnx]'"
    ) from e

from medsam_agent_rt.segmenters.modeling.common import LayerNorm2d

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class SamEncoderGraph(nn.Module):
    """image (1, 3, S, S) float32 -> image_embeddings (1, C, h, w) float32, computed in dtype."""

    def __init__(self, image_encoder: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.dtype = dtype

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image.to(self.dtype)).to(torch.float32)


class SamDecoderGraph(nn.Module):
    """The prompt encoder's mask path and the mask decoder over pre-fused sparse tokens. The
    dense positional encoding of the embedding grid is a constant computed once in float32."""

    def __init__(self, model: nn.Module, dense_pe: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.register_buffer("dense_pe", dense_pe.detach().clone().to(dtype))

    def forward(
        self,
        image_embeddings: torch.Tensor,
        sparse_embeddings: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dt = self.dense_pe.dtype
        dense = self.prompt_encoder.dense_embeddings(mask_input.to(dt), has_mask_input.to(dt))
        masks, iou = self.mask_decoder.predict_masks(
            image_embeddings.to(dt), self.dense_pe, sparse_embeddings.to(dt), dense
        )
        return masks.to(torch.float32), iou.to(torch.float32)


class Float32Norm(nn.Module):
    """Runs a normalisation layer in float32 inside a float16 model."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


def half_precision_copy(model: nn.Module) -> nn.Module:
    """A float16 copy of a SamModel whose LayerNorm / LayerNorm2d layers run in float32."""
    half = copy.deepcopy(model).half().eval()
    for module in list(half.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.LayerNorm, LayerNorm2d)):
                setattr(module, name, Float32Norm(child))
    return half


def graph_modules(model: Any, precision: str) -> tuple[SamEncoderGraph, SamDecoderGraph]:
    """(encoder graph module, decoder graph module) of a SamModel at ``precision``."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}")
    with torch.no_grad():
        dense_pe = model.prompt_encoder.get_dense_pe()
    src = model if precision == "fp32" else half_precision_copy(model)
    dtype = DTYPES[precision]
    return SamEncoderGraph(src.image_encoder, dtype).eval(), SamDecoderGraph(
        src, dense_pe, dtype
    ).eval()
