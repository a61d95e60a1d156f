"""SAM's mask decoder: an IoU token and 1 + 3 mask tokens run through the two-way transformer
with the prompt tokens; the image tokens are upscaled 4x and each mask token's hypernetwork MLP
turns them into one low-resolution mask (logits, 4h x 4w = 256 x 256)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medsam_agent_rt.segmenters.modeling.common import MLP, LayerNorm2d
from medsam_agent_rt.segmenters.modeling.transformer import TwoWayTransformer

# Added to attention logits of padded prompt slots: removes them exactly in float32 (exp
# underflows to 0) and stays representable in float16 graphs.
PAD_SLOT_BIAS = -1.0e4


class MaskDecoder(nn.Module):
    """Token 0 is the single-mask output, tokens 1..3 the multimask outputs."""

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        prompt_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """All mask tokens at once, static shapes (the export path).

        image_embeddings (1 or B, C, h, w); image_pe (1, C, h, w); sparse_prompt_embeddings
        (B, S, C); dense_prompt_embeddings (B, C, h, w); prompt_mask (B, S) 1 for a real token,
        0 for a padding slot (None: all real). Returns masks (B, 4, 4h, 4w) logits and iou
        predictions (B, 4).
        """
        b = sparse_prompt_embeddings.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], 1)
        token_bias = None
        if prompt_mask is not None:
            keep = torch.cat(
                [
                    torch.ones(b, out_tokens.shape[0], dtype=tokens.dtype, device=tokens.device),
                    prompt_mask.to(tokens.dtype),
                ],
                dim=1,
            )
            token_bias = (1.0 - keep) * PAD_SLOT_BIAS
        src = image_embeddings
        if src.shape[0] != b:
            src = torch.repeat_interleave(src, b, dim=0)
        src = src + dense_prompt_embeddings
        pos = torch.repeat_interleave(image_pe, b, dim=0)
        _, c, h, w = src.shape

        hs, src = self.transformer(src, pos, tokens, token_bias)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        _, cu, hu, wu = upscaled.shape
        masks = (hyper @ upscaled.view(b, cu, hu * wu)).view(b, -1, hu, wu)
        return masks, self.iou_prediction_head(iou_token_out)

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """The official interface: masks (B, 3 or 1, 4h, 4w) and iou predictions (B, 3 or 1)."""
        masks, iou = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou[:, sl]
