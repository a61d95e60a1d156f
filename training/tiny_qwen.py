"""Tiny random-weight Qwen3-VL / Qwen2.5-VL checkpoints with a local tokenizer.

Tests and the ``phantom-tiny`` training preset need the real architectures without downloading
anything. ``build_tiny_qwen(out_dir, family)`` writes a directory that loads exactly like a real
checkpoint (``config.json``, ``model.safetensors``, ``generation_config.json``,
``tokenizer.json`` + ``tokenizer_config.json``, ``preprocessor_config.json``):

- the tokenizer is a byte-level BPE trained with ``tokenizers`` on the protocol texts (system
  prompt, turn texts, phrases, tool calls, target descriptions), with Qwen's pre-tokenizer regex
  (every digit its own token, so 0..999 coordinates are learnable) and Qwen's added tokens in
  Qwen's order after the learned vocabulary (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``,
  ... ``<|vision_start|>``, ``<|image_pad|>``, ``<tool_call>`` ...);
- the model config is a scaled-down copy of the family's architecture (M-RoPE sections scaled to
  the head size, DeepStack / window attention kept) with the tokenizer's special-token ids;
- weights are random, initialised by transformers under ``seed`` (same seed -> same bytes).

Building both families and the tokenizer takes well under a few seconds on one CPU core.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsam_agent_rt.policies.qwen_chat import FAMILIES
from medsam_agent_rt.protocol import text as ptext

# Qwen2/Qwen3 pre-tokenizer: letters in words, every digit alone, punctuation runs, newlines.
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen's added tokens in Qwen's order (ids follow the learned vocabulary). special=True tokens
# are dropped by decode(skip_special_tokens=True); the others (<tool_call> ...) are kept.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
NON_SPECIAL_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)

DEFAULT_TARGETS: tuple[str, ...] = (
    "left kidney in abdomen CT",
    "right kidney in abdomen CT",
    "liver in abdomen CT",
    "spleen in abdomen CT",
    "pancreas in abdomen CT",
    "tumor in liver MRI",
    "brain tumor in brain MRI",
    "left lung in chest X-Ray",
    "right lung in chest X-Ray",
    "lung nodule in chest CT",
    "COVID-19 infection in chest CT",
    "polyp in colon endoscopy",
    "neoplastic polyp in colon endoscope",
    "optic disc in fundus retinal image",
    "optic cup in fundus retinal image",
    "benign tumor in breast ultrasound",
    "malignant tumor in breast ultrasound",
    "thyroid nodule in thyroid ultrasound",
    "left ventricle in heart ultrasound",
    "myocardium in cardiac MRI",
    "prostate in pelvis MRI",
    "glandular structure in colon pathology",
    "neoplastic cells in pathology",
    "skin lesion in dermoscopy",
    "nuclei in microscopy",
    "bright ellipse in phantom image",
    "dark disk in phantom ultrasound",
)


# ----------------------------------------------------------------------------- tokenizer


def protocol_corpus(
    targets: Sequence[str] = DEFAULT_TARGETS, *, seed: int = 0, n_tool_calls: int = 300
) -> list[str]:
    """Training texts for the tokenizer: everything the protocol writes, plus random tool calls.

    Deterministic given ``seed``. Role names appear as they do in ChatML ("user\\n" ...).
    """
    rng = random.Random(seed)
    phrases = (
        ptext.PHRASE_BOX,
        ptext.PHRASE_FIRST_POINT,
        ptext.PHRASE_REFINE,
        ptext.PHRASE_STOP,
    )
    texts = [ptext.SYSTEM_PROMPT, ptext.FOLLOWUP_TURN_TEXT, *phrases]
    texts += [ptext.first_turn_text(t) for t in targets]
    texts += ["system\n", "user\n", "assistant\n"] * 8
    g = ptext.GRID_MAX
    for _ in range(n_tool_calls):
        kind = rng.randrange(3)
        if kind == 0:
            x1, y1 = rng.randrange(g // 2), rng.randrange(g // 2)
            x2, y2 = rng.randrange(x1 + 1, g + 1), rng.randrange(y1 + 1, g + 1)
            texts.append(
                ptext.assistant_text(ptext.PHRASE_BOX, "add_bbox", {"bbox_2d": [x1, y1, x2, y2]})
            )
        elif kind == 1:
            pt = [rng.randrange(g + 1), rng.randrange(g + 1)]
            ptype = rng.choice(("positive", "negative"))
            texts.append(
                ptext.assistant_text(
                    ptext.PHRASE_REFINE, "add_point", {"point_2d": pt, "point_type": ptype}
                )
            )
        else:
            texts.append(ptext.assistant_text(ptext.PHRASE_STOP, "stop_action", {}))
    return texts


def train_tokenizer(
    corpus: Iterable[str], *, vocab_size: int = 1024, min_frequency: int = 1
) -> Any:
    """Byte-level BPE (``tokenizers.Tokenizer``) with Qwen's pre-tokenizer and added tokens.

    vocab_size bounds the learned part (256 byte symbols + merges); the added tokens follow it.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 (the byte alphabet), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(corpus), trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in NON_SPECIAL_ADDED_TOKENS]
    )
    return tok


