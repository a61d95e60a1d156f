"""The whole SAM-1 model: image encoder (ViT or TinyViT), prompt encoder, mask decoder.

``SamModel.state_dict()`` keys equal the official checkpoints' (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``). The runtime path is split the way an exported model
is: :meth:`SamModel.encode` (once per image) and :meth:`SamModel.decode` (every turn; fused
sparse prompt tokens, a mask input with a 0/1 flag, optional padded slots; static shapes, all four
mask tokens returned, upsampling left to ``ops.postprocess_masks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from medsam_agent_rt.segmenters.modeling.image_encoder import ImageEncoderViT, ViTConfig
from medsam_agent_rt.segmenters.modeling.mask_decoder import MaskDecoder
from medsam_agent_rt.segmenters.modeling.prompt_encoder import PromptEncoder
from medsam_agent_rt.segmenters.modeling.tiny_vit import LITEMEDSAM_TINYVIT, TinyViT, TinyViTConfig
from medsam_agent_rt.segmenters.modeling.transformer import TwoWayTransformer


@dataclass(frozen=True)
class SamConfig:
    """Encoder config plus the prompt encoder / decoder sizes (defaults: every released model)."""

    encoder: ViTConfig | TinyViTConfig = field(default_factory=lambda: LITEMEDSAM_TINYVIT)
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def input_size(self) -> int:
        """Side of the square, padded model input (1024 SAM / MedSAM / MobileSAM, 256 LiteMedSAM)."""
        return self.encoder.img_size

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for every released model)."""
        if isinstance(self.encoder, ViTConfig):
            return self.encoder.grid
        return self.encoder.resolutions()[-1]


class SamModel(nn.Module):
    """image (B, 3, S, S) -> embedding (B, C, h, w); embedding + prompts -> low-res logits."""

    def __init__(self, config: SamConfig) -> None:
        super().__init__()
        self.config = config
        enc = config.encoder
        if isinstance(enc, ViTConfig):
            if enc.out_chans != config.prompt_embed_dim:
                raise ValueError("ViT out_chans must equal prompt_embed_dim")
            self.image_encoder: nn.Module = ImageEncoderViT(enc)
        elif isinstance(enc, TinyViTConfig):
            if enc.out_chans != config.prompt_embed_dim:
                raise ValueError("TinyViT out_chans must equal prompt_embed_dim")
            self.image_encoder = TinyViT(enc)
        else:
            raise TypeError(f"encoder must be a ViTConfig or TinyViTConfig, got {type(enc)}")
        e = config.embedding_size
        s = config.input_size
        self.prompt_encoder = PromptEncoder(
            config.prompt_embed_dim, (e, e), (s, s), config.mask_in_chans
        )
        self.mask_decoder = MaskDecoder(
            transformer_dim=config.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                num_heads=config.decoder_heads,
                mlp_dim=config.decoder_mlp_dim,
            ),
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        )

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """(rows, cols) of ``mask_input`` and of the low-res logits (256 x 256)."""
        return self.prompt_encoder.mask_input_size

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed image -> (B, C, h, w) image embedding."""
        return self.image_encoder(image)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        sparse_embeddings: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        prompt_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embeddings (1 or B, C, h, w); sparse_embeddings (B, S, C) from
        ``ops.encode_sparse_prompts``; mask_input (B, 1, 4h, 4w); has_mask_input (B,) 0/1;
        prompt_mask (B, S) 1 real / 0 padding slot, or None. Returns low-res logits of all mask
        tokens (B, 4, 4h, 4w) and their IoU predictions (B, 4); token 0 is the single-mask output,
        1..3 the multimask outputs."""
        dense = self.prompt_encoder.dense_embeddings(mask_input, has_mask_input)
        return self.mask_decoder.predict_masks(
            image_embeddings,
            self.prompt_encoder.get_dense_pe(),
            sparse_embeddings,
            dense,
            prompt_mask,
        )
