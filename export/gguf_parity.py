"""transformers vs llama.cpp on the same weights: prompt tokens, next-token logits and the image
embedding (vision tower + merger [+ deepstack mergers]) of one protocol turn.

Used by the exporter (the figures go into manifest.json) and by the tests. Needs torch,
transformers and llama-cpp-python; without them ``measure_parity`` records why it did not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PARITY_TARGET = "liver in abdomen CT"


def parity_view(size: int = 512, seed: int = 0) -> np.ndarray:
    """A deterministic (size, size, 3) uint8 view: smooth shapes + noise (not a flat image)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.3 * np.sin(6 * xx + 2 * yy)[..., None] * np.array([1.0, 0.6, 0.3])
    disk = ((xx - 0.55) ** 2 + (yy - 0.45) ** 2 < 0.04)[..., None] * 0.35
    img = base + disk + rng.normal(0, 0.03, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def parity_messages(n_views: int = 1) -> list[dict[str, Any]]:
    """A protocol conversation that ends with a user turn, with ``n_views`` views."""
    from medsam_agent_rt.protocol import PHRASE_BOX, assistant_text, build_messages

    views = [parity_view(seed=k) for k in range(n_views)]
    answers = [
        assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [100 + k, 200, 600, 700]})
        for k in range(n_views - 1)
    ]
    return build_messages(PARITY_TARGET, views, answers)


# llama.cpp as bundled by llama-cpp-python 0.3.36 does not read the RMS-norm epsilon of the
# qwen2vl architecture (its load_arch_hparams reads only the M-RoPE sections), so its Qwen2.5-VL
# text model normalises with eps = 0. Negligible on real weights, ~1 % on tiny random ones.
LLAMA_TEXT_RMS_EPS = {"qwen3_vl": None, "qwen2_5_vl": 0.0}


class HFReference:
    """The checkpoint in transformers (float32, CPU): logits and image embeddings.

    text_rms_eps: override the text decoder's RMS-norm epsilon (None: the checkpoint's), to
    compare with what llama.cpp computes (LLAMA_TEXT_RMS_EPS)."""

    def __init__(self, src: str | Path, text_rms_eps: float | None = None) -> None:
        import torch
        import transformers

        from medsam_agent_rt.policies.qwen_chat import (
            QwenChatEncoder,
            load_image_spec,
            qwen_vl_model_class,
        )

        self.torch = torch
        cfg = transformers.AutoConfig.from_pretrained(src, local_files_only=True)
        cls = qwen_vl_model_class(transformers, cfg.model_type, str(src), "parity runs")
        self.model = cls.from_pretrained(src, local_files_only=True, dtype=torch.float32).eval()
        if text_rms_eps is not None:
            for module in self.model.model.language_model.modules():
                if hasattr(module, "variance_epsilon"):
                    module.variance_epsilon = float(text_rms_eps)
        tok = transformers.AutoTokenizer.from_pretrained(src, local_files_only=True)
        self.encoder = QwenChatEncoder(tok, load_image_spec(src, cfg.vision_config, cfg.model_type))

    def inputs(self, messages: list[dict[str, Any]]) -> Any:
        return self.encoder.encode(messages, add_generation_prompt=True)

    def logits(self, messages: list[dict[str, Any]]) -> np.ndarray:
        kw = self.inputs(messages).model_kwargs()
        with self.torch.inference_mode():
            return self.model(**kw).logits[0, -1].float().numpy()

    def image_embedding(self, view: np.ndarray) -> np.ndarray:
        """(tokens, D) merger output, Qwen3-VL deepstack outputs concatenated on D (as mtmd)."""
        msgs = [{"role": "user", "content": [{"type": "image", "image": view}]}]
        kw = self.inputs(msgs).model_kwargs()
        with self.torch.inference_mode():
            out = self.model.model.visual(kw["pixel_values"], grid_thw=kw["image_grid_thw"])
        parts = [out.pooler_output, *(getattr(out, "deepstack_features", None) or [])]
        return self.torch.cat(parts, dim=-1).float().numpy()


def compare_logits(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """max |diff|, that relative to max |ref|, argmax agreement and top-5 overlap."""
    diff = float(np.abs(ref - got).max())
    top_r, top_g = np.argsort(-ref)[:5], np.argsort(-got)[:5]
    return {
        "max_abs": diff,
        "rel": diff / max(float(np.abs(ref).max()), 1e-12),
        "argmax_equal": bool(top_r[0] == top_g[0]),
        "top5_overlap": len(set(top_r.tolist()) & set(top_g.tolist())),
    }


def hf_prompt_ids(ref: HFReference, messages: list[dict[str, Any]]) -> list[Any]:
    """HF prompt ids with each run of <|image_pad|> collapsed into one ("img",) marker."""
    inputs = ref.inputs(messages)
    pad = ref.encoder.token_ids["<|image_pad|>"]
    out: list[Any] = []
    for t in inputs.input_ids.tolist():
        if t == pad:
            if not out or out[-1] != ("img",):
                out.append(("img",))
        else:
            out.append(int(t))
    return out


def gguf_prompt_ids(policy: Any, messages: list[dict[str, Any]]) -> list[Any]:
    return [("img",) if key[0] == "i" else int(key[1]) for key, _ in policy.items(messages)]


def measure_parity(
    src: str | Path, model: str | Path, mmproj: str | Path, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Parity figures of an export (see the module docstring) for manifest.json."""
    try:
        import llama_cpp  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        return {"measured": False, "reason": f"needs torch, transformers, llama-cpp-python ({e})"}
    from medsam_agent_rt.policies.gguf import GGUFPolicy
    from medsam_agent_rt.policies.gguf_files import spec_from_manifest

    ref = HFReference(src)
    messages = parity_messages(1)
    same_eps = HFReference(src, LLAMA_TEXT_RMS_EPS[manifest["family"]])
    with GGUFPolicy(model, mmproj=mmproj, image_spec=spec_from_manifest(manifest)) as pol:
        tokens_equal = hf_prompt_ids(ref, messages) == gguf_prompt_ids(pol, messages)
        got_logits = pol.prompt_logits(messages)
        logits = compare_logits(ref.logits(messages), got_logits)
        logits_eps = compare_logits(same_eps.logits(messages), got_logits)
        items = pol.items(messages)
        view = next(payload for key, payload in items if key[0] == "i")
        got = pol.runtime.image_embedding(view)
        want = ref.image_embedding(messages[1]["content"][0]["image"])
    emb = {
        "max_abs": float(np.abs(got - want).max()) if got.shape == want.shape else None,
        "shape_llama": list(got.shape),
        "shape_hf": list(want.shape),
    }
    if emb["max_abs"] is not None:
        emb["rel"] = emb["max_abs"] / max(float(np.abs(want).max()), 1e-12)
    return {
        "measured": True,
        "prompt": f"first protocol turn, one synthetic 512 view, target {PARITY_TARGET!r}",
        "reference": "transformers float32 (CPU)",
        "quant": manifest["quant"],
        "prompt_tokens_identical": bool(tokens_equal),
        "next_token_logits": logits,
        "next_token_logits_llama_rms_eps": {
            **logits_eps,
            "text_rms_eps": LLAMA_TEXT_RMS_EPS[manifest["family"]],
        },
        "image_embedding": emb,
    }
