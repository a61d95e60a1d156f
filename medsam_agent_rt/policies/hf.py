"""HFPolicy: a Qwen3-VL or Qwen2.5-VL checkpoint run with transformers (extra ``hf``).

Loads a local directory only (``local_files_only=True``; nothing is downloaded); the family comes
from ``config.model_type``. Each ``act`` renders the whole conversation so far (all earlier turns
and images) with ``policies.qwen_chat`` -- the same tokens SFT trains on -- and generates at most
``max_new_tokens`` (128, PROTOCOL.md) until ``<|im_end|>`` / ``<|endoftext|>``.

Decoding is greedy by default. The checkpoint's generation_config.json (real Qwen checkpoints ship
sampling defaults: do_sample, top_k 20, top_p 0.8, repetition penalty ...) is ignored on purpose:
the protocol decodes greedily. ``temperature > 0`` samples from softmax(logits / T) with no top-k /
top-p (RL rollouts, PROTOCOL.md: temperature 1.0), seeded per call so runs repeat.

Model inputs per family (transformers 5.x): input_ids, attention_mask, pixel_values,
image_grid_thw and mm_token_type_ids (1 on <|image_pad|>). Qwen3-VL raises without
mm_token_type_ids; Qwen2.5-VL silently falls back to 1-D positions (wrong M-RoPE) without it,
so both always get it.

``info`` of every turn: token_ids (generated ids, stop token included), logprobs (their log
probabilities under the distribution they were drawn from: softmax(logits) greedy,
softmax(logits / T) sampled), finish_reason ("stop" | "length"), prompt_tokens, image_tokens,
temperature, encode_s and generate_s (seconds). No KV cache is kept across turns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsam_agent_rt.policies.base import PolicyTurn
from medsam_agent_rt.policies.qwen_chat import (
    IM_END,
    ChatInputs,
    QwenChatEncoder,
    load_image_spec,
    qwen_vl_model_class,
)

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def _import_hf() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as e:
        raise ImportError(
            "the hf policy needs torch and transformers: pip install 'medsam-agent-rt[hf,torch]'"
        ) from e
    return torch, transformers


def observation_messages(observation: Any) -> list[dict[str, Any]]:
    """The protocol messages an observation carries (``.messages`` or ``["messages"]``)."""
    msgs = getattr(observation, "messages", None)
    if msgs is None and isinstance(observation, Mapping):
        msgs = observation.get("messages")
    if not isinstance(msgs, list | tuple):
        raise TypeError(
            "observation must carry `messages` (a list in the protocol.messages structure), "
            f"got {type(observation).__name__}"
        )
    return list(msgs)


def turn_request(
    observation: Any, temperature: float, retry_temperature: float | None
) -> tuple[list[dict[str, Any]], bool, float]:
    """(messages ending with a user turn, whether this is a retry, the sampling temperature:
    ``retry_temperature`` on a retry when set) for one local-model turn."""
    messages = observation_messages(observation)
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("observation messages must end with a user turn for the policy to answer")
    retry = bool(getattr(observation, "retry", False))
    if retry and retry_temperature is not None:
        temperature = retry_temperature
    return messages, retry, temperature


class HFPolicy:
    """Qwen-VL policy from a local checkpoint directory.

    Args:
        path: directory with config.json, weights, tokenizer and preprocessor_config.json.
        device: "cpu", "cuda" or "cuda:N".
        dtype: "float32" or "bfloat16" (also "float16").
        max_new_tokens: generation budget per turn (protocol: 128).
        temperature: 0 = greedy (protocol); > 0 samples (RL rollouts).
        retry_temperature: temperature of a turn whose observation has ``retry`` set; None keeps
            ``temperature`` (then a greedy retry repeats the refused output exactly).
        seed: sampling seed; call k of this policy samples with seed + k.
        min_pixels, max_pixels: override the family's fixed image pixel bounds (qwen_chat).
    """

    name = "hf"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        max_new_tokens: int = 128,
        temperature: float = 0.0,
        retry_temperature: float | None = None,
        seed: int = 0,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> None:
        torch, transformers = _import_hf()
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"path must be a local Hugging Face checkpoint directory with config.json, got {path}"
            )
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        for n, t in (("temperature", temperature), ("retry_temperature", retry_temperature)):
            if t is not None and not t >= 0:
                raise ValueError(f"{n} must be >= 0, got {t}")
        try:
            self.device = torch.device(device)
        except RuntimeError as e:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} requested but torch sees no CUDA GPU")
        self.dtype = getattr(torch, _DTYPES[dtype])

        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        self.family: str = config.model_type
        model_cls = qwen_vl_model_class(
            transformers, self.family, f"checkpoint {path}", "the hf policy runs"
        )
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        spec = load_image_spec(
            path, config.vision_config, self.family, min_pixels=min_pixels, max_pixels=max_pixels
        )
        self.encoder = QwenChatEncoder(self.tokenizer, spec)
        self.model = model_cls.from_pretrained(path, local_files_only=True, dtype=self.dtype)
        self.model.to(self.device).eval()

        stop = [self.encoder.token_ids[IM_END]]
        eot = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        if eot is not None and eot != getattr(self.tokenizer, "unk_token_id", None):
            stop.append(int(eot))
        self.stop_token_ids = stop
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else stop[-1]
        # The checkpoint's sampling defaults must not leak into protocol decoding.
        self.model.generation_config = transformers.GenerationConfig(
            eos_token_id=stop, pad_token_id=self.pad_token_id
        )
        self.path = path
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.retry_temperature = None if retry_temperature is None else float(retry_temperature)
        self.seed = int(seed)
        self._calls = 0
        self.last_inputs: ChatInputs | None = None

    # ------------------------------------------------------------------------- Policy protocol

    def reset(self, task: Any = None) -> None:
        """Start an episode. Nothing is cached across turns, so nothing to clear but the record."""
        self.last_inputs = None

    def act(self, observation: Any) -> PolicyTurn:
        """One assistant turn for ``observation.messages`` (ending with a user turn)."""
        messages, retry, temperature = turn_request(
            observation, self.temperature, self.retry_temperature
        )
        t0 = time.perf_counter()
        inputs = self.encoder.encode(messages, add_generation_prompt=True)
        self.last_inputs = inputs
        t1 = time.perf_counter()
        ids, logprobs = self.generate(inputs, temperature=temperature)
        t2 = time.perf_counter()
        stopped = bool(ids) and ids[-1] in self.stop_token_ids
        body = ids[:-1] if stopped else ids
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        info = {
            "backend": "hf",
            "family": self.family,
            "token_ids": ids,
            "logprobs": logprobs,
            "finish_reason": "stop" if stopped else "length",
            "prompt_tokens": int(inputs.input_ids.size),
            "image_tokens": int(inputs.mm_token_type_ids.sum()),
            "temperature": temperature,
            "retry": retry,
            "encode_s": t1 - t0,
            "generate_s": t2 - t1,
        }
        return PolicyTurn(text=text, info=info)

    # ------------------------------------------------------------------------- generation

    def generate(
        self, inputs: ChatInputs, *, temperature: float = 0.0
    ) -> tuple[list[int], list[float]]:
        """Generated token ids (stop token included when reached) and their log-probs."""
        torch, transformers = _import_hf()
        if self.model is None:
            raise RuntimeError(f"{self!r} is closed: build a new policy to generate")
        kw = inputs.model_kwargs(self.device, self.dtype)
        sample = temperature > 0
        gen = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sample,
            "eos_token_id": self.stop_token_ids,
            "pad_token_id": self.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if sample:
            gen.update(temperature=temperature, top_k=0, top_p=1.0)
        cfg = transformers.GenerationConfig(**gen)
        seed = self.seed + self._calls
        self._calls += 1
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.generate(**kw, generation_config=cfg)
        new = out.sequences[0, kw["input_ids"].shape[1] :]
        logits = torch.stack(out.logits, dim=1)[0, : new.numel()].float()
        if sample:
            logits = logits / temperature
        lp = torch.log_softmax(logits, dim=-1).gather(-1, new[:, None])[:, 0]
        ids = [int(t) for t in new.tolist()]
        # generate() stops at the first stop token; keep nothing after it.
        for i, t in enumerate(ids):
            if t in self.stop_token_ids:
                ids = ids[: i + 1]
                break
        return ids, [float(x) for x in lp.tolist()[: len(ids)]]

    def close(self) -> None:
        """Free the model (and GPU memory); idempotent. ``act`` raises afterwards."""
        torch, _ = _import_hf()
        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __enter__(self) -> HFPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"HFPolicy({str(self.path)!r}, family={self.family!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).removeprefix('torch.')!r}, temperature={self.temperature})"
        )
