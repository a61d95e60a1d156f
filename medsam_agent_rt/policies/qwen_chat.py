"""Protocol messages -> the exact Qwen-VL model inputs (ChatML tokens + image patches).

One renderer for inference (policies.hf) and training (SFT loss masks, GRPO), so both see the
same tokens. Not the checkpoint's Jinja template: for the conversations of the protocol (system
message first, user turns = image then text, assistant turns = text) the rendering equals what
the official Qwen3-VL-Instruct and Qwen2.5-VL-Instruct chat templates produce without a ``tools``
argument, ``add_vision_id`` off::

    <|im_start|>system\\n{SYSTEM_PROMPT}<|im_end|>\\n
    <|im_start|>user\\n<|vision_start|><|image_pad|>*N<|vision_end|>{text}<|im_end|>\\n
    <|im_start|>assistant\\n{phrase}\\n<tool_call>...</tool_call><|im_end|>\\n
    ...
    <|im_start|>assistant\\n                                  (generation prompt)

with each image's ``<|image_pad|>`` expanded to N = grid_t * grid_h * grid_w / merge_size**2
tokens. Differences from the templates, all outside the protocol: Qwen2.5-VL's template inserts
"You are a helpful assistant." when the first message is not a system message (done here too);
Qwen3-VL's template silently drops a system message that is not first (an error here); texts
holding ChatML control tokens are refused here (the templates pass them through).

Tokenization: text between control tokens is encoded as the tokenizer encodes the whole rendered
string, except that an assistant turn's body is encoded apart from its ``assistant\\n`` header,
exactly as at inference, where the prompt ends with the header and the model writes the body.

Images (Qwen2VLImageProcessorPil, the same arithmetic as the official processors):
- Qwen3-VL: 16-px patches, 2x2 merge, mean/std 0.5; pixel bounds [256**2, 4096**2] keep a 512x512
  view at 512x512 -> grid (1, 32, 32) -> 256 tokens per view.
- Qwen2.5-VL: 14-px patches, 2x2 merge, CLIP mean/std; bounds [3136, 12845056] (the official
  defaults). 512 is not a multiple of 28, so a 512x512 view is resized (bicubic) to 504x504 ->
  grid (1, 36, 36) -> 324 tokens per view.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"
CONTROL_TOKENS = (
    "<|endoftext|>",
    IM_START,
    IM_END,
    VISION_START,
    VISION_END,
    "<|vision_pad|>",
    IMAGE_PAD,
    "<|video_pad|>",
)
FAMILIES = ("qwen3_vl", "qwen2_5_vl")
_MODEL_CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
}


def qwen_vl_model_class(transformers: Any, model_type: str, what: str, who: str) -> Any:
    """The transformers class of a Qwen-VL ``model_type``; otherwise a ValueError saying that
    ``what`` (the checkpoint) has it and ``who`` runs only FAMILIES."""
    if model_type not in _MODEL_CLASSES:
        raise ValueError(f"{what} is model_type {model_type!r}; {who} {FAMILIES}")
    return getattr(transformers, _MODEL_CLASSES[model_type])


_DEFAULT_SYSTEM = {"qwen2_5_vl": "You are a helpful assistant.", "qwen3_vl": None}


# ----------------------------------------------------------------------------- image spec


@dataclass(frozen=True)
class ImageSpec:
    """How one family turns an RGB view into vision patches."""

    family: str
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    min_pixels: int
    max_pixels: int

    def resized_hw(self, height: int, width: int) -> tuple[int, int]:
        """(H', W') the processor resizes an HxW image to: multiples of patch*merge, aspect kept,
        area within [min_pixels, max_pixels]."""
        if min(height, width) < 1 or max(height, width) / min(height, width) > 200:
            raise ValueError(
                f"image must be at least 1x1 with aspect ratio <= 200, got {height}x{width}"
            )
        f = self.patch_size * self.merge_size
        h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
        if h * w > self.max_pixels:
            s = math.sqrt(height * width / self.max_pixels)
            h, w = max(f, math.floor(height / s / f) * f), max(f, math.floor(width / s / f) * f)
        elif h * w < self.min_pixels:
            s = math.sqrt(self.min_pixels / (height * width))
            h, w = math.ceil(height * s / f) * f, math.ceil(width * s / f) * f
        return h, w

    def grid_thw(self, height: int, width: int) -> tuple[int, int, int]:
        h, w = self.resized_hw(height, width)
        return 1, h // self.patch_size, w // self.patch_size

    def num_image_tokens(self, height: int, width: int) -> int:
        """<|image_pad|> tokens of one HxW image (e.g. 256 for a 512x512 view on Qwen3-VL)."""
        t, gh, gw = self.grid_thw(height, width)
        return t * gh * gw // self.merge_size**2


FAMILY_SPECS: dict[str, ImageSpec] = {
    "qwen3_vl": ImageSpec("qwen3_vl", 16, 2, 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 256**2, 4096**2),
    "qwen2_5_vl": ImageSpec(
        "qwen2_5_vl",
        14,
        2,
        2,
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
        56 * 56,
        28 * 28 * 16384,
    ),
}


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {FAMILIES}, got {family!r}")


def image_spec(
    family: str,
    *,
    vision_config: Any = None,
    preprocessor: dict[str, Any] | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> ImageSpec:
    """The family's spec, checked against a checkpoint.

    vision_config (the model's, authoritative) and preprocessor (preprocessor_config.json) must
    agree with each other on patch/merge/temporal sizes; mean/std come from the preprocessor
    config. Pixel bounds are the family's fixed values unless given here: checkpoint bounds are
    ignored on purpose, so a view costs the same tokens in training and inference.
    """
    _check_family(family)
    spec = FAMILY_SPECS[family]
    pre = preprocessor or {}
    sizes = {
        "patch_size": ("patch_size", spec.patch_size),
        "merge_size": ("spatial_merge_size", spec.merge_size),
        "temporal_patch_size": ("temporal_patch_size", spec.temporal_patch_size),
    }
    values: dict[str, Any] = {}
    for field, (vname, default) in sizes.items():
        model_v = getattr(vision_config, vname, None) if vision_config is not None else None
        pre_v = pre.get(field)
        if model_v is not None and pre_v is not None and int(model_v) != int(pre_v):
            raise ValueError(
                f"checkpoint mismatch: vision_config.{vname}={model_v} but "
                f"preprocessor_config.json {field}={pre_v}"
            )
        values[field] = int(
            model_v if model_v is not None else pre_v if pre_v is not None else default
        )
    for field in ("image_mean", "image_std"):
        if field in pre:
            v = tuple(float(x) for x in pre[field])
            if len(v) != 3:
                raise ValueError(f"preprocessor_config.json {field} must have 3 values, got {v}")
            values[field] = v
    if min_pixels is not None:
        values["min_pixels"] = int(min_pixels)
    if max_pixels is not None:
        values["max_pixels"] = int(max_pixels)
    out = replace(spec, **values)
    if not 0 < out.min_pixels <= out.max_pixels:
        raise ValueError(
            f"need 0 < min_pixels <= max_pixels, got {out.min_pixels}, {out.max_pixels}"
        )
    return out


def load_image_spec(path: str | Path, vision_config: Any, family: str, **bounds: Any) -> ImageSpec:
    """image_spec() for a checkpoint directory (reads preprocessor_config.json if present)."""
    pre_file = Path(path) / "preprocessor_config.json"
    pre = json.loads(pre_file.read_text()) if pre_file.is_file() else None
    return image_spec(family, vision_config=vision_config, preprocessor=pre, **bounds)


def preprocess_images(
    images: Sequence[np.ndarray], spec: ImageSpec, processor: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 (H, W, 3) images -> pixel_values (sum of patches, 3*T*P*P) float32 and
    image_grid_thw (N, 3) int64, with the PIL image processor (transformers, extra ``hf``)."""
    proc = processor if processor is not None else make_image_processor(spec)
    out = proc(images=[np.ascontiguousarray(im) for im in images], return_tensors="np")
    return np.asarray(out["pixel_values"], np.float32), np.asarray(out["image_grid_thw"], np.int64)


def make_image_processor(spec: ImageSpec) -> Any:
    """Qwen2VLImageProcessorPil configured by ``spec`` (no torchvision needed)."""
    try:
        from transformers import Qwen2VLImageProcessorPil
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Qwen-VL image preprocessing needs transformers>=5 (Qwen2VLImageProcessorPil): "
            "pip install 'medsam-agent-rt[hf]'"
        ) from e
    return Qwen2VLImageProcessorPil(
        patch_size=spec.patch_size,
        merge_size=spec.merge_size,
        temporal_patch_size=spec.temporal_patch_size,
        image_mean=list(spec.image_mean),
        image_std=list(spec.image_std),
        size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels},
    )


