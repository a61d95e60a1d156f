"""SAM2.1 / MedSAM2 model configurations: the released sizes and the input-size switch.

The official YAML configs (``sam2.1_hiera_{t,s,b+,l}.yaml``) differ only in the Hiera trunk;
everything else (FPN neck to 256 channels, prompt encoder, mask decoder with the two
high-resolution feature levels, 4 memory-attention layers, a 64-channel memory encoder, a bank of
7 memory frames, up to 16 object pointers) is shared. MedSAM2 is SAM2.1 Hiera-T fine-tuned; its own
config runs at 512 px (image-embedding grid, high-resolution feature sizes, prompt-encoder frame,
mask-input size and the memory-attention RoPE grid all scale with ``image_size``); the released
MedSAM-Agent runs the same weights through the 1024 px Hiera-T config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk: embed_dim and num_heads of stage 1 (both x2 at every stage change), blocks
    per stage, attention window per stage (0 for the global blocks), windowed positional-embedding
    background size, q-pooling stages (stride 2 each)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    pos_embed_bkg: tuple[int, int] = (7, 7)
    q_pool: int = 3
    mlp_ratio: float = 4.0

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels per stage, low to high (96, 192, 384, 768 for Hiera-T)."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.stages)))


@dataclass(frozen=True)
class Sam2Config:
    """A SAM2-family model. image_size: square input in px (1024 or 512); d_model: FPN / decoder
    width; mem_dim: memory-feature channels; num_maskmem: memory frames (1 conditioning + 6
    recent); max_obj_ptrs: object pointers attended to; memory_layers: memory-attention layers."""

    name: str = "sam2.1_hiera_tiny"
    image_size: int = 1024
    hiera: HieraConfig = HieraConfig()
    d_model: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    max_obj_ptrs: int = 16
    memory_layers: int = 4
    memory_ffn_dim: int = 2048
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    mask_in_chans: int = 16
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    stability_delta: float = 0.05
    stability_thresh: float = 0.98

    @property
    def embedding_size(self) -> int:
        """Side of the lowest-resolution (stride-16) image embedding: 64 at 1024, 32 at 512."""
        return self.image_size // 16

    @property
    def feat_sizes(self) -> tuple[int, int, int]:
        """Sides of the three feature levels the decoder uses (strides 4, 8, 16)."""
        s = self.image_size
        return (s // 4, s // 8, s // 16)

    @property
    def mask_input_size(self) -> int:
        """Side of the low-res logits / mask input (4 x the embedding: 256 at 1024)."""
        return 4 * self.embedding_size

    def at_size(self, image_size: int) -> Sam2Config:
        """The same weights' configuration at another input size (a multiple of 32)."""
        if image_size % 32 or image_size < 64:
            raise ValueError(f"image_size must be a multiple of 32 >= 64, got {image_size}")
        return replace(self, image_size=int(image_size))


HIERA_SIZES: dict[str, HieraConfig] = {
    "tiny": HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9)),
    "small": HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13)),
    "base_plus": HieraConfig(112, 2, (2, 3, 16, 3), (12, 16, 20), pos_embed_bkg=(14, 14)),
    "large": HieraConfig(144, 2, (2, 6, 36, 4), (23, 33, 43), window_spec=(8, 4, 16, 8)),
}

PRESETS: dict[str, Sam2Config] = {
    **{
        f"sam2.1_hiera_{k}": Sam2Config(f"sam2.1_hiera_{k}", 1024, h)
        for k, h in HIERA_SIZES.items()
    },
    "medsam2_512": Sam2Config("medsam2_512", 512, HIERA_SIZES["tiny"]),
}


def preset(name: str) -> Sam2Config:
    """The named configuration (one of PRESETS); a clear error otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"SAM2 config must be one of {', '.join(PRESETS)}; got {name!r}") from None


def hiera_from_shapes(embed_dim: int, stages: tuple[int, ...]) -> tuple[str, HieraConfig]:
    """(size name, HieraConfig) of the released trunk with this width and stage depths (heads,
    windows and global blocks are not visible in checkpoint shapes, so only released trunks are
    recognised)."""
    for name, h in HIERA_SIZES.items():
        if h.embed_dim == embed_dim and h.stages == tuple(stages):
            return name, h
    known = ", ".join(f"{k} ({h.embed_dim}, {h.stages})" for k, h in HIERA_SIZES.items())
    raise ValueError(
        f"no released Hiera trunk has embed_dim {embed_dim} and stages {tuple(stages)}; "
        f"known: {known}"
    )
