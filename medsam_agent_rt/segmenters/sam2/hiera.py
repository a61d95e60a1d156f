"""SAM2's image encoder: the Hiera trunk (windowed attention, q-pooling between stages) and the
FPN neck that turns its 4 stages into 256-channel maps at strides 4, 8 and 16 (the stride-32
level is dropped, SAM2's ``scalp=1``). Module names follow the official checkpoints
(``image_encoder.trunk.*``, ``image_encoder.neck.convs.N.conv.*``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from medsam_agent_rt.segmenters.sam2.config import HieraConfig


def sine_position_encoding(num_feats: int, h: int, w: int, device=None) -> Tensor:
    """(1, num_feats, h, w) DETR-style normalised sine encoding (SAM2's PositionEmbeddingSine,
    temperature 10000, scale 2 pi): first half encodes y, second half x."""
    half = num_feats // 2
    y = torch.arange(1, h + 1, dtype=torch.float32, device=device).view(h, 1).expand(h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32, device=device).view(1, w).expand(h, w)
    y = y / (h + 1e-6) * 2 * math.pi
    x = x / (w + 1e-6) * 2 * math.pi
    dim_t = torch.arange(half, dtype=torch.float32, device=device)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=3).flatten(2)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=3).flatten(2)
    return torch.cat((py, px), dim=2).permute(2, 0, 1).unsqueeze(0)


class Mlp(nn.Module):
    """``layers`` linear layers with ``act`` between them (SAM2's MLP; ReLU by default)."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, num_layers: int, act=F.relu):
        super().__init__()
        dims = [dim_in] + [hidden] * (num_layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


def _pool(x: Tensor, stride: int) -> Tensor:
    """(B, H, W, C) -> (B, H/s, W/s, C) max-pooled."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), stride, stride).permute(0, 2, 3, 1)


def _partition(x: Tensor, win: int) -> tuple[Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, win, win, C) zero-padded windows, and the padded (Hp, Wp)."""
    b, h, w, c = x.shape
    ph, pw = (-h) % win, (-w) % win
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // win, win, wp // win, win, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, win, win, c), (hp, wp)


def _unpartition(x: Tensor, win: int, padded: tuple[int, int], size: tuple[int, int]) -> Tensor:
    hp, wp = padded
    b = x.shape[0] // ((hp // win) * (wp // win))
    x = x.view(b, hp // win, wp // win, win, win, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, : size[0], : size[1]]


class MultiScaleAttention(nn.Module):
    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: int) -> None:
        super().__init__()
        self.num_heads, self.q_stride = num_heads, q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H', W', C_out) (H' = H / q_stride)."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)
        if self.q_stride > 1:
            q = _pool(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    def __init__(
        self, dim: int, dim_out: int, num_heads: int, q_stride: int, window: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.dim, self.dim_out, self.window, self.q_stride = dim, dim_out, window, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio), dim_out, 2, act=F.gelu)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride > 1:
                shortcut = _pool(shortcut, self.q_stride)
        win = self.window
        if win > 0:
            size = x.shape[1:3]
            x, padded = _partition(x, win)
        x = self.attn(x)
        if win > 0:
            if self.q_stride > 1:
                win = win // self.q_stride
                size = shortcut.shape[1:3]
                padded = (size[0] + (-size[0]) % win, size[1] + (-size[1]) % win)
            x = _unpartition(x, win, padded, size)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """(B, 3, S, S) -> the 4 stage outputs (B, C_i, S/4/2^i, S/4/2^i), high to low resolution."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(d)
        self.pos_embed = nn.Parameter(torch.zeros(1, d, *cfg.pos_embed_bkg))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, d, cfg.window_spec[0], cfg.window_spec[0])
        )
        ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        self.stage_ends = ends
        pool_blocks = [e + 1 for e in ends[:-1]][: cfg.q_pool]
        heads, stage = cfg.num_heads, 1
        self.blocks = nn.ModuleList()
        for i in range(sum(cfg.stages)):
            dim_out = d
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage - 1]
            if i - 1 in ends:
                dim_out, heads, stage = 2 * d, 2 * heads, stage + 1
            stride = 2 if i in pool_blocks else 1
            self.blocks.append(MultiScaleBlock(d, dim_out, heads, stride, window, cfg.mlp_ratio))
            d = dim_out

    def _pos_embed(self, h: int, w: int) -> Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        pos = pos + win.tile(1, 1, h // win.shape[2], w // win.shape[3])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1], x.shape[2])
        outs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.stage_ends:
                outs.append(x.permute(0, 3, 1, 2))
        return outs


class _Lateral(nn.Module):
    def __init__(self, dim_in: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in, d_model, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """1x1 laterals to ``d_model`` channels, nearest-upsampled top-down sums into levels 2 and 3
    (the stride-8/16 ones counted from the lowest-resolution level 3 in SAM2's order)."""

    def __init__(self, channels: tuple[int, ...], d_model: int = 256) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_Lateral(c, d_model) for c in reversed(channels))
        self.top_down_levels = (2, 3)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        n = len(self.convs) - 1
        out: list[Tensor] = [xs[0]] * (n + 1)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    """trunk + neck; forward returns the 3 used levels [stride 4, stride 8, stride 16], each
    (B, 256, s, s)."""

    def __init__(self, cfg: HieraConfig, d_model: int = 256) -> None:
        super().__init__()
        self.trunk = Hiera(cfg)
        self.neck = FpnNeck(cfg.channels, d_model)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.neck(self.trunk(x))[:-1]
