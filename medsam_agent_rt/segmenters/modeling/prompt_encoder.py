"""SAM's prompt encoder: random-Fourier positional encoding of points and box corners plus a
learned embedding per label (sparse tokens), and a small conv net for a low-res mask (dense).

The runtime computes the sparse tokens with ``medsam_agent_rt.ops.encode_sparse_prompts`` (the
same arithmetic, one fused kernel); :meth:`PromptEncoder.forward` keeps the official
points/boxes/masks path for parity tests and training. :meth:`PromptEncoder.dense_embeddings`
is the export-friendly mask path (``has_mask_input`` selects, no Python branching).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medsam_agent_rt.segmenters.modeling.common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """PE(p) = [sin(2 pi (2p - 1) G), cos(2 pi (2p - 1) G)] for p in [0, 1]^2, G (2, C/2)."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats)
        )

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        proj = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """(C, h, w) encoding of the centres of an h x w grid."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(
        self, coords: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """(B, N, 2) (x, y) pixel coordinates in an (H, W) frame -> (B, N, C)."""
        scale = torch.tensor(
            [image_size[1], image_size[0]], dtype=torch.float32, device=coords.device
        )
        return self._encode(coords.to(torch.float32) / scale)


class PromptEncoder(nn.Module):
    """Sparse (points, box corners) and dense (mask) prompt embeddings of width ``embed_dim``.

    image_embedding_size: (h, w) of the image embedding (64 x 64); input_image_size: (H, W) of
    the padded model input (1024 x 1024 SAM, 256 x 256 LiteMedSAM); masks enter at 4h x 4w.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0 negative point, 1 positive point, 2 box corner 1, 3 box corner 2
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """(1, C, h, w) positional encoding of the image-embedding grid."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def label_embeddings(self) -> torch.Tensor:
        """(5, C) rows [not_a_point, negative, positive, corner 1, corner 2] (the ops layout)."""
        rows = [self.not_a_point_embed.weight] + [e.weight for e in self.point_embeddings]
        return torch.cat(rows, dim=0)

    def embed_tokens(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, S, 2) model-input pixel coords and (B, S) labels in {-1 pad, 0, 1, 2, 3} ->
        (B, S, C). Pad tokens get only the not-a-point embedding."""
        pe = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)
        pe = pe * (labels != -1).unsqueeze(-1).to(pe.dtype)
        return pe + self.label_embeddings()[(labels + 1).long()]

    def dense_embeddings(
        self, mask_input: torch.Tensor, has_mask_input: torch.Tensor
    ) -> torch.Tensor:
        """(B, 1, 4h, 4w) low-res logits and (B,) 0/1 -> (B, C, h, w); without a mask every cell
        gets ``no_mask_embed`` (SAM's ONNX formulation, exact for 0 and 1)."""
        flag = has_mask_input.to(mask_input.dtype).view(-1, 1, 1, 1)
        no_mask = self.no_mask_embed.weight.view(1, -1, 1, 1)
        return flag * self.mask_downscaling(mask_input) + (1 - flag) * no_mask

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The official interface: points ((B, N, 2), (B, N)), boxes (B, 4), masks (B, 1, 4h, 4w),
        each optional (coordinates in model-input pixels). Returns sparse (B, S, C) and dense
        (B, C, h, w) embeddings; a pad token follows the points when there is no box."""
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        device = self.no_mask_embed.weight.device
        parts_c, parts_l = [], []
        if points is not None:
            coords, labels = points
            parts_c.append(coords.to(torch.float32))
            parts_l.append(labels.to(torch.long))
            if boxes is None:
                parts_c.append(torch.zeros(bs, 1, 2, device=device))
                parts_l.append(torch.full((bs, 1), -1, dtype=torch.long, device=device))
        if boxes is not None:
            parts_c.append(boxes.to(torch.float32).reshape(-1, 2, 2))
            parts_l.append(torch.tensor([[2, 3]], device=device).expand(bs, 2))
        if parts_c:
            sparse = self.embed_tokens(torch.cat(parts_c, 1), torch.cat(parts_l, 1))
        else:
            sparse = torch.empty(bs, 0, self.embed_dim, device=device)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.view(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
