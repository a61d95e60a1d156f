"""TinyViT image encoder as used by LiteMedSAM and MobileSAM.

Stages: a convolutional stem, one stage of MBConv blocks, three stages of windowed attention
blocks (with learned per-offset attention biases and a depthwise "local" convolution), patch
merging between stages, and SAM's neck. The two released variants differ in the stem only:

- LiteMedSAM: 1x1 convolutions, stride 1 (input 256 -> tokens 256 -> 128 -> 64 -> 64);
- MobileSAM: 3x3 convolutions, stride 2 twice (input 1024 -> tokens 256 -> 128 -> 64 -> 64),
  and it carries an unused ImageNet classification head (``norm_head``, ``head``) in its
  checkpoint.

Shapes: input (B, 3, S, S); output (B, 256, 64, 64) for both released models.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from medsam_agent_rt.segmenters.modeling.common import LayerNorm2d


@dataclass(frozen=True)
class TinyViTConfig:
    """Hyper-parameters of :class:`TinyViT` (defaults: LiteMedSAM's TinyViT-5M at 256 px).

    stem: "lite" (LiteMedSAM, 1x1 stride 1) or "mobile" (MobileSAM, 3x3 stride 2, twice);
    merge_strides: stride of each patch merging (the official code uses stride 1 when the merged
    width is 320, 448 or 576, i.e. for the last merge of every released model);
    num_classes: width of the (unused) classification head, 0 for none.
    """

    img_size: int = 256
    in_chans: int = 3
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    stem: str = "lite"
    merge_strides: tuple[int, ...] = (2, 2, 1)
    num_classes: int = 0
    out_chans: int = 256

    @property
    def stem_stride(self) -> int:
        return 1 if self.stem == "lite" else 4

    def resolutions(self) -> list[int]:
        """Token-grid side of each stage."""
        res = [self.img_size // self.stem_stride]
        for s in self.merge_strides[: len(self.depths) - 1]:
            res.append((res[-1] - 1) // s + 1)  # 3x3 conv, padding 1
        return res


LITEMEDSAM_TINYVIT = TinyViTConfig()
MOBILESAM_TINYVIT = TinyViTConfig(img_size=1024, stem="mobile", num_classes=1000)


class Conv2d_BN(nn.Sequential):  # noqa: N801 - the checkpoints' module name
    """Convolution without bias followed by BatchNorm (inference statistics)."""

    def __init__(
        self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class PatchEmbed(nn.Module):
    """The stem: two Conv2d_BN with GELU between them."""

    def __init__(self, in_chans: int, embed_dim: int, stem: str) -> None:
        super().__init__()
        ks, stride, pad = (1, 1, 0) if stem == "lite" else (3, 2, 1)
        self.seq = nn.Sequential(
            Conv2d_BN(in_chans, embed_dim // 2, ks, stride, pad),
            nn.GELU(),
            Conv2d_BN(embed_dim // 2, embed_dim, ks, stride, pad),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU."""

    def __init__(self, chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(chans * expand_ratio)
        self.conv1 = Conv2d_BN(chans, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, chans)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """(B, C, H, W) or (B, H*W, C) tokens -> (B, H'*W', out_dim): 1x1, 3x3 depthwise with
    ``stride``, 1x1."""

    def __init__(self, resolution: int, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            b = x.shape[0]
            x = x.view(b, self.resolution, self.resolution, -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """LayerNorm then fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """LayerNorm + multi-head attention inside one window of ``window x window`` tokens, with a
    learned bias per head and per (|dy|, |dx|) offset between two tokens."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.scale = self.key_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        cells = list(itertools.product(range(window), range(window)))
        offsets: dict[tuple[int, int], int] = {}
        index = []
        for p in cells:
            for q in cells:
                off = (abs(p[0] - q[0]), abs(p[1] - q[1]))
                index.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        n = len(cells)
        self.register_buffer(
            "attention_bias_idxs", torch.tensor(index, dtype=torch.long).view(n, n), False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.key_dim, dim=-1)
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (heads, n, n)
        logits = (q @ k.transpose(-2, -1)) * self.scale + bias
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(out)


class TinyViTBlock(nn.Module):
    """Windowed attention (zero-padded to whole windows) + residual, depthwise local conv,
    MLP + residual, on (B, H*W, C) tokens of a ``resolution x resolution`` grid."""

    def __init__(
        self,
        dim: int,
        resolution: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = Attention(dim, num_heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        pad = local_conv_size // 2
        self.local_conv = Conv2d_BN(dim, dim, local_conv_size, 1, pad, groups=dim)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r, ws = self.resolution, self.window
        if r == ws:
            return self.attn(x)
        x = x.view(b, r, r, c)
        pad = (-r) % ws
        if pad:
            x = F.pad(x, (0, 0, 0, pad, 0, pad))
        rp = r + pad
        nw = rp // ws
        x = x.view(b, nw, ws, nw, ws, c).transpose(2, 3).reshape(b * nw * nw, ws * ws, c)
        x = self.attn(x)
        x = x.view(b, nw, nw, ws, ws, c).transpose(2, 3).reshape(b, rp, rp, c)
        if pad:
            x = x[:, :r, :r].contiguous()
        return x.view(b, n, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        if n != self.resolution**2:
            raise ValueError(f"expected {self.resolution}^2 tokens, got {n}")
        x = x + self._windowed_attention(x)
        r = self.resolution
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, r, r)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """One stage: its blocks (MBConv in stage 0, TinyViTBlock after) then an optional patch
    merging."""

    def __init__(self, blocks: list[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """(B, 3, S, S) normalised, padded image -> (B, out_chans, r, r), r = last stage's grid."""

    def __init__(self, config: TinyViTConfig = LITEMEDSAM_TINYVIT) -> None:
        super().__init__()
        c = config
        self.config = config
        self.img_size = c.img_size
        nstages = len(c.depths)
        if not (len(c.embed_dims) == len(c.num_heads) == len(c.window_sizes) == nstages):
            raise ValueError(f"TinyViTConfig: per-stage tuples disagree in length: {c}")
        res = c.resolutions()
        self.patch_embed = PatchEmbed(c.in_chans, c.embed_dims[0], c.stem)
        self.layers = nn.ModuleList()
        for i in range(nstages):
            dim = c.embed_dims[i]
            merge = None
            if i < nstages - 1:
                merge = PatchMerging(res[i], dim, c.embed_dims[i + 1], c.merge_strides[i])
            if i == 0:
                blocks = [MBConv(dim, c.mbconv_expand_ratio) for _ in range(c.depths[i])]
            else:
                blocks = [
                    TinyViTBlock(
                        dim,
                        res[i],
                        c.num_heads[i],
                        c.window_sizes[i],
                        c.mlp_ratio,
                        c.local_conv_size,
                    )
                    for _ in range(c.depths[i])
                ]
            self.layers.append(ConvLayer(blocks, merge))
        self.out_resolution = res[-1]
        if c.num_classes > 0:  # MobileSAM keeps TinyViT's ImageNet head in its checkpoint
            self.norm_head = nn.LayerNorm(c.embed_dims[-1])
            self.head = nn.Linear(c.embed_dims[-1], c.num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(c.embed_dims[-1], c.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(c.out_chans),
            nn.Conv2d(c.out_chans, c.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(c.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, ch = x.shape
        r = self.out_resolution
        return self.neck(x.view(b, r, r, ch).permute(0, 3, 1, 2))
