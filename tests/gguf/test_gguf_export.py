"""GGUF export without llama.cpp: the files' keys and tensors against the checkpoint's own
weights and tokenizer (the independent reference), the manifest and its verification, clear
errors and atomic output."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("transformers")

from medsam_agent_rt.export.gguf_export import (  # noqa: E402
    ExportError,
    export_policy,
    load_manifest,
)
from medsam_agent_rt.export.gguf_tensors import SafetensorsReader  # noqa: E402


def _fields(path):
    r = gguf.GGUFReader(str(path))
    return r, {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


def _tensor(reader, name):
    t = next(t for t in reader.tensors if t.name == name)
    return gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_text_gguf_keys_vocab_and_weights(family, tiny_checkpoints, gguf_export):
    from transformers import AutoConfig, AutoTokenizer

    src = tiny_checkpoints[family]
    out = gguf_export(family, "f32")
    m = load_manifest(out)
    reader, kv = _fields(out / m["files"]["model"]["name"])
    cfg = AutoConfig.from_pretrained(src).text_config
    arch = {"qwen3_vl": "qwen3vl", "qwen2_5_vl": "qwen2vl"}[family]
    assert kv["general.architecture"] == arch
    sections = (cfg.rope_parameters or {})["mrope_section"]
    assert kv[f"{arch}.rope.dimension_sections"] == [*sections, 0]
    assert kv[f"{arch}.block_count"] == cfg.num_hidden_layers
    assert kv[f"{arch}.attention.head_count_kv"] == cfg.num_key_value_heads
    if family == "qwen3_vl":
        assert kv["qwen3vl.n_deepstack_layers"] == 1
    # vocabulary: every id's token string as the HF tokenizer has it, control/user types
    tok = AutoTokenizer.from_pretrained(src)
    tokens = kv["tokenizer.ggml.tokens"]
    assert len(tokens) == cfg.vocab_size
    n = len(tok)
    assert tokens[:n] == tok.convert_ids_to_tokens(list(range(n)))
    types = kv["tokenizer.ggml.token_type"]
    assert types[tok.convert_tokens_to_ids("<|im_end|>")] == gguf.TokenType.CONTROL
    assert types[tok.convert_tokens_to_ids("<tool_call>")] == gguf.TokenType.USER_DEFINED
    assert all(t == gguf.TokenType.UNUSED for t in types[n:])
    assert kv["tokenizer.ggml.eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    merges = json.loads((src / "tokenizer.json").read_text())["model"]["merges"]
    assert len(kv["tokenizer.ggml.merges"]) == len(merges)
    # weights: exact copies in F32
    st = SafetensorsReader(src)
    prefix = "model.language_model." if family == "qwen3_vl" else "model."
    np.testing.assert_array_equal(
        _tensor(reader, "blk.1.attn_q.weight"),
        st.get(f"{prefix}layers.1.self_attn.q_proj.weight"),
    )
    np.testing.assert_array_equal(_tensor(reader, "output.weight"), st.get("lm_head.weight"))


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_mmproj_layout_matches_llama_cpp_conventions(family, tiny_checkpoints, gguf_export):
    src = tiny_checkpoints[family]
    out = gguf_export(family, "f32")
    m = load_manifest(out)
    reader, kv = _fields(out / m["files"]["mmproj"]["name"])
    cfg = json.loads((src / "config.json").read_text())["vision_config"]
    assert kv["general.architecture"] == "clip" and kv["general.type"] == "mmproj"
    want_proj = {"qwen3_vl": "qwen3vl_merger", "qwen2_5_vl": "qwen2.5vl_merger"}[family]
    assert kv["clip.projector_type"] == want_proj
    assert kv["clip.vision.patch_size"] == cfg["patch_size"]
    assert kv["clip.vision.block_count"] == cfg["depth"]
    st = SafetensorsReader(src)
    vp = "model.visual." if family == "qwen3_vl" else "visual."
    conv = st.get(vp + "patch_embed.proj.weight")  # (out, 3, 2, P, P)
    np.testing.assert_array_equal(_tensor(reader, "v.patch_embd.weight"), conv[:, :, 0])
    np.testing.assert_array_equal(_tensor(reader, "v.patch_embd.weight.1"), conv[:, :, 1])
    names = {t.name for t in reader.tensors}
    if family == "qwen3_vl":
        ds = cfg["deepstack_visual_indexes"]
        assert kv["clip.vision.is_deepstack_layers"] == [i in ds for i in range(cfg["depth"])]
        assert {f"v.deepstack.{ds[0]}.{p}.weight" for p in ("norm", "fc1", "fc2")} <= names
        assert "v.blk.0.attn_qkv.weight" in names  # the fused qkv llama's Qwen3-VL graph reads
        np.testing.assert_array_equal(
            _tensor(reader, "mm.2.weight"), st.get(vp + "merger.linear_fc2.weight")
        )
    else:
        assert kv["clip.vision.n_wa_pattern"] == cfg["fullatt_block_indexes"][0] + 1
        qkv = st.get(vp + "blocks.0.attn.qkv.weight")
        c = qkv.shape[0] // 3
        for i, part in enumerate("qkv"):
            np.testing.assert_array_equal(
                _tensor(reader, f"v.blk.0.attn_{part}.weight"), qkv[i * c : (i + 1) * c]
            )
        assert "v.blk.0.attn_qkv.weight" not in names


def test_f16_and_q8_0_types_and_error(tiny_checkpoints, gguf_export):
    q = gguf.GGMLQuantizationType
    for quant, want in (("f16", q.F16), ("q8_0", q.Q8_0)):
        out = gguf_export("qwen3_vl", quant)
        m = load_manifest(out)
        reader, _ = _fields(out / m["files"]["model"]["name"])
        t = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
        assert t.tensor_type == want
        norm = next(t for t in reader.tensors if t.name == "blk.0.attn_norm.weight")
        assert norm.tensor_type == q.F32
        ref = SafetensorsReader(tiny_checkpoints["qwen3_vl"]).get(
            "model.language_model.layers.0.mlp.up_proj.weight"
        )
        err = np.abs(_tensor(reader, t.name) - ref).max() / np.abs(ref).max()
        assert err < (1e-3 if quant == "f16" else 1e-2)
        mm, _ = _fields(out / m["files"]["mmproj"]["name"])
        pos = next(t for t in mm.tensors if t.name == "v.position_embd.weight")
        assert pos.tensor_type == q.F32  # position embeddings stay F32


def test_manifest_is_verified_at_load(gguf_export, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(gguf_export("qwen3_vl", "f16"), out)
    m = load_manifest(out)
    assert m["family"] == "qwen3_vl" and m["quant"] == "f16" and m["versions"]["gguf"]
    f = out / m["files"]["model"]["name"]
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="sha256"):
        load_manifest(out)
    load_manifest(out, verify=False)  # the caller may skip hashing
    f.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        load_manifest(out)


def _copy_with_config(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            cfg[section][field] = value
        else:
            cfg[section] = value
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_clear_errors_and_atomic_output(tiny_checkpoints, tmp_path):
    q3, q25 = tiny_checkpoints["qwen3_vl"], tiny_checkpoints["qwen2_5_vl"]
    bad = _copy_with_config(q3, tmp_path / "llava", model_type="llava")
    with pytest.raises(ExportError, match="model_type 'llava'.*qwen3_vl"):
        export_policy(bad, tmp_path / "o1", progress=False, parity=False)
    assert not (tmp_path / "o1").exists()
    win = _copy_with_config(q25, tmp_path / "win", vision_config__window_size=224)
    with pytest.raises(ExportError, match="112"):
        export_policy(win, tmp_path / "o2", progress=False, parity=False)
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    with pytest.raises(ExportError, match="merge"):
        export_policy(lora, tmp_path / "o3", progress=False, parity=False)
    with pytest.raises(ExportError, match="quant"):
        export_policy(q3, tmp_path / "o4", "q9_9", progress=False, parity=False)
    # a corrupt weight file fails mid-export: no output directory, no temporary left behind
    broken = tmp_path / "broken"
    shutil.copytree(q3, broken)
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError):
        export_policy(broken, tmp_path / "o5", progress=False, parity=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "llava", "lora", "win"]
    # an existing non-empty output is kept unless overwrite
    out = tmp_path / "o6"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        export_policy(q3, out, progress=False, parity=False)
    assert (out / "keep.txt").read_text() == "x"


def test_cli_export_policy(tiny_checkpoints, tmp_path, capsys):
    from medsam_agent_rt.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "export",
            "policy",
            str(tiny_checkpoints["qwen3_vl"]),
            "--out",
            str(out),
            "--no-parity",
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "gguf:" in capsys.readouterr().out
    assert load_manifest(out)["parity"]["measured"] is False
    rc = main(["export", "policy", str(tmp_path / "nope"), "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2 and "config.json" in capsys.readouterr().err


def test_fallback_chat_template_renders_the_protocol_prompt():
    """The ChatML template written when a checkpoint has none renders exactly qwen_chat's
    prompt (with the Jinja settings of transformers and llama-cpp-python)."""
    jinja2 = pytest.importorskip("jinja2")
    from medsam_agent_rt.export.gguf_vocab import CHATML_VL_TEMPLATE

    from medsam_agent_rt.policies.qwen_chat import render_chatml
    from medsam_agent_rt.protocol import PHRASE_BOX, assistant_text, build_messages

    img = np.zeros((8, 8, 3), np.uint8)
    answer = assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [1, 2, 300, 400]})
    msgs = build_messages("liver in abdomen CT", [img, img], [answer])
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    out = env.from_string(CHATML_VL_TEMPLATE).render(messages=msgs, add_generation_prompt=True)
    assert out == render_chatml(msgs, "qwen3_vl", add_generation_prompt=True)


@pytest.mark.slow
@pytest.mark.needs_llama
def test_k_quant_through_llama_quantiser(gguf_export):
    """q4_k_m comes from libllama's quantiser (file type 15); rows that are not a multiple of 256
    (these tiny models) fall back to the legacy types, as llama-quantize does. It loads and runs."""
    from medsam_agent_rt.export.gguf_parity import parity_messages

    from medsam_agent_rt.policies.gguf import GGUFPolicy

    out = gguf_export("qwen3_vl", "q4_k_m")
    m = load_manifest(out)
    reader, kv = _fields(out / m["files"]["model"]["name"])
    assert kv["general.file_type"] == 15 and m["quant"] == "q4_k_m"
    kinds = {t.tensor_type for t in reader.tensors if t.name.startswith("blk.")}
    assert kinds & {gguf.GGMLQuantizationType.Q5_0, gguf.GGMLQuantizationType.Q4_K}
    assert not any(p.name.endswith(".tmp.gguf") for p in out.iterdir())
    with GGUFPolicy(out, n_threads=2) as pol:
        logits = pol.prompt_logits(parity_messages(1))
    assert np.isfinite(logits).all()
