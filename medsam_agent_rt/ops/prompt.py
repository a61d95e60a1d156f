"""Prompt-embedding fusion: SAM's sparse prompt encoding in one pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops.reference import sam_prompt_tokens

__all__ = ["PromptEncoderWeights", "encode_sparse_prompts", "sam_prompt_tokens"]


@dataclass(frozen=True)
class PromptEncoderWeights:
    """What the fusion needs from a SAM PromptEncoder, as float32 host arrays.

    gaussian_matrix: (2, C/2) = ``pe_layer.positional_encoding_gaussian_matrix``;
    label_embeddings: (5, C) rows [not_a_point_embed, point_embeddings[0] (negative),
    point_embeddings[1] (positive), point_embeddings[2] (box corner 1), point_embeddings[3]
    (box corner 2)]; input_size: (H, W) of the padded model input (1024x1024 SAM, 256x256 LiteMedSAM).
    """

    gaussian_matrix: np.ndarray
    label_embeddings: np.ndarray
    input_size: tuple[int, int]

    @property
    def embed_dim(self) -> int:
        return int(self.label_embeddings.shape[1])


def encode_sparse_prompts(
    coords: Any, labels: Any, weights: PromptEncoderWeights, num_slots: int | None = None
) -> np.ndarray:
    """Sparse prompt embeddings (S or num_slots, C) float32 for S tokens.

    coords: (S, 2) float (x, y) in model-input pixels; labels: (S,) int in {-1 pad, 0 negative,
    1 positive, 2 box corner 1, 3 box corner 2}. Build the official token list with
    :func:`sam_prompt_tokens` (points, a pad token when there is no box, box corners).
    """
    coords = np.asarray(coords, np.float32)
    labels = np.asarray(labels)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must be (S, 2), got shape {coords.shape}")
    if labels.shape != (coords.shape[0],):
        raise ValueError(f"labels must be ({coords.shape[0]},) to match coords, got {labels.shape}")
    if labels.size and (labels.min() < -1 or labels.max() > 3):
        raise ValueError(f"labels must be in -1..3, got values {sorted(set(labels.tolist()))}")
    return ref.encode_sparse_prompts(
        coords,
        labels,
        weights.gaussian_matrix,
        weights.label_embeddings,
        weights.input_size,
        num_slots,
    )
