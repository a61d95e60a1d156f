"""The segmentation tool's interface, mirroring segment-anything's ``SamPredictor``.

Every backend (torch, onnx, trt) implements :class:`Segmenter`: the stateless ``encode`` /
``decode`` pair (any number of episodes share one segmenter, each holding its own ``Encoded``)
and segment-anything's ``set_image`` / ``predict`` on top. The per-episode chained prompt state
of PROTOCOL.md lives in ``segmenters.prompt_chain``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """How a checkpoint family turns an RGB uint8 image into its input tensor.

    resize: "longest_side" (scale so max(H, W) == input_size, keep aspect, pad bottom/right) or
    "square" (resize to input_size x input_size, aspect not kept); normalize: "mean_std" (SAM's
    pixel mean/std in 0..255 units) or "minmax" ((x - min) / max(max - min, 1e-8) per image).
    interpolation: how the official code resizes the uint8 image — "bilinear" (PIL bilinear,
    SAM's ResizeLongestSide), "area" (cv2 INTER_AREA, LiteMedSAM), "cubic_spline" (skimage
    order-3 resize with anti-aliasing, then truncation to uint8, MedSAM); coord_rounding: "none"
    (prompts scaled per axis, SAM/MedSAM) or "floor" (``int(v * input_size / max(H, W))``, the
    official LiteMedSAM box mapping). See ``segmenters.preprocess``.
    """

    family: str  # "sam" | "medsam" | "litemedsam" | "mobilesam" | "sam2" | "medsam2"
    input_size: int  # 1024 (SAM, MedSAM, MobileSAM) or 256 (LiteMedSAM)
    resize: Literal["longest_side", "square"]
    normalize: Literal["mean_std", "minmax"]
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    interpolation: Literal["bilinear", "area", "cubic_spline", "bilinear_antialias"] = "bilinear"
    coord_rounding: Literal["none", "floor"] = "none"

    def resized_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of the image inside the model input frame."""
        h, w = original_size
        if self.resize == "square":
            return self.input_size, self.input_size
        scale = self.input_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)


@dataclass(frozen=True)
class Prediction:
    """masks (C, H, W) bool at the original image size; scores (C,) float32 (predicted IoU);
    low_res_logits (C, h, w) float32 (h = w = 256), usable as the next ``mask_input``."""

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray


@runtime_checkable
class Segmenter(Protocol):
    """A SAM-family model behind one backend.

    Coordinates are (x, y) pixels of the ORIGINAL image; the segmenter maps them to its input
    frame. ``encode`` runs the image encoder once per image content (a thread-safe store shared
    by all callers); ``decode`` runs only the prompt encoder and mask decoder against the
    ``Encoded`` it is given. ``set_image`` / ``predict`` are the same over one remembered image.
    """

    family: str
    backend: str
    preprocessing: Preprocessing

    def encode(self, image: np.ndarray, keep: bool = True) -> Any:
        """image: (H, W, 3) uint8 RGB -> an ``segmenters.store.Encoded`` (embedding on the
        backend's device, original and resized sizes); keep=False: not kept in the shared store
        (one episode's zoom crops)."""
        ...

    def decode(
        self,
        encoded: Any,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> Prediction:
        """Like ``predict``, against ``encoded`` (no hidden current image)."""
        ...

    def close(self) -> None:
        """Release native resources (idempotent); the segmenter is unusable afterwards."""
        ...

    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB. Computes (or fetches from the LRU cache) the embedding."""
        ...

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> Prediction:
        """point_coords (N, 2) float px, point_labels (N,) {0 negative, 1 positive}, box (4,)
        x1 y1 x2 y2 px, mask_input (1, 256, 256) low-res logits of a previous prediction."""
        ...

    def reset_image(self) -> None:
        """Forget the current image (the cache keeps its embedding)."""
        ...

    @property
    def is_image_set(self) -> bool: ...

    @property
    def original_size(self) -> tuple[int, int]:
        """(H, W) of the current image."""
        ...
