"""tiny_qwen: local tokenizer and tiny Qwen-VL checkpoints that load like real ones."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from medsam_agent_rt.training import tiny_qwen as tq  # noqa: E402

from medsam_agent_rt.protocol import (  # noqa: E402
    PHRASE_REFINE,
    SYSTEM_PROMPT,
    assistant_text,
    first_turn_text,
)

FAMILIES = ("qwen3_vl", "qwen2_5_vl")


def _digest(path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    t0 = time.perf_counter()
    out = {fam: tq.build_tiny_qwen(tmp_path_factory.mktemp(fam), fam, seed=3) for fam in FAMILIES}
    return out, time.perf_counter() - t0


def test_build_is_fast_and_deterministic(built, tmp_path):
    dirs, seconds = built
    assert seconds < 30  # a few seconds on 2 shared cores (mostly the transformers import)
    for fam in FAMILIES:
        again = tq.build_tiny_qwen(tmp_path / fam, fam, seed=3)
        assert _digest(again) == _digest(dirs[fam])
    other = tq.build_tiny_qwen(tmp_path / "seed4", "qwen3_vl", seed=4)
    a, b = _digest(other), _digest(dirs["qwen3_vl"])
    assert a["model.safetensors"] != b["model.safetensors"]
    expected = {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert expected <= set(b)


def test_pretokenizer_is_qwens():
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    assert tq.QWEN_PRETOKENIZE_REGEX == PRETOKENIZE_REGEX


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_loads_like_qwens(family, built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built[0][family], local_files_only=True)
    base = len(tok) - len(tq.SPECIAL_TOKENS) - len(tq.NON_SPECIAL_ADDED_TOKENS)
    # Added tokens follow the learned vocabulary, in Qwen's order.
    added = [*tq.SPECIAL_TOKENS, *tq.NON_SPECIAL_ADDED_TOKENS]
    assert [tok.convert_tokens_to_ids(t) for t in added] == list(range(base, len(tok)))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    # Every digit is its own token: coordinates are spelled digit by digit.
    text = assistant_text(
        PHRASE_REFINE, "add_point", {"point_2d": [198, 407], "point_type": "positive"}
    )
    pieces = tok.convert_ids_to_tokens(tok.encode(text, add_special_tokens=False))
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert "".join(digits) == "2198407"  # "point_2d" then the coordinates
    assert all(len(p) == 1 for p in digits)
    # Lossless byte-level round trip, including text the corpus never saw.
    for s in (SYSTEM_PROMPT, text, first_turn_text("Läsion in Leber MRT (T2) ≥ 3 cm"), "\n\n  x\t"):
        assert tok.decode(tok.encode(s, add_special_tokens=False)) == s
    # ChatML tokens are special (dropped on decode); <tool_call> is not (kept), as in Qwen.
    ids = tok.encode("<|im_start|>assistant\n" + text + "<|im_end|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n" + text
    assert tok.encode("<tool_call>", add_special_tokens=False) == [
        tok.convert_tokens_to_ids("<tool_call>")
    ]
    # Protocol texts compress: the system prompt is far fewer tokens than bytes.
    assert len(tok.encode(SYSTEM_PROMPT, add_special_tokens=False)) < len(SYSTEM_PROMPT) / 3


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_is_consistent(family, built):
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    path = built[0][family]
    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert cfg.model_type == family
    for key, token in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        assert getattr(cfg, key) == tok.convert_tokens_to_ids(token), key
    text = cfg.get_text_config()
    assert len(tok) <= text.vocab_size and text.vocab_size % 64 == 0
    assert cfg.vision_config.out_hidden_size == text.hidden_size
    pre = json.loads((path / "preprocessor_config.json").read_text())
    assert pre["patch_size"] == cfg.vision_config.patch_size == (16 if family == "qwen3_vl" else 14)
    assert pre["merge_size"] == cfg.vision_config.spatial_merge_size == 2
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [
        tok.convert_tokens_to_ids("<|im_end|>"),
        tok.convert_tokens_to_ids("<|endoftext|>"),
    ]
    # Loads through the generic auto class too (as any transformers user would load it).
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    n = sum(p.numel() for p in model.parameters())
    assert 1e5 < n < 2e6
    # Text half of M-RoPE sections fills the rotary half-dimension.
    head = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head // 2
    with torch.no_grad():
        ids = torch.tensor([tok.encode("user\nhello", add_special_tokens=False)])
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], text.vocab_size) and torch.isfinite(logits).all()


def test_phantom_tiny_size_builds(tmp_path):
    from transformers import AutoModelForImageTextToText

    path = tq.build_tiny_qwen(tmp_path, "qwen3_vl", size=tq.PHANTOM_TINY_SIZE)
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    cfg = model.config
    assert (cfg.text_config.num_hidden_layers, cfg.text_config.hidden_size) == (4, 128)
    assert (cfg.vision_config.depth, cfg.vision_config.hidden_size) == (3, 96)
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 3e6


def test_generation_config_extras(tmp_path):
    path = tq.build_tiny_qwen(
        tmp_path, "qwen3_vl", generation_config={"do_sample": True, "top_k": 20}
    )
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["do_sample"] is True and gen["top_k"] == 20


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="family"):
        tq.build_tiny_qwen(tmp_path, "llama")
    with pytest.raises(ValueError, match="vocab_size"):
        tq.train_tokenizer(["a"], vocab_size=100)
    with pytest.raises(ValueError, match="divisible"):
        tq.TinyQwenSize(text_hidden=65)
    with pytest.raises(ValueError, match="text_kv_heads"):
        tq.TinyQwenSize(text_heads=2, text_kv_heads=3)


def test_corpus_is_deterministic_and_covers_the_protocol():
    a, b = tq.protocol_corpus(seed=1), tq.protocol_corpus(seed=1)
    assert a == b and a != tq.protocol_corpus(seed=2)
    assert SYSTEM_PROMPT in a
    assert any('"stop_action"' in t for t in a) and any('"add_bbox"' in t for t in a)
    assert np.mean(['"add_point"' in t for t in a]) > 0.2


@pytest.mark.parametrize("family", FAMILIES)
def test_vision_patch_override_reaches_config_and_processor(family, tmp_path):
    """A coarser patch (fewer vision tokens per view) is written consistently to the model config
    and preprocessor_config.json, so the chat encoder accepts the checkpoint and a 512 view costs
    (512 / (32 * 2))**2 = 64 tokens on Qwen3-VL."""
    from transformers import AutoConfig

    from medsam_agent_rt.policies.qwen_chat import load_image_spec

    path = tq.build_tiny_qwen(tmp_path, family, size=tq.TinyQwenSize(vision_patch=32))
    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    pre = json.loads((path / "preprocessor_config.json").read_text())
    assert pre["patch_size"] == cfg.vision_config.patch_size == 32
    spec = load_image_spec(path, cfg.vision_config, family)
    if family == "qwen3_vl":
        assert spec.num_image_tokens(512, 512) == 64
    else:
        assert cfg.vision_config.window_size == 8 * 32
    with pytest.raises(ValueError, match="vision_patch"):
        tq.TinyQwenSize(vision_patch=1)
