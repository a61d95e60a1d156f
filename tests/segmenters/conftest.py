"""Fixtures for the segmenter tests: tiny configs of every encoder type, the matching official
(oracle) modules with random weights, and the embedded LiteMedSAM model."""

from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.segmenters.modeling.image_encoder import ViTConfig  # noqa: E402
from medsam_agent_rt.segmenters.modeling.sam import SamConfig  # noqa: E402
from medsam_agent_rt.segmenters.modeling.tiny_vit import TinyViTConfig  # noqa: E402

# A ViT with windowed (3x3 over an 8x8 grid: padding path) and global attention, rel. positions.
TINY_VIT = ViTConfig(
    img_size=64,
    patch_size=8,
    embed_dim=32,
    depth=3,
    num_heads=2,
    out_chans=32,
    window_size=3,
    global_attn_indexes=(1,),
)
TINY_VIT_SAM = SamConfig(
    encoder=TINY_VIT,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_depth=2,
    decoder_heads=2,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)
# A TinyViT the official code can run: it hard-codes a 64x64 output grid, a 256-wide neck and
# stride 1 for a merge into 320 channels, so only the widths/depths shrink.
TINY_TINYVIT = TinyViTConfig(
    img_size=256,
    embed_dims=(8, 16, 24, 320),
    depths=(1, 1, 2, 1),
    num_heads=(1, 2, 3, 4),
    window_sizes=(7, 7, 14, 7),
)
TINY_TINYVIT_SAM = SamConfig(encoder=TINY_TINYVIT, decoder_depth=1, decoder_mlp_dim=64)


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Every parameter and BatchNorm statistic random (not the zero/one defaults), in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)


def oracle_sam(sam_oracle, cfg: SamConfig, tinyvit_oracle=None):
    """The official Sam built with ``cfg``'s sizes (image encoder from the official ViT or the
    official LiteMedSAM TinyViT)."""
    enc = cfg.encoder
    if isinstance(enc, ViTConfig):
        image_encoder = sam_oracle.ImageEncoderViT(
            img_size=enc.img_size,
            patch_size=enc.patch_size,
            embed_dim=enc.embed_dim,
            depth=enc.depth,
            num_heads=enc.num_heads,
            mlp_ratio=enc.mlp_ratio,
            out_chans=enc.out_chans,
            qkv_bias=True,
            norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=enc.window_size,
            global_attn_indexes=enc.global_attn_indexes,
        )
    else:
        image_encoder = tinyvit_oracle.TinyViT(
            img_size=enc.img_size,
            in_chans=3,
            embed_dims=list(enc.embed_dims),
            depths=list(enc.depths),
            num_heads=list(enc.num_heads),
            window_sizes=list(enc.window_sizes),
            mlp_ratio=enc.mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=enc.mbconv_expand_ratio,
            local_conv_size=enc.local_conv_size,
            layer_lr_decay=0.8,
        )
    e, s = cfg.embedding_size, cfg.input_size
    prompt_encoder = sam_oracle.PromptEncoder(
        embed_dim=cfg.prompt_embed_dim,
        image_embedding_size=(e, e),
        input_image_size=(s, s),
        mask_in_chans=cfg.mask_in_chans,
    )
    mask_decoder = sam_oracle.MaskDecoder(
        num_multimask_outputs=cfg.num_multimask_outputs,
        transformer=sam_oracle.TwoWayTransformer(
            depth=cfg.decoder_depth,
            embedding_dim=cfg.prompt_embed_dim,
            mlp_dim=cfg.decoder_mlp_dim,
            num_heads=cfg.decoder_heads,
        ),
        transformer_dim=cfg.prompt_embed_dim,
        iou_head_depth=cfg.iou_head_depth,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )
    return sam_oracle.Sam(image_encoder, prompt_encoder, mask_decoder)