def save_tokenizer(tok: Any, out_dir: str | Path) -> None:
    """Write tokenizer.json + tokenizer_config.json (loads with ``AutoTokenizer`` as Qwen2Tokenizer)."""
    from transformers import Qwen2Tokenizer

    hf_tok = Qwen2Tokenizer(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )
    hf_tok.model_max_length = 32768
    hf_tok.save_pretrained(str(out_dir))


# ----------------------------------------------------------------------------- model configs


@dataclass(frozen=True)
class TinyQwenSize:
    """Dimensions of a tiny model (text decoder and vision tower)."""

    text_layers: int = 2
    text_hidden: int = 64
    text_heads: int = 2
    text_kv_heads: int = 1
    text_intermediate: int = 128
    vision_layers: int = 2
    vision_hidden: int = 32
    vision_heads: int = 2
    vision_intermediate: int = 64
    vision_patch: int | None = None  # None: the family's (Qwen3-VL 16, Qwen2.5-VL 14)

    def __post_init__(self) -> None:
        if self.vision_patch is not None and self.vision_patch < 2:
            raise ValueError(f"vision_patch must be >= 2 pixels (or None), got {self.vision_patch}")
        for name in ("text_hidden", "vision_hidden"):
            heads = getattr(self, name.replace("hidden", "heads"))
            if getattr(self, name) % heads:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be divisible by its heads ({heads})"
                )
        if self.text_heads % self.text_kv_heads:
            raise ValueError(
                f"text_heads={self.text_heads} must be a multiple of text_kv_heads={self.text_kv_heads}"
            )
        if (self.text_hidden // self.text_heads) % 4:
            raise ValueError(
                f"text head size {self.text_hidden // self.text_heads} must be a multiple of 4"
            )


# The starting point of the phantom-tiny preset (ARCHITECTURE.md decision 6: text 4 x 128,
# vision 3 x 96 learns box calls on CPU): ~1.6M parameters for Qwen3-VL with this tokenizer.
PHANTOM_TINY_SIZE = TinyQwenSize(
    text_layers=4,
    text_hidden=128,
    text_heads=4,
    text_kv_heads=2,
    text_intermediate=256,
    vision_layers=3,
    vision_hidden=96,
    vision_heads=2,
    vision_intermediate=192,
)


def _mrope_section(family: str, head_dim: int) -> list[int]:
    """Temporal/height/width split of the rotary half-dimension, scaled from the real models
    (Qwen3-VL [24, 20, 20] of 64, Qwen2.5-VL [16, 24, 24] of 64)."""
    half = head_dim // 2
    hw = half * (20 if family == "qwen3_vl" else 24) // 64
    return [half - 2 * hw, hw, hw]


def tiny_qwen_config(
    family: str, token_ids: dict[str, int], vocab_size: int, size: TinyQwenSize = TinyQwenSize()
) -> Any:
    """A transformers config of the family's architecture at ``size``.

    token_ids: ids of "<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>" in the tokenizer.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    head_dim = size.text_hidden // size.text_heads
    text = {
        "vocab_size": vocab_size,
        "hidden_size": size.text_hidden,
        "intermediate_size": size.text_intermediate,
        "num_hidden_layers": size.text_layers,
        "num_attention_heads": size.text_heads,
        "num_key_value_heads": size.text_kv_heads,
        "max_position_embeddings": 32768,
        "eos_token_id": token_ids["<|im_end|>"],
        "pad_token_id": token_ids["<|endoftext|>"],
        "bos_token_id": None,
    }
    vision = {
        "depth": size.vision_layers,
        "hidden_size": size.vision_hidden,
        "intermediate_size": size.vision_intermediate,
        "num_heads": size.vision_heads,
        "out_hidden_size": size.text_hidden,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    ids = {
        "image_token_id": token_ids["<|image_pad|>"],
        "video_token_id": token_ids["<|video_pad|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"],
        "vision_end_token_id": token_ids["<|vision_end|>"],
    }
    rope = {"rope_type": "default", "mrope_section": _mrope_section(family, head_dim)}
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        text.update(
            head_dim=head_dim,
            rope_parameters={**rope, "rope_theta": 5e6, "mrope_interleaved": True},
        )
        vision.update(
            patch_size=size.vision_patch or 16,
            num_position_embeddings=1024,  # 32 x 32 learned grid, interpolated like the real 48 x 48
            deepstack_visual_indexes=[size.vision_layers // 2],
        )
        return Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
    from transformers import Qwen2_5_VLConfig

    text.update(rope_parameters={**rope, "rope_theta": 1e6})
    patch = size.vision_patch or 14
    vision.update(
        patch_size=patch, window_size=8 * patch, fullatt_block_indexes=[size.vision_layers - 1]
    )
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)


def preprocessor_config(family: str, patch_size: int | None = None) -> dict[str, Any]:
    """preprocessor_config.json as the official checkpoints of the family write it
    (``patch_size`` overrides the family's patch side, matching a ``TinyQwenSize.vision_patch``)."""
    out = _official_preprocessor_config(family)
    if patch_size is not None:
        out["patch_size"] = int(patch_size)
    return out


def _official_preprocessor_config(family: str) -> dict[str, Any]:
    if family == "qwen3_vl":
        return {
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen3VLProcessor",
            "size": {"shortest_edge": 65536, "longest_edge": 16777216},
            "patch_size": 16,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }


# ----------------------------------------------------------------------------- builder


def build_tiny_qwen(
    out_dir: str | Path,
    family: str = "qwen3_vl",
    *,
    seed: int = 0,
    size: TinyQwenSize = TinyQwenSize(),
    vocab_size: int = 1024,
    targets: Sequence[str] = DEFAULT_TARGETS,
    extra_texts: Sequence[str] = (),
    generation_config: dict[str, Any] | None = None,
) -> Path:
    """Write a random-weight checkpoint of ``family`` to ``out_dir`` and return its path.

    Deterministic given ``seed`` (tokenizer, config and weights). ``generation_config`` adds
    entries to generation_config.json (e.g. the sampling defaults real checkpoints ship).
    """
    import torch

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = train_tokenizer(
        [*protocol_corpus(targets, seed=seed), *extra_texts], vocab_size=vocab_size
    )
    names = ("<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>")
    token_ids = {t: tok.token_to_id(t) for t in (*names, "<|video_pad|>")}
    # Embedding rows rounded up to a multiple of 64, as Qwen pads its vocabulary.
    n_vocab = -(-tok.get_vocab_size() // 64) * 64
    config = tiny_qwen_config(family, token_ids, n_vocab, size)

    if family == "qwen3_vl":
        from transformers import Qwen3VLForConditionalGeneration as Model
    else:
        from transformers import Qwen2_5_VLForConditionalGeneration as Model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Model(config).eval()
    stop = [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]]
    model.generation_config.eos_token_id = stop
    model.generation_config.pad_token_id = token_ids["<|endoftext|>"]
    for k, v in (generation_config or {}).items():
        setattr(model.generation_config, k, v)
    model.save_pretrained(str(out))

    save_tokenizer(tok, out)
    (out / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_config(family, size.vision_patch), indent=2) + "\n"
    )
    return out