# ----------------------------------------------------------------------------- rendering

# A piece is (is_control_token, string, produced_by_assistant).
_Piece = tuple[bool, str, bool]


def _validate_image(img: Any, where: str) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 1:
        raise ValueError(f"{where} must be an RGB uint8 array (H, W, 3), got {a.dtype} {a.shape}")
    return a


def _pieces(messages: Sequence[dict[str, Any]], family: str, add_generation_prompt: bool):
    """ChatML pieces and the images in order of appearance (image pads counted later)."""
    _check_family(family)
    if not messages:
        raise ValueError("messages must not be empty")
    pieces: list[_Piece] = []
    images: list[np.ndarray] = []
    default_system = _DEFAULT_SYSTEM[family]
    if messages[0].get("role") != "system" and default_system is not None:
        pieces += [(True, IM_START, False), (False, f"system\n{default_system}", False)]
        pieces += [(True, IM_END, False), (False, "\n", False)]
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}] role must be system, user or assistant, got {role!r}")
        if role == "system" and i != 0:
            raise ValueError(f"messages[{i}]: a system message must come first")
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise ValueError(
                f"messages[{i}] content must be a str or a list of parts, got {type(content).__name__}"
            )
        mine = role == "assistant"
        pieces += [(True, IM_START, False), (False, f"{role}\n", False)]
        for j, part in enumerate(parts):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                if role != "user":
                    raise ValueError(
                        f"{where}: images are only allowed in user messages, got one in {role}"
                    )
                images.append(_validate_image(part.get("image"), f"{where} image"))
                pieces += [
                    (True, VISION_START, False),
                    (True, IMAGE_PAD, False),
                    (True, VISION_END, False),
                ]
            elif kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise ValueError(f"{where} text must be a str, got {type(text).__name__}")
                bad = [t for t in CONTROL_TOKENS if t in text]
                if bad:
                    raise ValueError(
                        f"{where} text must not contain ChatML control tokens, found {bad}"
                    )
                pieces.append((False, text, mine))
            else:
                raise ValueError(f"{where} type must be 'text' or 'image', got {kind!r}")
        pieces += [(True, IM_END, mine), (False, "\n", False)]
    if add_generation_prompt:
        pieces += [(True, IM_START, False), (False, "assistant\n", False)]
    # Merge neighbouring text pieces of the same owner (so they tokenize as one string).
    merged: list[_Piece] = []
    for p in pieces:
        if merged and not p[0] and not merged[-1][0] and merged[-1][2] == p[2]:
            merged[-1] = (False, merged[-1][1] + p[1], p[2])
        elif p[0] or p[1]:
            merged.append(p)
    return merged, images