def paired_models(sam_oracle, cfg: SamConfig, seed: int, tinyvit_oracle=None):
    """(official model, our model) with identical random weights, both in eval mode."""
    from medsam_agent_rt.segmenters.modeling.sam import SamModel

    ref = oracle_sam(sam_oracle, cfg, tinyvit_oracle)
    randomize_(ref, seed)
    ref.eval()  # after the weights: the official TinyViT caches its attention biases in eval()
    ours = SamModel(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    return ref, ours


@pytest.fixture(scope="session")
def tiny_configs():
    return SimpleNamespace(vit=TINY_VIT_SAM, tinyvit=TINY_TINYVIT_SAM)


@pytest.fixture(scope="session")
def paired():
    """paired_models(sam_oracle, cfg, seed, tinyvit_oracle=None) -> (official, ours)."""
    return paired_models


@pytest.fixture(scope="session")
def oracle_builder():
    """oracle_sam(sam_oracle, cfg, tinyvit_oracle=None) -> the official Sam for cfg."""
    return oracle_sam


@pytest.fixture(scope="session")
def embedded_litemedsam():
    """Our LiteMedSAM model loaded from the embedded safetensors (eval, CPU)."""
    from medsam_agent_rt.segmenters.checkpoints import load_embedded_litemedsam

    return load_embedded_litemedsam()


@pytest.fixture(scope="session")
def litemedsam_seg(embedded_litemedsam):
    """One TorchSegmenter over the embedded LiteMedSAM for the whole session (its embedding
    cache lets several test modules share one encoding of the demo image)."""
    from medsam_agent_rt.segmenters.torch_backend import TorchSegmenter

    return TorchSegmenter(embedded_litemedsam, "litemedsam", cache_size=4)


@pytest.fixture(scope="session")
def demo_image(demo_dir):
    """One real demo image (RGBA PNG -> RGB uint8) and its masks {name: bool (H, W)} (the mask
    PNGs are RGBA too: 0/255 in the colour channels, alpha 255)."""
    from PIL import Image

    name = "06_CT_abdomen"
    image = np.asarray(Image.open(demo_dir / "demo" / f"{name}.png").convert("RGB"))
    masks = {
        p.stem[len(name) + 1 :]: np.asarray(Image.open(p).convert("L")) > 0
        for p in sorted((demo_dir / "demo_mask").glob(f"{name}_*.png"))
    }
    return image, masks


# ----------------------------------------------------------------------------- exported models
# Exports are the slow part of the export/onnx/trt tests (torch.export tracing): each is made
# once per session and shared by tests/segmenters/test_{export_onnx,onnx_backend,trt_backend}.py.
TINY_EXPORT_SAM = dataclasses.replace(TINY_VIT_SAM, decoder_heads=8)  # heads load_checkpoint infers


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """(torch SamModel, ExportedModel, checkpoint path): a tiny random SAM ViT saved as a
    checkpoint and exported (FP32 + FP16) through the real CLI, ``medsam-agent export sam``."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from medsam_agent_rt.cli import main
    from medsam_agent_rt.segmenters.exported import load_export
    from medsam_agent_rt.segmenters.modeling.sam import SamModel

    root = tmp_path_factory.mktemp("tiny_export")
    model = SamModel(TINY_EXPORT_SAM)
    randomize_(model, 11)
    model.eval()
    ckpt = root / "sam_vit_tiny.pth"
    torch.save(model.state_dict(), ckpt)
    out = root / "onnx"
    code = main(["export", "sam", str(ckpt), "--out", str(out), "--family", "sam", "--quiet"])
    assert code == 0
    return model, load_export(out), ckpt


@pytest.fixture(scope="session")
def litemedsam_export(tmp_path_factory, embedded_litemedsam):
    """ExportedModel of the embedded LiteMedSAM, FP32 graphs only."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from medsam_agent_rt.export.sam_onnx import export_sam

    out = tmp_path_factory.mktemp("litemedsam_export") / "onnx"
    return export_sam(embedded_litemedsam, "litemedsam", out, ("fp32",), progress=False)
