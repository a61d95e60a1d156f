"""The independent implementation for SAM2 parity: transformers' Sam2Model / Sam2VideoModel, fed
the SAME weights as ours through a key mapping from the original checkpoint layout (written here
from the two state-dict layouts; transformers' own converter script is not shipped in the wheel).
"""

from __future__ import annotations

import re

import torch

# (pattern on the ORIGINAL key, replacement giving the transformers key); first match wins.
_RULES: list[tuple[str, str]] = [
    (
        r"^image_encoder\.trunk\.patch_embed\.proj\.",
        "vision_encoder.backbone.patch_embed.projection.",
    ),
    (r"^image_encoder\.trunk\.(pos_embed|pos_embed_window)$", r"vision_encoder.backbone.\1"),
    (
        r"^image_encoder\.trunk\.blocks\.(\d+)\.norm(\d)\.",
        r"vision_encoder.backbone.blocks.\1.layer_norm\2.",
    ),
    (
        r"^image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.0\.",
        r"vision_encoder.backbone.blocks.\1.mlp.proj_in.",
    ),
    (
        r"^image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.1\.",
        r"vision_encoder.backbone.blocks.\1.mlp.proj_out.",
    ),
    (r"^image_encoder\.trunk\.blocks\.", "vision_encoder.backbone.blocks."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^sam_prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^sam_prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^sam_prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^sam_mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^sam_mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (
        r"^memory_encoder\.mask_downsampler\.encoder\.12\.",
        "memory_encoder.mask_downsampler.final_conv.",
    ),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."),
    (
        r"^memory_encoder\.fuser\.layers\.(\d+)\.gamma$",
        r"memory_encoder.memory_fuser.layers.\1.scale",
    ),
    (
        r"^memory_encoder\.fuser\.layers\.(\d+)\.dwconv\.",
        r"memory_encoder.memory_fuser.layers.\1.depthwise_conv.",
    ),
    (
        r"^memory_encoder\.fuser\.layers\.(\d+)\.norm\.",
        r"memory_encoder.memory_fuser.layers.\1.layer_norm.",
    ),
    (
        r"^memory_encoder\.fuser\.layers\.(\d+)\.pwconv",
        r"memory_encoder.memory_fuser.layers.\1.pointwise_conv",
    ),
    (r"^memory_attention\.norm\.", "memory_attention.layer_norm."),
    (r"^memory_attention\.layers\.(\d+)\.norm(\d)\.", r"memory_attention.layers.\1.layer_norm\2."),
    (r"^memory_attention\.", "memory_attention."),
    (r"^obj_ptr_proj\.", "object_pointer_proj."),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^mask_downsample\.", "mask_downsample."),
]


def _mlp3(key: str) -> str:
    """3-layer MLPs: original layers.{0,1,2} -> proj_in, layers.0, proj_out."""
    m = re.match(
        r"^(.*(?:hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head|object_pointer_proj))\.layers\.(\d)\.(.*)$",
        key,
    )
    if not m:
        return key
    name = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}[m.group(2)]
    return f"{m.group(1)}.{name}.{m.group(3)}"


def to_hf(state: dict[str, torch.Tensor], video: bool) -> dict[str, torch.Tensor]:
    """Original-layout state dict -> transformers Sam2Model (video=False) / Sam2VideoModel keys."""
    out: dict[str, torch.Tensor] = {}
    points = {}
    for key, value in state.items():
        m = re.match(r"^sam_prompt_encoder\.point_embeddings\.(\d)\.weight$", key)
        if m:
            points[int(m.group(1))] = value
            continue
        if key == "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix":
            out["prompt_encoder.shared_embedding.positional_embedding"] = value
            out["shared_image_embedding.positional_embedding"] = value
            continue
        m = re.match(r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(.*)$", key)
        if m and int(m.group(1)) < 12:
            i = int(m.group(1))
            part = "conv" if i % 3 == 0 else "layer_norm"
            out[f"memory_encoder.mask_downsampler.layers.{i // 3}.{part}.{m.group(2)}"] = value
            continue
        new = key
        for pat, rep in _RULES:
            if re.search(pat, key):
                new = re.sub(pat, rep, key)
                break
        new = re.sub(r"\.out_proj\.", ".o_proj.", new)
        new = re.sub(r"(transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2.", new)
        new = new.replace("transformer.norm_final_attn.", "transformer.layer_norm_final_attn.")
        new = re.sub(r"(transformer\.layers\.\d+\.mlp)\.layers\.0\.", r"\1.proj_in.", new)
        new = re.sub(r"(transformer\.layers\.\d+\.mlp)\.layers\.1\.", r"\1.proj_out.", new)
        new = _mlp3(new)
        out[new] = value
    out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in range(4)], 0)
    if not video:
        out = {
            k: v
            for k, v in out.items()
            if not k.startswith(
                ("memory_", "object_pointer", "temporal_positional", "mask_downsample")
            )
            and k
            not in (
                "no_memory_positional_encoding",
                "no_object_pointer",
                "occlusion_spatial_embedding_parameter",
            )
        }
    return out


def hf_config(config, video: bool):
    """The transformers config of our ``Sam2Config``."""
    from transformers import Sam2Config as HfConfig
    from transformers import Sam2VideoConfig

    h, s = config.hiera, config.image_size
    backbone = dict(
        hidden_size=h.embed_dim,
        num_attention_heads=h.num_heads,
        image_size=[s, s],
        blocks_per_stage=list(h.stages),
        embed_dim_per_stage=list(h.channels),
        num_attention_heads_per_stage=[h.num_heads * 2**i for i in range(4)],
        window_size_per_stage=list(h.window_spec),
        global_attention_blocks=list(h.global_att_blocks),
        window_positional_embedding_background_size=list(h.pos_embed_bkg),
    )
    vision = dict(
        backbone_config=dict(model_type="sam2_hiera_det_model", **backbone),
        backbone_channel_list=list(reversed(h.channels)),
        backbone_feature_sizes=[[f, f] for f in config.feat_sizes],
    )
    prompt = dict(image_size=s)
    if video:
        e = config.embedding_size
        return Sam2VideoConfig(
            vision_config=vision,
            prompt_encoder_config=prompt,
            image_size=s,
            memory_attention_rope_feat_sizes=[e, e],
        )
    return HfConfig(vision_config=vision, prompt_encoder_config=prompt)


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Perturb every parameter (zero-initialised ones included) by N(0, scale^2), reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def hf_model(ours, video: bool = False):
    """transformers Sam2Model / Sam2VideoModel with our model's weights (strict)."""
    from transformers import Sam2Model, Sam2VideoModel

    cfg = hf_config(ours.config, video)
    cls = Sam2VideoModel if video else Sam2Model
    hf = cls(cfg).eval()
    state = to_hf(ours.state_dict(), video)
    own = hf.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    assert not missing and not unexpected, (missing[:5], unexpected[:5])
    hf.load_state_dict(state, strict=True)
    return hf
