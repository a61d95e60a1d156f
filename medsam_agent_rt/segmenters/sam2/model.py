"""The SAM2 model in the official checkpoint layout (SAM2Base's module and parameter names), with
the image-mode calls (:meth:`Sam2Model.encode`, :meth:`Sam2Model.decode`) used by the segmenter
and the export wrappers. The video / volume memory path is in ``sam2.tracking``.

Image mode (SAM2ImagePredictor): Hiera + FPN -> three 256-channel levels; the two high-resolution
levels go through the decoder's conv_s0 / conv_s1 once per image; ``no_mem_embed`` is added to
the lowest-resolution level (no memory attention); a box is two points with labels 2 and 3 placed
before the clicks, followed by one padding point (label -1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medsam_agent_rt.segmenters.modeling.prompt_encoder import PromptEncoder
from medsam_agent_rt.segmenters.sam2.config import Sam2Config
from medsam_agent_rt.segmenters.sam2.decoder import MaskDecoder
from medsam_agent_rt.segmenters.sam2.hiera import ImageEncoder, Mlp
from medsam_agent_rt.segmenters.sam2.memory import MemoryAttention, MemoryEncoder
from medsam_agent_rt.segmenters.sam2.preprocess import prompt_tokens  # noqa: F401 - re-export


class Sam2Model(nn.Module):
    """SAM2.1 / MedSAM2 with every parameter of the released checkpoints (strict loading)."""

    def __init__(self, config: Sam2Config) -> None:
        super().__init__()
        self.config = config
        d, m, s = config.d_model, config.mem_dim, config.embedding_size
        self.image_encoder = ImageEncoder(config.hiera, d)
        self.sam_prompt_encoder = PromptEncoder(
            d, (s, s), (config.image_size,) * 2, config.mask_in_chans
        )
        self.sam_mask_decoder = MaskDecoder(d, config.decoder_heads, config.decoder_mlp_dim)
        self.memory_attention = MemoryAttention(d, m, config.memory_layers, config.memory_ffn_dim)
        self.memory_encoder = MemoryEncoder(d, m)
        self.obj_ptr_proj = Mlp(d, d, d, 3)
        self.obj_ptr_tpos_proj = nn.Linear(d, m)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))

    @property
    def input_size(self) -> int:
        return self.config.image_size

    @property
    def mask_input_size(self) -> tuple[int, int]:
        return (self.config.mask_input_size,) * 2

    def backbone(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 3, S, S) normalised image -> (pix_feat (B, 256, S/16, S/16) WITHOUT no_mem_embed,
        feat_s0 (B, 32, S/4, S/4), feat_s1 (B, 64, S/8, S/8)) (conv_s0 / conv_s1 applied)."""
        f0, f1, f2 = self.image_encoder(x)
        dec = self.sam_mask_decoder
        return f2, dec.conv_s0(f0), dec.conv_s1(f1)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Image mode: (image_embed + no_mem_embed, feat_s0, feat_s1)."""
        pix, s0, s1 = self.backbone(x)
        return pix + self.no_mem_embed.view(1, -1, 1, 1), s0, s1

    def dense_pe(self) -> Tensor:
        """(1, 256, s, s) positional encoding of the embedding grid."""
        return self.sam_prompt_encoder.get_dense_pe()

    def decode(
        self,
        image_embed: Tensor,
        feat_s0: Tensor,
        feat_s1: Tensor,
        coords: Tensor,
        labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        token_bias: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """coords (B, T, 2) model-input px and labels (B, T) in {-1 pad, 0, 1, 2, 3} (the full
        token list, padding point included); mask_input (B, 1, 4s, 4s) logits; has_mask_input
        (B,) 0/1. Returns all 4 tokens: low-res logits (B, 4, 4s, 4s), IoU (B, 4), mask tokens
        (B, 4, 256), object-score logits (B, 1)."""
        pe = self.sam_prompt_encoder
        sparse = pe.embed_tokens(coords, labels)
        dense = pe.dense_embeddings(mask_input, has_mask_input)
        return self.sam_mask_decoder(
            image_embed, self.dense_pe(), sparse, dense, feat_s0, feat_s1, token_bias
        )
