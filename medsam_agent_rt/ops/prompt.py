"""Prompt-embedding fusion: SAM's sparse prompt encoding in one pass.

Equal to the official ``PromptEncoder``'s sparse embeddings on identical weights: positions and
the angle's range reduction in float64 (exact), sin/cos polynomials in float32 (< 1e-7), the sum
with the label row in float64 rounded once; within 1e-5 of the official float32 module and 5e-7
of the float64 reference (tests/ops/test_prompt_fusion.py).
The host path is kept lean (one C++ call after a few dtype checks): it is called once per turn
with a handful of tokens, so its per-call overhead is what a caller pays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsam_agent_rt._ext import require_ext
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import (
    cast_framework,
    cuda_call,
    cuda_device_index,
    cuda_stream_of,
    dtype_name,
    empty_like_framework,
    framework_of,
    same_cuda_device,
    select,
    to_host,
)
from medsam_agent_rt.ops.reference import sam_prompt_tokens

__all__ = [
    "PromptEncoderWeights",
    "encode_sparse_prompts",
    "prompt_encoder_weights",
    "sam_prompt_tokens",
]

_LABEL_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


@dataclass(frozen=True)
class PromptEncoderWeights:
    """What the fusion needs from a SAM PromptEncoder, as float32 host arrays.

    gaussian_matrix: (2, C/2) = ``pe_layer.positional_encoding_gaussian_matrix``;
    label_embeddings: (5, C) rows [not_a_point_embed, point_embeddings[0] (negative),
    point_embeddings[1] (positive), point_embeddings[2] (box corner 1), point_embeddings[3]
    (box corner 2)]; input_size: (H, W) of the padded model input (1024x1024 SAM, 256x256 LiteMedSAM).
    Arrays are stored C-contiguous float32 (converted once here, not per call).
    """

    gaussian_matrix: np.ndarray
    label_embeddings: np.ndarray
    input_size: tuple[int, int]
    # device copies for CUDA calls, keyed by (framework, device ordinal); not part of equality
    _device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        g = np.ascontiguousarray(self.gaussian_matrix, np.float32)
        e = np.ascontiguousarray(self.label_embeddings, np.float32)
        if e.ndim != 2 or e.shape[0] != 5 or e.shape[1] % 2 or e.shape[1] == 0:
            raise ValueError(f"label_embeddings must be (5, C) with C even, got shape {e.shape}")
        if g.shape != (2, e.shape[1] // 2):
            raise ValueError(
                f"gaussian_matrix must be (2, {e.shape[1] // 2}) for C = {e.shape[1]}, "
                f"got shape {g.shape}"
            )
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"input_size must be (H, W) >= 1, got {self.input_size}")
        object.__setattr__(self, "gaussian_matrix", g)
        object.__setattr__(self, "label_embeddings", e)
        object.__setattr__(self, "input_size", size)

    @property
    def embed_dim(self) -> int:
        return int(self.label_embeddings.shape[1])

    def on_device(self, like: Any) -> tuple[Any, Any]:
        """(gaussian_matrix, label_embeddings) on ``like``'s CUDA device, in its framework
        (uploaded once per device and cached)."""
        key = (framework_of(like), cuda_device_index(like))
        if key not in self._device:
            if key[0] == "torch":
                import torch

                put = lambda a: torch.from_numpy(a).to(like.device)  # noqa: E731
            else:
                import cupy

                def put(a):
                    with cupy.cuda.Device(key[1]):
                        return cupy.asarray(a)

            self._device[key] = (put(self.gaussian_matrix), put(self.label_embeddings))
        return self._device[key]


def prompt_encoder_weights(module: Any) -> PromptEncoderWeights:
    """The fusion weights of a SAM ``PromptEncoder`` (official segment-anything or ours: same
    attribute names ``pe_layer.positional_encoding_gaussian_matrix``, ``point_embeddings[i]``,
    ``not_a_point_embed``, ``input_image_size``), copied to float32 host arrays."""

    def host(t: Any) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)

    try:
        gaussian = host(module.pe_layer.positional_encoding_gaussian_matrix)
        rows = [module.not_a_point_embed.weight] + [
            module.point_embeddings[i].weight for i in range(4)
        ]
        input_size = tuple(int(v) for v in module.input_image_size)
    except (AttributeError, IndexError, TypeError) as exc:
        raise TypeError(
            f"module must be a SAM PromptEncoder (pe_layer, point_embeddings[0..3], "
            f"not_a_point_embed, input_image_size), got {type(module).__name__}: {exc}"
        ) from exc
    embeddings = np.stack([host(r).reshape(-1) for r in rows])
    return PromptEncoderWeights(gaussian, embeddings, input_size)


def _check_tokens(coords: np.ndarray, labels: np.ndarray) -> None:
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must be (S, 2), got shape {coords.shape}")
    if labels.shape != (coords.shape[0],):
        raise ValueError(f"labels must be ({coords.shape[0]},) to match coords, got {labels.shape}")
    if labels.size and (labels.min() < -1 or labels.max() > 3):
        raise ValueError(f"labels must be in -1..3, got values {sorted(set(labels.tolist()))}")


def _host_labels(labels: Any) -> np.ndarray:
    lab = labels if type(labels) is np.ndarray else np.asarray(labels)
    if lab.dtype in _LABEL_DTYPES and lab.dtype.isnative:
        return lab
    if lab.dtype.kind not in "iu" and not (lab.dtype.kind == "b" or lab.size == 0):
        raise ValueError(f"labels must be integers in -1..3, got dtype {lab.dtype}")
    return lab.astype(np.int64)


def encode_sparse_prompts(
    coords: Any, labels: Any, weights: PromptEncoderWeights, num_slots: int | None = None
) -> Any:
    """Sparse prompt embeddings (S or num_slots, C) float32 for S tokens.

    coords: (S, 2) float (x, y) in model-input pixels (used as float32, like the official encoder);
    labels: (S,) int in {-1 pad, 0 negative, 1 positive, 2 box corner 1, 3 box corner 2}. Build
    the official token list with :func:`sam_prompt_tokens` (points, a pad token when there is no
    box, box corners). Slots after S hold the not-a-point embedding. Host inputs give a NumPy
    array; torch / CuPy CUDA inputs give a tensor of their framework on their device (the weights
    are uploaded once per device and cached; labels are validated by the kernel, which costs one
    synchronising 4-byte read per call).
    """
    backend = select("encode_sparse_prompts", coords, labels, exact_fallback=False)
    if backend == "cuda":
        return _encode_cuda(coords, labels, weights, num_slots)
    c = coords if type(coords) is np.ndarray and coords.dtype == np.float32 else None
    if c is None or not c.dtype.isnative:
        c = np.asarray(coords, np.float32)
    lab = _host_labels(labels)
    s = c.shape[0] if c.ndim >= 1 else 0
    slots = s if num_slots is None else int(num_slots)
    if slots < s:
        raise ValueError(f"{s} prompt tokens do not fit in num_slots={num_slots}")
    if backend == "reference":
        _check_tokens(c, lab)
        g, e = weights.gaussian_matrix, weights.label_embeddings
        return ref.encode_sparse_prompts(c, lab, g, e, weights.input_size, num_slots)
    out = np.empty((slots, weights.label_embeddings.shape[1]), np.float32)
    h, w = weights.input_size
    require_ext().encode_sparse_prompts(
        c, lab, weights.gaussian_matrix, weights.label_embeddings, h, w, out
    )
    return out


def _encode_cuda(
    coords: Any, labels: Any, weights: PromptEncoderWeights, num_slots: int | None
) -> Any:
    same_cuda_device({"coords": coords, "labels": labels})
    c = coords if dtype_name(coords) == "float32" else cast_framework(coords, "float32")
    lab = labels if dtype_name(labels) in ("int32", "int64") else cast_framework(labels, "int64")
    if len(c.shape) != 2 or c.shape[1] != 2:
        raise ValueError(f"coords must be (S, 2), got shape {tuple(c.shape)}")
    s = int(c.shape[0])
    slots = s if num_slots is None else int(num_slots)
    if slots < s:
        raise ValueError(f"{s} prompt tokens do not fit in num_slots={num_slots}")
    g, e = weights.on_device(c)
    stream = cuda_stream_of(c)
    out = empty_like_framework(c, (slots, weights.embed_dim), "float32")
    flag = empty_like_framework(c, (1,), "int32")
    h, w = weights.input_size
    cuda_call(require_ext().encode_sparse_prompts, c, lab, g, e, h, w, out, flag, stream=stream)
    if int(to_host(flag)[0]):  # one small synchronising read: bad labels must raise
        bad = sorted(set(to_host(lab).tolist()) - {-1, 0, 1, 2, 3})
        raise ValueError(f"labels must be in -1..3, got values {bad}")
    return out
