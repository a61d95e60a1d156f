"""GGUFPolicy: a Qwen-VL policy exported to GGUF, run in-process by llama.cpp (extra ``gguf``).

Spec ``gguf:DIR`` (an ``export policy`` directory: manifest.json verified, text + mmproj GGUF) or
``gguf:FILE.gguf`` / a path ending in ``.gguf`` (the text model; the mmproj is the single
``mmproj*.gguf`` beside it, the image spec that of a manifest beside it or the family default).

Same prompt as the hf policy: the conversation is rendered by ``policies.qwen_chat`` (ChatML
pieces, text pieces tokenized apart, the assistant body apart from its header) and each view is
resized exactly as the HF processor resizes it (PIL bicubic to ``ImageSpec.resized_hw``) before
mtmd sees it, so mtmd never resizes.

The KV cache is KEPT across turns and episodes. Each ``act`` renders the whole conversation as
items (token ids and images keyed by a hash of their pixels), finds the longest prefix already
in the cache, drops the cache past it and evaluates only the rest: on turn k that is the
previous answer's ``<|im_end|>``, the new user turn (its overlay image and fixed text) and the
generation prompt; a retry of the same question evaluates nothing but the generation. Anything
else (another episode, an edited history) shares at least the system prompt. Positions follow
mtmd's own counters under M-RoPE (an image advances by max(h, w) of its merged grid).

Decoding: greedy by default, at most ``max_new_tokens`` (128), constrained by a GBNF grammar of
the protocol (``policies.gguf_grammar``) unless ``grammar=False``. ``info`` per turn: token_ids,
logprobs (softmax of the raw logits, /T when sampling), finish_reason, prompt_tokens,
image_tokens, evaluated_tokens / reused_tokens / images_encoded (this turn's prefill work),
temperature, retry, prefill_s, ttft_s, generate_s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.policies.base import PolicyTurn
from medsam_agent_rt.policies.gguf_files import family_of, resolve_gguf
from medsam_agent_rt.policies.qwen_chat import (
    FAMILY_SPECS,
    IM_END,
    IM_START,
    IMAGE_PAD,
    VISION_END,
    VISION_START,
    ImageSpec,
    _pieces,
)

MAX_ACTIONS = 5  # PROTOCOL.md / SessionConfig.max_actions: the episode's worst case


@dataclass(frozen=True)
class _Item:
    key: Any  # ("t", id) or ("i", pixel hash)
    pos: int  # first position
    end: int  # next position


class GGUFPolicy:
    """Qwen-VL policy on llama.cpp with a kept KV cache (see the module docstring).

    Args:
        path: export directory or text .gguf file.
        n_ctx: context size; None = the episode's worst case (``max_actions`` views and answers
            of ``max_new_tokens``) rounded up to 256. A smaller value is refused.
        n_threads: CPU threads (0: llama.cpp's default). n_gpu_layers: text layers on the GPU
            (-1: all). mmproj_gpu: vision tower on the GPU. Both need a GPU build of llama.cpp.
        max_new_tokens, temperature, retry_temperature, seed: as the hf policy.
        grammar: constrain decoding to the protocol's grammar.
        max_actions: actions per episode the context must hold.
        verify: re-hash the GGUF files against the manifest at load.
        mmproj, image_spec: for a bare .gguf path, the mmproj file and the image spec (default:
            the single mmproj*.gguf beside it; the manifest's spec, else the family's).
    """

    name = "gguf"
    requires_gt = False

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int = 0,
        n_gpu_layers: int = 0,
        mmproj_gpu: bool = True,
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        retry_temperature: float | None = None,
        seed: int = 0,
        grammar: bool = True,
        max_actions: int = MAX_ACTIONS,
        verify: bool = True,
        verbose: bool = False,
        mmproj: str | Path | None = None,
        image_spec: ImageSpec | None = None,
    ) -> None:
        from medsam_agent_rt.policies.gguf_grammar import protocol_grammar
        from medsam_agent_rt.policies.gguf_runtime import LlamaRuntime, import_llama

        import_llama()
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        for n, t in (("temperature", temperature), ("retry_temperature", retry_temperature)):
            if t is not None and not t >= 0:
                raise ValueError(f"{n} must be >= 0, got {t}")
        found = resolve_gguf(path, mmproj=mmproj, verify=verify)
        if image_spec is not None:
            found["spec"], found["family"] = image_spec, image_spec.family
        self.path, self.manifest = Path(path), found["manifest"]
        self.max_new_tokens, self.max_actions = int(max_new_tokens), int(max_actions)
        self.temperature = float(temperature)
        self.retry_temperature = None if retry_temperature is None else float(retry_temperature)
        self.seed, self._calls = int(seed), 0
        self.grammar = protocol_grammar() if grammar else None
        # the vocabulary alone first: it sizes the context
        rt = LlamaRuntime(found["model"], None, vocab_only=True, verbose=verbose)
        try:
            family = found["family"] or family_of(rt)
            self.family = family
            self.image_spec: ImageSpec = found["spec"] or FAMILY_SPECS[family]
            self._ids = {t: rt.token_id(t) for t in (IM_START, IM_END, VISION_START, VISION_END)}
            need = self.worst_case_tokens(rt)
        finally:
            rt.close()
        if n_ctx is None:
            n_ctx = -(-need // 256) * 256
        if n_ctx < need:
            raise ValueError(
                f"n_ctx={n_ctx} is below this policy's worst-case episode of {need} tokens "
                f"({self.max_actions} views of {self.image_tokens} image tokens, their turn texts "
                f"and {self.max_new_tokens}-token answers); pass n_ctx >= {need}"
            )
        self.runtime = LlamaRuntime(
            found["model"],
            found["mmproj"],
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            mmproj_gpu=mmproj_gpu,
            verbose=verbose,
        )
        self.n_ctx = self.runtime.n_ctx
        self._cache: list[_Item] = []
        self._text_cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------------- sizing

    @property
    def image_tokens(self) -> int:
        from medsam_agent_rt.protocol import VIEW_SIZE

        return self.image_spec.num_image_tokens(VIEW_SIZE, VIEW_SIZE)

    def worst_case_tokens(self, rt: Any = None) -> int:
        """Tokens of a conversation with ``max_actions`` views and full-length answers."""
        from medsam_agent_rt.protocol.text import FOLLOWUP_TURN_TEXT, SYSTEM_PROMPT, first_turn_text

        rt = rt or self.runtime
        fixed = len(rt.tokenize(f"system\n{SYSTEM_PROMPT}")) + 64
        fixed += len(rt.tokenize("user\n" + first_turn_text("x " * 40)))
        per_turn = self.image_tokens + len(rt.tokenize(FOLLOWUP_TURN_TEXT)) + 12
        return fixed + self.max_actions * (per_turn + self.max_new_tokens)

    # ------------------------------------------------------------------------- Policy protocol

    def reset(self, task: Any = None) -> None:
        """Start an episode. The KV cache is kept: the next prompt reuses its common prefix."""

    def act(self, observation: Any) -> PolicyTurn:
        """One assistant turn for ``observation.messages`` (ending with a user turn)."""
        from medsam_agent_rt.policies.hf import turn_request

        messages, retry, temperature = turn_request(
            observation, self.temperature, self.retry_temperature
        )
        t0 = time.perf_counter()
        work = self.prefill(messages)
        t1 = time.perf_counter()
        ids, logprobs, ttft = self._generate(temperature)
        t2 = time.perf_counter()
        stopped = bool(ids) and self.runtime.is_eog(ids[-1])
        text = self.runtime.detokenize(ids[:-1] if stopped else ids)
        info = {
            "backend": "gguf",
            "family": self.family,
            "token_ids": ids,
            "logprobs": logprobs,
            "finish_reason": "stop" if stopped else "length",
            **work,
            "temperature": temperature,
            "retry": retry,
            "grammar": self.grammar is not None,
            "prefill_s": t1 - t0,
            "ttft_s": t1 - t0 + ttft,
            "generate_s": t2 - t1,
        }
        return PolicyTurn(text=text, info=info)

    # ------------------------------------------------------------------------- prompt

    def items(self, messages: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
        """The conversation as (key, payload): ("t", id) tokens and ("i", hash) images whose
        payload is the view resized as the HF processor resizes it."""
        import hashlib

        pieces, images = _pieces(messages, self.family, True)
        out: list[tuple[Any, Any]] = []
        k = 0
        for is_tok, s, _ in pieces:
            if is_tok and s == IMAGE_PAD:
                img = self._resize(images[k])
                k += 1
                digest = hashlib.sha256(img.tobytes() + repr(img.shape).encode()).digest()
                out.append((("i", digest), img))
            elif is_tok:
                out.append((("t", self._ids[s]), None))
            else:
                if s not in self._text_cache:
                    self._text_cache[s] = self.runtime.tokenize(s)
                out += [(("t", t), None) for t in self._text_cache[s]]
        return out

    def _resize(self, image: np.ndarray) -> np.ndarray:
        h, w = self.image_spec.resized_hw(*image.shape[:2])
        if (h, w) == image.shape[:2]:
            return np.ascontiguousarray(image)
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))

    def prefill(self, messages: list[dict[str, Any]]) -> dict[str, int]:
        """Bring the KV cache to ``messages`` + generation prompt, evaluating only what is not
        cached; returns the counts of this prefill."""
        rt = self.runtime
        items = self.items(messages)
        n_img = sum(1 for key, _ in items if key[0] == "i")
        img_tokens = sum(
            self.image_spec.num_image_tokens(*p.shape[:2]) for key, p in items if key[0] == "i"
        )  # the views are already at the processor's size: this is their exact count
        total = len(items) - n_img + img_tokens
        if total + self.max_new_tokens > self.n_ctx:
            raise ValueError(
                f"the conversation needs {total} + {self.max_new_tokens} tokens but n_ctx is "
                f"{self.n_ctx}: build the policy with a larger n_ctx or max_actions"
            )
        common = 0
        for (key, _), cached in zip(items, self._cache):
            if key != cached.key:
                break
            common += 1
        if common == len(items):  # identical prompt (a retry): re-decode the last token
            common -= 1
        if common < len(self._cache):
            rt.remove_from(self._cache[common].pos)
            del self._cache[common:]
        pos = self._cache[-1].end if self._cache else 0
        before_tokens, before_images = rt.tokens_evaluated, rt.images_encoded
        pending: list[int] = []
        for i in range(common, len(items) + 1):
            key, payload = items[i] if i < len(items) else (None, None)
            if key is not None and key[0] == "t":
                pending.append(key[1])
                continue
            if pending:
                end = rt.eval_tokens(pending, pos, logits_last=key is None)
                self._cache += [
                    _Item(("t", t), pos + j, pos + j + 1) for j, t in enumerate(pending)
                ]
                pos, pending = end, []
            if key is not None:
                chunk = rt.image_chunk(payload)
                try:
                    want = self.image_spec.num_image_tokens(*payload.shape[:2])
                    if chunk.n_tokens != want:
                        raise RuntimeError(
                            f"mtmd made {chunk.n_tokens} tokens of a {payload.shape[:2]} view, "
                            f"the HF processor {want}: the mmproj does not match the image spec"
                        )
                    end = rt.eval_image(chunk, pos)
                finally:
                    rt.free_chunk(chunk)
                self._cache.append(_Item(key, pos, end))
                pos = end
        return {
            "prompt_tokens": int(total),
            "image_tokens": int(img_tokens),
            "evaluated_tokens": rt.tokens_evaluated - before_tokens,
            "reused_tokens": int(total - (rt.tokens_evaluated - before_tokens)),
            "images_encoded": rt.images_encoded - before_images,
        }

    def _generate(self, temperature: float) -> tuple[list[int], list[float], float]:
        """Sample up to max_new_tokens after a prefill; each accepted token is decoded into
        the cache (the final stop token is not). Returns ids, log-probs, time to first token."""
        rt = self.runtime
        seed = self.seed + self._calls
        self._calls += 1
        sampler = rt.sampler(self.grammar, temperature, seed)
        ids: list[int] = []
        logprobs: list[float] = []
        ttft = 0.0
        t0 = time.perf_counter()
        pos = self._cache[-1].end
        try:
            for _ in range(self.max_new_tokens):
                logits = rt.logits()
                tok = rt.sample(sampler)
                if not ids:
                    ttft = time.perf_counter() - t0
                z = logits / temperature if temperature > 0 else logits
                z = z - z.max()
                logprobs.append(float(z[tok] - np.log(np.exp(z).sum())))
                ids.append(tok)
                if rt.is_eog(tok) or len(ids) == self.max_new_tokens:
                    break
                pos = rt.eval_tokens([tok], pos)
                self._cache.append(_Item(("t", tok), pos - 1, pos))
        finally:
            rt.free_sampler(sampler)
        return ids, logprobs, ttft

    # ------------------------------------------------------------------------- lifetime

    def prompt_logits(self, messages: list[dict[str, Any]]) -> np.ndarray:
        """(n_vocab,) logits after ``messages`` + generation prompt (parity checks)."""
        self.prefill(messages)
        return self.runtime.logits()

    def clear_cache(self) -> None:
        """Forget the KV cache (the next turn is evaluated from scratch)."""
        self.runtime.remove_from(0)
        self._cache.clear()

    def close(self) -> None:
        """Free llama.cpp's model, context and mmproj."""
        if getattr(self, "runtime", None) is not None:
            self.runtime.close()
            self.runtime = None  # type: ignore[assignment]

    def __enter__(self) -> GGUFPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GGUFPolicy({str(self.path)!r}, family={self.family!r}, n_ctx={getattr(self, 'n_ctx', None)})"
