"""SAM2's mask decoder: SAM's two-way transformer plus an object-score token, a sigmoid IoU head
and the two high-resolution feature levels (strides 4 and 8) added while upscaling.

``MaskDecoder.forward`` returns ALL four mask tokens (token 0 single-mask, 1..3 multimask) so the
caller (or an exported graph) selects; :func:`select_masks` is the official selection, including
the "dynamic multimask via stability" fallback used for single-mask requests.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medsam_agent_rt.segmenters.modeling.common import LayerNorm2d
from medsam_agent_rt.segmenters.modeling.transformer import TwoWayTransformer
from medsam_agent_rt.segmenters.sam2.hiera import Mlp


def sam2_two_way_transformer(
    d: int = 256, heads: int = 8, mlp_dim: int = 2048
) -> TwoWayTransformer:
    """SAM's two-way transformer with SAM2's MLP layout (``mlp.layers.{0,1}``, ReLU)."""
    t = TwoWayTransformer(depth=2, embedding_dim=d, num_heads=heads, mlp_dim=mlp_dim)
    for layer in t.layers:
        layer.mlp = Mlp(d, mlp_dim, d, 2)
    return t


class MaskDecoder(nn.Module):
    """Tokens [obj_score, iou, 4 masks, prompts...] against the image embedding."""

    def __init__(self, d: int = 256, heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.num_mask_tokens = 4
        self.transformer = sam2_two_way_transformer(d, heads, mlp_dim)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(4, d)
        self.obj_score_token = nn.Embedding(1, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2),
            LayerNorm2d(d // 4),
            nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(Mlp(d, d, d // 8, 3) for _ in range(4))
        self.iou_prediction_head = Mlp(d, 256, 4, 3)
        self.pred_obj_score_head = Mlp(d, d, 1, 3)

    def forward(
        self,
        image_embed: Tensor,
        image_pe: Tensor,
        sparse: Tensor,
        dense: Tensor,
        feat_s0: Tensor,
        feat_s1: Tensor,
        token_bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """image_embed (B, C, h, w) (no_mem_embed or memory already applied), image_pe (1, C,
        h, w), sparse (B, T, C) prompt tokens, dense (B, C, h, w), feat_s0 (B, C/8, 4h, 4w) and
        feat_s1 (B, C/4, 2h, 2w) already projected by conv_s0 / conv_s1; token_bias (B, T) or None
        (0 keeps a prompt slot, -1e4 removes it). Returns low-res logits (B, 4, 4h, 4w), IoU
        predictions (B, 4) in [0, 1], mask-token outputs (B, 4, C), object-score logits (B, 1)."""
        b = sparse.shape[0]
        out_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], 0
        )
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], 1)
        bias = None
        if token_bias is not None:
            bias = torch.cat([token_bias.new_zeros(b, 6), token_bias], 1)
        src = image_embed + dense
        _, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe.expand(b, -1, -1, -1), tokens, bias)
        mask_tokens_out = hs[:, 2:6]
        src = src.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        up = act1(ln1(dc1(src) + feat_s1))
        up = act2(dc2(up) + feat_s0)
        hyper = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1
        )
        bu, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(bu, cu, hu * wu)).reshape(bu, 4, hu, wu)
        iou = torch.sigmoid(self.iou_prediction_head(hs[:, 1]))
        obj = self.pred_obj_score_head(hs[:, 0])
        return masks, iou, mask_tokens_out, obj


def stability_scores(logits: Tensor, delta: float = 0.05) -> Tensor:
    """(..., h, w) -> (...) area(logits > delta) / area(logits > -delta) (1 where empty)."""
    flat = logits.flatten(-2)
    inter = (flat > delta).sum(-1).float()
    union = (flat > -delta).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def select_masks(
    masks: Tensor,
    iou: Tensor,
    tokens: Tensor,
    multimask: bool,
    delta: float = 0.05,
    thresh: float = 0.98,
) -> tuple[Tensor, Tensor, Tensor]:
    """The official output selection from all 4 tokens: multimask -> tokens 1..3 (and their
    tokens, used for object pointers); single -> token 0 unless its stability score is below
    ``thresh``, then the best-IoU multimask output. Returns (masks, iou, sam tokens)."""
    if multimask:
        return masks[:, 1:], iou[:, 1:], tokens[:, 1:]
    best = iou[:, 1:].argmax(-1)
    idx = torch.arange(masks.shape[0], device=masks.device)
    best_mask = masks[:, 1:][idx, best].unsqueeze(1)
    best_iou = iou[:, 1:][idx, best].unsqueeze(1)
    stable = stability_scores(masks[:, :1], delta) >= thresh  # (B, 1)
    out_m = torch.where(stable[..., None, None], masks[:, :1], best_mask)
    out_i = torch.where(stable, iou[:, :1], best_iou)
    return out_m, out_i, tokens[:, :1]
