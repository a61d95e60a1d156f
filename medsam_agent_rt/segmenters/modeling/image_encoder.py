"""SAM's ViT image encoder (ViT-B/L/H): patch embedding, absolute position embedding, blocks with
windowed or global attention and decomposed relative positions, and a convolutional neck.

Shapes: input (B, 3, S, S) with S = ``img_size`` (1024 for SAM); tokens (B, S/p, S/p, C) inside
the blocks; output (B, out_chans, S/p, S/p) (256 x 64 x 64 for SAM).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from medsam_agent_rt.segmenters.modeling.common import LayerNorm2d, MLPBlock


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of :class:`ImageEncoderViT` (defaults: SAM ViT-B)."""

    img_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)

    @property
    def grid(self) -> int:
        """Side of the token grid (S / p)."""
        return self.img_size // self.patch_size


# The three released SAM encoders (segment-anything's build_sam.py).
VIT_B = ViTConfig()
VIT_L = ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))
VIT_H = ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> (B, S/p, S/p, C) channels-last tokens."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def _relative_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """(q_size, k_size, head_dim) embeddings of the relative offsets q - k along one axis.

    ``rel_pos`` (L, head_dim) holds offsets -(L-1)/2 .. (L-1)/2; it is linearly resampled when
    L != 2 max(q, k) - 1 (a model used at another resolution than it was trained for)."""
    length = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != length:
        table = F.interpolate(rel_pos.T[None], size=length, mode="linear")[0].T
    else:
        table = rel_pos
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_idx = torch.arange(q_size, device=rel_pos.device)[:, None] * q_scale
    k_idx = torch.arange(k_size, device=rel_pos.device)[None, :] * k_scale
    offsets = (q_idx - k_idx + (k_size - 1) * k_scale).long()
    return table[offsets]


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) grid, with optional decomposed relative
    position terms (MViTv2): logits += q . Rh[row_q, row_k] + q . Rw[col_q, col_k]."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is required when use_rel_pos is True")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        n = h * w
        # (3, B * heads, N, head_dim)
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.num_heads, n, -1).unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if self.use_rel_pos:
            rh = _relative_table(h, h, self.rel_pos_h)  # (h, h, d)
            rw = _relative_table(w, w, self.rel_pos_w)  # (w, w, d)
            grid_q = q.reshape(b * self.num_heads, h, w, -1)
            bias_h = torch.einsum("bhwc,hkc->bhwk", grid_q, rh)  # row offsets
            bias_w = torch.einsum("bhwc,wkc->bhwk", grid_q, rw)  # column offsets
            logits = logits.view(-1, h, w, h, w) + bias_h[..., :, None] + bias_w[..., None, :]
            logits = logits.view(-1, n, n)
        out = logits.softmax(dim=-1) @ v
        out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nWindows, window, window, C), zero-padding H, W up to multiples of
    ``window``; also returns the padded (Hp, Wp)."""
    b, h, w, c = x.shape
    pad_h = (-h) % window
    pad_w = (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: back to (B, H, W, C), padding removed."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


class Block(nn.Module):
    """Pre-norm transformer block; attention is windowed when ``window_size > 0``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(dim, num_heads, qkv_bias, use_rel_pos, attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            hw = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(x), self.window_size, padded, hw)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """SAM's ViT encoder: (B, 3, S, S) normalised, padded image -> (B, out_chans, S/p, S/p)."""

    def __init__(self, config: ViTConfig = VIT_B) -> None:
        super().__init__()
        self.config = config
        self.img_size = config.img_size
        c = config
        self.patch_embed = PatchEmbed(c.patch_size, c.in_chans, c.embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if c.use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, c.grid, c.grid, c.embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=c.embed_dim,
                num_heads=c.num_heads,
                mlp_ratio=c.mlp_ratio,
                qkv_bias=c.qkv_bias,
                use_rel_pos=c.use_rel_pos,
                window_size=0 if i in c.global_attn_indexes else c.window_size,
                input_size=(c.grid, c.grid),
            )
            for i in range(c.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(c.embed_dim, c.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(c.out_chans),
            nn.Conv2d(c.out_chans, c.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(c.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