def render_chatml(
    messages: Sequence[dict[str, Any]],
    family: str,
    *,
    image_tokens: Sequence[int] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """The ChatML text of ``messages``. image_tokens[k] = number of <|image_pad|> of the k-th
    image; None writes one pad per image (the template's form before expansion)."""
    pieces, images = _pieces(messages, family, add_generation_prompt)
    counts = [1] * len(images) if image_tokens is None else list(image_tokens)
    if len(counts) != len(images):
        raise ValueError(f"image_tokens has {len(counts)} entries for {len(images)} images")
    out, k = [], 0
    for is_tok, s, _ in pieces:
        if is_tok and s == IMAGE_PAD:
            out.append(IMAGE_PAD * int(counts[k]))
            k += 1
        else:
            out.append(s)
    return "".join(out)


# ----------------------------------------------------------------------------- encoding


@dataclass
class ChatInputs:
    """Model inputs of one conversation (no batch axis).

    input_ids (L,) int64; assistant_mask (L,) int8, 1 on tokens the assistant produced (its text
    and <|im_end|>); mm_token_type_ids (L,) int64, 1 on <|image_pad|>; pixel_values
    (patches, 3*T*P*P) float32 or None; image_grid_thw (N, 3) int64.
    """

    input_ids: np.ndarray
    assistant_mask: np.ndarray
    mm_token_type_ids: np.ndarray
    pixel_values: np.ndarray | None
    image_grid_thw: np.ndarray

    def labels(self, ignore_index: int = -100) -> np.ndarray:
        """(L,) int64 training targets: input_ids where assistant_mask, else ignore_index
        (transformers causal-LM convention: the model shifts them itself)."""
        return np.where(self.assistant_mask == 1, self.input_ids, ignore_index).astype(np.int64)

    def model_kwargs(self, device: Any = "cpu", dtype: Any = None) -> dict[str, Any]:
        """torch tensors with a batch axis of 1 for ``model(**kw)`` / ``model.generate(**kw)``."""
        import torch

        ids = torch.as_tensor(self.input_ids, device=device).unsqueeze(0)
        kw = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": torch.as_tensor(self.mm_token_type_ids, device=device).unsqueeze(
                0
            ),
        }
        if self.pixel_values is not None:
            kw["pixel_values"] = torch.as_tensor(self.pixel_values, device=device, dtype=dtype)
            kw["image_grid_thw"] = torch.as_tensor(self.image_grid_thw, device=device)
        return kw


