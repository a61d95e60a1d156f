"""SAM2's memory: the memory encoder (mask + image features -> 64-channel memory of a frame) and
memory attention (current-frame features attend to the memory bank and object pointers, with 2-D
rotary position encoding). Names follow the official checkpoints (``memory_encoder.*``,
``memory_attention.*``). RoPE is computed with real cos/sin (no complex tensors) so it exports
to ONNX.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from medsam_agent_rt.segmenters.modeling.common import LayerNorm2d


def axial_rope(dim: int, side: int, theta: float = 10000.0, device=None) -> tuple[Tensor, Tensor]:
    """(cos, sin), each (side*side, dim/2): SAM2's axial RoPE angles for a side x side grid in
    raster order, first dim/4 pairs along x, the next dim/4 along y."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, device=device)[: dim // 4].float() / dim))
    t = torch.arange(side * side, dtype=torch.float32, device=device)
    tx, ty = t % side, torch.div(t, side, rounding_mode="floor")
    ang = torch.cat([torch.outer(tx, freqs), torch.outer(ty, freqs)], -1)
    return ang.cos(), ang.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, heads, N, D) with consecutive (even, odd) channel pairs rotated by the angles of
    cos/sin (N', D/2); N a multiple of N' (memory frames repeat the grid's angles)."""
    b, h, n, d = x.shape
    reps = n // cos.shape[0]
    cos, sin = cos.repeat(reps, 1), sin.repeat(reps, 1)
    xr = x.reshape(b, h, n, d // 2, 2)
    a, c = xr[..., 0], xr[..., 1]
    return torch.stack([a * cos - c * sin, a * sin + c * cos], -1).reshape(b, h, n, d)


class RoPEAttention(nn.Module):
    """Single-head attention (SAM2 uses 1 head, width 256) with RoPE on q and on the first
    ``len(k) - num_k_exclude_rope`` keys (object-pointer tokens are excluded)."""

    def __init__(self, d: int = 256, kv_in_dim: int | None = None, num_heads: int = 1) -> None:
        super().__init__()
        kv = d if kv_in_dim is None else kv_in_dim
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(kv, d)
        self.v_proj = nn.Linear(kv, d)
        self.out_proj = nn.Linear(d, d)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        q, k, v = (
            self._heads(self.q_proj(q)),
            self._heads(self.k_proj(k)),
            self._heads(self.v_proj(v)),
        )
        side = math.isqrt(q.shape[2])
        cos, sin = axial_rope(q.shape[-1], side, device=q.device)
        q = apply_rope(q, cos, sin)
        n_rope = k.shape[2] - num_k_exclude_rope
        if n_rope > 0:
            k = torch.cat([apply_rope(k[:, :, :n_rope], cos, sin), k[:, :, n_rope:]], 2)
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


class MemoryAttentionLayer(nn.Module):
    def __init__(self, d: int = 256, mem_dim: int = 64, ffn: int = 2048) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d)
        self.cross_attn_image = RoPEAttention(d, kv_in_dim=mem_dim)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, num_k_exclude_rope: int) -> Tensor:
        x = self.norm1(tgt)
        tgt = tgt + self.self_attn(x, x, x)
        x = self.norm2(tgt)
        tgt = tgt + self.cross_attn_image(x, memory + pos, memory, num_k_exclude_rope)
        return tgt + self.linear2(F.relu(self.linear1(self.norm3(tgt))))


class MemoryAttention(nn.Module):
    """curr (B, HW, C) current features, curr_pos (B, HW, C); memory (B, M, mem_dim) and its pos;
    the last ``num_obj_ptr_tokens`` memory tokens are object pointers (no RoPE)."""

    def __init__(self, d: int = 256, mem_dim: int = 64, num_layers: int = 4, ffn: int = 2048):
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d, mem_dim, ffn) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d)

    def forward(
        self,
        curr: Tensor,
        curr_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        num_obj_ptr_tokens: int,
    ) -> Tensor:
        x = curr + 0.1 * curr_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_obj_ptr_tokens)
        return self.norm(x)


class MaskDownSampler(nn.Module):
    """(B, 1, S, S) mask -> (B, 256, S/16, S/16): 4 x (3x3 stride-2 conv, LayerNorm2d, GELU)
    growing 1 -> 4 -> 16 -> 64 -> 256 channels, then a 1x1 conv."""

    def __init__(self, d: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for _ in range(4):
            cout = cin * 4
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), LayerNorm2d(cout), nn.GELU()]
            cin = cout
        layers.append(nn.Conv2d(cin, d, 1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm2d, pointwise MLP (x4, GELU), layer scale."""

    def __init__(self, d: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(d, d, 7, padding=3, groups=d)
        self.norm = LayerNorm2d(d)
        self.pwconv1 = nn.Linear(d, 4 * d)
        self.pwconv2 = nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(1e-6 * torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, d: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(d) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """pix_feat (B, 256, h, w) and the mask for memory (B, 1, 16h, 16w): sigmoid (or binarised)
    high-res logits times 20 minus 10, prepared by the caller -> (B, mem_dim, h, w)."""

    def __init__(self, d: int = 256, mem_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(d)
        self.pix_feat_proj = nn.Conv2d(d, d, 1)
        self.fuser = Fuser(d)
        self.out_proj = nn.Conv2d(d, mem_dim, 1)

    def forward(self, pix_feat: Tensor, mask: Tensor) -> Tensor:
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask)
        return self.out_proj(self.fuser(x))
