"""A local Qwen3-VL / Qwen2.5-VL checkpoint -> text GGUF + mmproj GGUF + manifest.json.

``export_policy(src, out, quant)`` writes, atomically (the directory appears complete or not at
all)::

    OUT/model-<quant>.gguf   text decoder (qwen3vl | qwen2vl architecture) + tokenizer
    OUT/mmproj-<f16|f32>.gguf vision tower + projector (clip, qwen3vl_merger | qwen2.5vl_merger)
    OUT/manifest.json        family, image spec, token ids, hashes, versions, measured parity

Quantisation: ``f32``, ``f16`` and ``q8_0`` are written directly with gguf-py (norms and biases
stay F32; Q8_0 needs rows that are a multiple of 32 and falls back to F16 otherwise); K-quants
and the other llama.cpp types (``q4_k_m``, ``q5_k_m``, ``q6_k``, ``q4_0``, ...) are produced from
the F16 file by libllama's ``llama_model_quantize`` (llama-cpp-python). The mmproj stays F16
(F32 for ``f32``), as llama.cpp's own converter ships it next to quantised text models.

Parity (measured when llama-cpp-python, torch and transformers are all installed, else recorded
as not measured): transformers vs llama.cpp logits of the first protocol turn (system prompt +
one synthetic 512 view + turn text), and the vision tower output vs the mmproj embedding.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from medsam_agent_rt.export.gguf_manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ExportedPolicy,
    ExportError,
    load_manifest,
    sha256_file,
    versions,
)

DIRECT_QUANTS = ("f32", "f16", "q8_0")
LLAMA_QUANTS = {  # name -> llama_ftype (llama.h)
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 8,
    "q5_1": 9,
    "q2_k": 10,
    "q3_k_m": 12,
    "q4_k_s": 14,
    "q4_k_m": 15,
    "q5_k_s": 16,
    "q5_k_m": 17,
    "q6_k": 18,
}
QUANTS = (*DIRECT_QUANTS, *LLAMA_QUANTS)
ARCHITECTURES = {"qwen3_vl": "qwen3vl", "qwen2_5_vl": "qwen2vl"}
PROJECTORS = {"qwen3_vl": "qwen3vl_merger", "qwen2_5_vl": "qwen2.5vl_merger"}
LLAMA_QWEN25_WINDOW = 112  # llama.cpp's Qwen2.5-VL graph hard-codes a 112-px attention window


# ----------------------------------------------------------------------------- checkpoint


def read_checkpoint_config(src: str | Path) -> dict[str, Any]:
    """config.json of a supported checkpoint, with ``text`` and ``vision`` dicts resolved."""
    src = Path(src)
    if (src / "adapter_config.json").is_file() and not (src / "config.json").is_file():
        raise ExportError(
            f"{src} is a LoRA adapter, not a model: merge it into its base model first "
            "(peft merge_and_unload + save_pretrained), then export the merged directory"
        )
    cfg_file = src / "config.json"
    if not cfg_file.is_file():
        raise ExportError(f"{src} is not a Hugging Face checkpoint directory (no config.json)")
    cfg = json.loads(cfg_file.read_text())
    family = cfg.get("model_type")
    if family not in ARCHITECTURES:
        raise ExportError(
            f"checkpoint {src} is model_type {family!r}; the GGUF exporter supports "
            f"{tuple(ARCHITECTURES)} (Qwen3-VL dense, Qwen2.5-VL)"
        )
    text = {**cfg, **cfg.get("text_config", {})}
    vision = dict(cfg.get("vision_config") or {})
    if not vision:
        raise ExportError(f"checkpoint {src} has no vision_config")
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    sections = rope.get("mrope_section")
    if not sections or len(sections) > 4:
        raise ExportError(f"checkpoint {src}: expected 3 M-RoPE sections, got {sections!r}")
    head_dim = int(text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"])
    if 2 * sum(sections) != head_dim:
        raise ExportError(
            f"checkpoint {src}: M-RoPE sections {sections} must sum to head_dim/2 = {head_dim // 2}"
        )
    if vision.get("temporal_patch_size", 2) != 2:
        raise ExportError("llama.cpp's Qwen-VL graphs need temporal_patch_size 2")
    if family == "qwen2_5_vl":
        window = int(vision.get("window_size", LLAMA_QWEN25_WINDOW))
        if window != LLAMA_QWEN25_WINDOW:
            raise ExportError(
                f"checkpoint {src}: vision window_size {window} px; llama.cpp's Qwen2.5-VL graph "
                f"uses a fixed {LLAMA_QWEN25_WINDOW}-px window, the export would be wrong"
            )
        full = list(vision.get("fullatt_block_indexes") or [])
        if not full or any(b - a != full[0] + 1 for a, b in zip(full, full[1:])):
            raise ExportError(
                f"checkpoint {src}: fullatt_block_indexes {full} is not a regular pattern "
                "(every n-th block) as llama.cpp's n_wa_pattern needs"
            )
        if vision.get("intermediate_size") == vision.get("hidden_size"):
            raise ExportError("vision intermediate_size == hidden_size is misread by llama.cpp")
    return {
        "family": family,
        "config": cfg,
        "text": text,
        "vision": vision,
        "sections": [int(s) for s in sections] + [0] * (4 - len(sections)),
        "head_dim": head_dim,
        "rope_theta": float(rope.get("rope_theta", text.get("rope_theta", 1e6))),
    }


# ----------------------------------------------------------------------------- writers


def _target_type(name: str, data: np.ndarray, quant: str, vision: bool) -> Any:
    import gguf

    q = gguf.GGMLQuantizationType
    if quant == "f32" or data.ndim < 2 or "position_embd" in name:
        return q.F32
    if quant == "q8_0" and not vision and data.shape[-1] % 32 == 0:
        return q.Q8_0
    return q.F16


def _add(writer: Any, name: str, data: np.ndarray, qtype: Any) -> None:
    import gguf

    q = gguf.GGMLQuantizationType
    if qtype == q.F32:
        writer.add_tensor(name, np.ascontiguousarray(data, np.float32))
    elif qtype == q.F16:
        writer.add_tensor(name, np.ascontiguousarray(data, np.float16))
    else:
        packed = gguf.quants.quantize(np.ascontiguousarray(data, np.float32), qtype)
        writer.add_tensor(name, packed, raw_dtype=qtype)


def write_text_gguf(src: Path, info: dict[str, Any], path: Path, quant: str, steps: Any) -> None:
    """The text decoder + tokenizer as one GGUF file (``quant`` in DIRECT_QUANTS)."""
    import gguf
    from medsam_agent_rt.export.gguf_tensors import SafetensorsReader, text_tensors
    from medsam_agent_rt.export.gguf_vocab import read_tokenizer, write_vocab

    t, family = info["text"], info["family"]
    arch = ARCHITECTURES[family]
    n_layers = int(t["num_hidden_layers"])
    vocab = read_tokenizer(src, int(t["vocab_size"]))
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(src.name)
    w.add_file_type({"f32": 0, "f16": 1, "q8_0": 7}[quant])
    w.add_context_length(int(t.get("max_position_embeddings", 32768)))
    w.add_embedding_length(int(t["hidden_size"]))
    w.add_feed_forward_length(int(t["intermediate_size"]))
    w.add_block_count(n_layers)
    w.add_head_count(int(t["num_attention_heads"]))
    w.add_head_count_kv(int(t.get("num_key_value_heads", t["num_attention_heads"])))
    w.add_key_length(info["head_dim"])
    w.add_value_length(info["head_dim"])
    w.add_rope_dimension_count(info["head_dim"])
    w.add_rope_freq_base(info["rope_theta"])
    w.add_rope_dimension_sections(info["sections"])
    w.add_layer_norm_rms_eps(float(t.get("rms_norm_eps", 1e-6)))
    w.add_vocab_size(int(t["vocab_size"]))
    if family == "qwen3_vl":
        w.add_num_deepstack_layers(len(info["vision"].get("deepstack_visual_indexes") or []))
    write_vocab(w, vocab)
    reader = SafetensorsReader(src)
    model_arch = getattr(gguf.MODEL_ARCH, arch.upper())
    tie = bool(info["config"].get("tie_word_embeddings", t.get("tie_word_embeddings", False)))
    for name, data in text_tensors(reader, model_arch, n_layers, tie):
        _add(w, name, data, _target_type(name, data, quant, vision=False))
    steps.step("writing text GGUF")
    _flush(w)


def write_mmproj_gguf(src: Path, info: dict[str, Any], path: Path, quant: str, steps: Any) -> None:
    """The vision tower + merger as an mmproj GGUF (F16, or F32 when ``quant == "f32"``)."""
    import gguf
    from medsam_agent_rt.export.gguf_tensors import SafetensorsReader, vision_tensors

    v, family = info["vision"], info["family"]
    pre = _preprocessor(src)
    depth, patch = int(v["depth"]), int(v["patch_size"])
    deepstack = [int(i) for i in v.get("deepstack_visual_indexes") or []]
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_name(f"{src.name} mmproj")
    w.add_file_type(0 if quant == "f32" else 1)
    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type(PROJECTORS[family])
    w.add_vision_projection_dim(int(info["text"]["hidden_size"]))
    if family == "qwen3_vl":
        image_size = int(round(float(v.get("num_position_embeddings", 2304)) ** 0.5)) * patch
    else:
        image_size = int(v.get("image_size", 560))
    w.add_vision_image_size(image_size)
    w.add_vision_patch_size(patch)
    w.add_vision_embedding_length(int(v["hidden_size"]))
    w.add_vision_feed_forward_length(int(v["intermediate_size"]))
    w.add_vision_block_count(depth)
    w.add_vision_head_count(int(v["num_heads"]))
    w.add_vision_image_mean([float(x) for x in pre["image_mean"]])
    w.add_vision_image_std([float(x) for x in pre["image_std"]])
    w.add_vision_spatial_merge_size(int(v.get("spatial_merge_size", 2)))
    w.add_vision_attention_layernorm_eps(1e-6)
    if family == "qwen3_vl":
        w.add_vision_use_gelu(True)
        w.add_vision_is_deepstack_layers([i in deepstack for i in range(depth)])
    else:
        w.add_vision_use_silu(True)
        w.add_vision_n_wa_pattern(int(v["fullatt_block_indexes"][0]) + 1)
    reader = SafetensorsReader(src)
    for name, data in vision_tensors(reader, family, depth, deepstack):
        _add(w, name, data, _target_type(name, data, quant, vision=True))
    steps.step("writing mmproj GGUF")
    _flush(w)


def _flush(w: Any) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _preprocessor(src: Path) -> dict[str, Any]:
    f = src / "preprocessor_config.json"
    pre = json.loads(f.read_text()) if f.is_file() else {}
    for key in ("image_mean", "image_std"):
        if len(pre.get(key) or []) != 3:
            raise ExportError(f"{f} must give 3 values for {key} (the image normalisation)")
    return pre


def llama_quantize(src: Path, dst: Path, quant: str, threads: int = 0) -> None:
    """``quant`` (a LLAMA_QUANTS name) of the GGUF ``src`` written to ``dst`` by libllama."""
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError(
            f"--quant {quant} uses llama.cpp's quantiser: pip install 'medsam-agent-rt[gguf]'"
        ) from e
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_QUANTS[quant]
    params.nthread = int(threads)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0 or not dst.is_file():
        raise ExportError(f"llama_model_quantize({quant}) failed with code {rc}")


# ----------------------------------------------------------------------------- export


class _Steps:
    def __init__(self, enabled: bool) -> None:
        self.enabled, self.t0 = enabled, time.perf_counter()

    def step(self, what: str) -> None:
        if self.enabled:
            dt = time.perf_counter() - self.t0
            print(f"export policy [{dt:6.1f}s] {what}", file=sys.stderr, flush=True)


def export_policy(
    src: str | Path,
    out: str | Path,
    quant: str = "f16",
    *,
    overwrite: bool = False,
    progress: bool = True,
    parity: bool = True,
) -> ExportedPolicy:
    """Export the checkpoint ``src`` to ``out`` (see the module docstring); returns the export
    as loaded back (hashes verified)."""
    from medsam_agent_rt.export.gguf_parity import measure_parity

    from medsam_agent_rt.io.atomic import atomic_directory
    from medsam_agent_rt.policies.qwen_chat import image_spec

    quant = quant.lower()
    if quant not in QUANTS:
        raise ExportError(f"quant must be one of {QUANTS}, got {quant!r}")
    src = Path(src)
    info = read_checkpoint_config(src)
    spec = image_spec(
        info["family"],
        vision_config=SimpleNamespace(**info["vision"]),
        preprocessor=_pre_or_none(src),
    )
    steps = _Steps(progress)
    steps.step(f"{src} ({info['family']}) -> {out} [{quant}]")
    model_name, mmproj_name = (
        f"model-{quant}.gguf",
        f"mmproj-{'f32' if quant == 'f32' else 'f16'}.gguf",
    )
    with atomic_directory(out, overwrite=overwrite) as tmp:
        if quant in DIRECT_QUANTS:
            write_text_gguf(src, info, tmp / model_name, quant, steps)
        else:
            write_text_gguf(src, info, tmp / "model-f16.tmp.gguf", "f16", steps)
            steps.step(f"quantising with llama.cpp ({quant})")
            llama_quantize(tmp / "model-f16.tmp.gguf", tmp / model_name, quant)
            (tmp / "model-f16.tmp.gguf").unlink()
        write_mmproj_gguf(src, info, tmp / mmproj_name, quant, steps)
        files = {
            role: {
                "name": name,
                "sha256": sha256_file(tmp / name),
                "bytes": (tmp / name).stat().st_size,
            }
            for role, name in (("model", model_name), ("mmproj", mmproj_name))
        }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "family": info["family"],
            "architecture": ARCHITECTURES[info["family"]],
            "projector": PROJECTORS[info["family"]],
            "quant": quant,
            "source": {
                "path": str(src.resolve()),
                "config_sha256": sha256_file(src / "config.json"),
                "weights_sha256": {
                    p.name: sha256_file(p) for p in sorted(src.glob("*.safetensors"))
                },
            },
            "image_spec": {
                "patch_size": spec.patch_size,
                "merge_size": spec.merge_size,
                "temporal_patch_size": spec.temporal_patch_size,
                "image_mean": list(spec.image_mean),
                "image_std": list(spec.image_std),
                "min_pixels": spec.min_pixels,
                "max_pixels": spec.max_pixels,
            },
            "files": files,
            "versions": versions(),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if parity:
            steps.step("measuring parity (transformers vs llama.cpp)")
            manifest["parity"] = measure_parity(src, tmp / model_name, tmp / mmproj_name, manifest)
        else:
            manifest["parity"] = {"measured": False, "reason": "skipped (parity=False)"}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        for extra in ("README.md", "NOTICE", "LICENSE"):
            if (src / extra).is_file():
                shutil.copyfile(src / extra, tmp / f"SOURCE-{extra}")
    steps.step("done")
    return ExportedPolicy(Path(out), load_manifest(out))


def _pre_or_none(src: Path) -> dict[str, Any] | None:
    f = src / "preprocessor_config.json"
    return json.loads(f.read_text()) if f.is_file() else None