class QwenChatEncoder:
    """Messages -> ChatInputs for one family with a HF tokenizer (``encode``/``convert_tokens_to_ids``)."""

    def __init__(self, tokenizer: Any, spec: ImageSpec) -> None:
        self.tokenizer, self.spec, self.family = tokenizer, spec, spec.family
        self.token_ids: dict[str, int] = {}
        unk = getattr(tokenizer, "unk_token_id", None)
        for t in (IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD):
            tid = tokenizer.convert_tokens_to_ids(t)
            if tid is None or tid == unk:
                raise ValueError(f"tokenizer has no {t} token: not a Qwen-VL tokenizer")
            self.token_ids[t] = int(tid)
        self._processor: Any = None

    def _encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        add_generation_prompt: bool = False,
        assistant_ids: Sequence[Sequence[int] | None] | None = None,
    ) -> ChatInputs:
        """Tokens, assistant mask and image inputs of ``messages`` (protocol.messages structure).

        add_generation_prompt=True ends with ``<|im_start|>assistant\\n`` (inference);
        False renders a finished conversation (SFT: train where assistant_mask == 1).

        assistant_ids (RL): for the k-th assistant message, the exact token ids the model
        sampled (its stop token included when it stopped on one), used instead of tokenizing the
        message text, so a rollout is trained on what was sampled (re-tokenizing decoded text
        can give other ids). They replace the body and its ``<|im_end|>`` (assistant_mask 1);
        when they do not end with ``<|im_end|>`` (cut at the token limit, or ``<|endoftext|>``)
        an ``<|im_end|>`` with assistant_mask 0 closes the turn. None entries: tokenize the text.
        """
        pieces, images = _pieces(messages, self.family, add_generation_prompt)
        spliced = list(assistant_ids or [])
        n_assistant = sum(m.get("role") == "assistant" for m in messages)
        if len(spliced) > n_assistant:
            raise ValueError(
                f"assistant_ids has {len(spliced)} entries for {n_assistant} assistant messages"
            )
        pixel_values, grid = None, np.zeros((0, 3), np.int64)
        if images:
            if self._processor is None:
                self._processor = make_image_processor(self.spec)
            pixel_values, grid = preprocess_images(images, self.spec, self._processor)
        counts = [int(np.prod(g)) // self.spec.merge_size**2 for g in grid]
        ids: list[int] = []
        mask: list[int] = []
        k, a = 0, 0  # images seen, assistant messages closed
        im_end = self.token_ids[IM_END]
        for is_tok, s, mine in pieces:
            own = spliced[a] if mine and a < len(spliced) else None
            if own is not None:
                if not is_tok:
                    continue  # the body comes from the sampled ids
                own = [int(t) for t in own]
                ids += own
                mask += [1] * len(own)
                if not own or own[-1] != im_end:
                    ids.append(im_end)
                    mask.append(0)
                a += 1
            elif is_tok:
                n = counts[k] if s == IMAGE_PAD else 1
                k += s == IMAGE_PAD
                ids += [self.token_ids[s]] * n
                mask += [int(mine)] * n
                a += mine and s == IM_END
            else:
                t = self._encode_text(s)
                ids += t
                mask += [int(mine)] * len(t)
        input_ids = np.asarray(ids, np.int64)
        mm = (input_ids == self.token_ids[IMAGE_PAD]).astype(np.int64)
        return ChatInputs(input_ids, np.asarray(mask, np.int8), mm, pixel_values, grid)
