"""What every backend shares: the embedding LRU cache and the predictor path around the model.

:class:`SamPredictorBase` implements the whole ``Segmenter`` API (``set_image`` / ``predict`` /
``reset_image``) once: image checks and the family's preprocessing, a content-keyed LRU cache of
image embeddings, prompt validation (``segmenters.prompts``), the mapping of prompts to the model
input frame, prompt fusion (``ops.encode_sparse_prompts``), mask selection and post-processing
(``ops.postprocess_masks``). A backend (torch, ONNX Runtime, TensorRT) only supplies the two model
calls, :meth:`SamPredictorBase._encode` and :meth:`SamPredictorBase._decode`, so all backends
accept and reject exactly the same inputs and return the same structures. NumPy only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsam_agent_rt import ops
from medsam_agent_rt.segmenters.base import Prediction, Preprocessing
from medsam_agent_rt.segmenters.preprocess import as_rgb_uint8, preprocess_image, to_input_coords
from medsam_agent_rt.segmenters.prompts import check_prompts


def image_key(rgb: np.ndarray) -> str:
    """Content key of an (H, W, 3) uint8 image: BLAKE2b-128 of its bytes and shape."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).data)
    return h.hexdigest()


class NoImageError(RuntimeError, AttributeError):
    """An image-dependent attribute or call before ``set_image`` (also an AttributeError, so
    ``isinstance(seg, Segmenter)`` protocol checks work before an image is set)."""


@dataclass
class Encoded:
    """One cached image: the backend's embedding object (a torch tensor, a NumPy array, a device
    buffer), the original (H, W) and the (rows, cols) of the resized image in the model input."""

    embedding: Any
    original_size: tuple[int, int]
    resized_size: tuple[int, int]


class SamPredictorBase:
    """The Segmenter API over two model calls supplied by a subclass.

    Subclasses set ``backend`` and call ``__init__`` with the family, its preprocessing (input
    size already adapted to the model), the prompt-fusion weights and the mask input size, then
    implement ``_encode``, ``_decode`` and ``_embedding_to_numpy``.
    """

    backend = "base"

    def __init__(
        self,
        family: str,
        preprocessing: Preprocessing,
        weights: ops.PromptEncoderWeights,
        mask_input_size: tuple[int, int],
        cache_size: int = 8,
        source: str = "",
    ) -> None:
        if int(cache_size) < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.family = family
        self.preprocessing: Preprocessing = preprocessing
        self.source = source
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, Encoded] = OrderedDict()
        self._current: Encoded | None = None
        self._weights = weights
        self.mask_input_size: tuple[int, int] = (int(mask_input_size[0]), int(mask_input_size[1]))
        self.encoder_calls = 0  # how many times the image encoder actually ran

    # ------------------------------------------------------------------ backend hooks
    def _encode(self, x: np.ndarray) -> Any:
        """(1, 3, S, S) float32 preprocessed image -> the backend's embedding object."""
        raise NotImplementedError

    def _decode(
        self, embedding: Any, sparse: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """embedding from ``_encode``; sparse (S, C) float32 prompt tokens; mask (h, w) float32
        low-res logits or None. Returns low-res logits of ALL mask tokens (4, h, w) float32 and
        their IoU predictions (4,) float32 (token 0: single-mask output, 1..3: multimask)."""
        raise NotImplementedError

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB ((H, W), (H, W, 1) grayscale and RGBA are converted)."""
        rgb = as_rgb_uint8(image)
        key = image_key(rgb)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self._current = hit
            return
        x, resized = preprocess_image(rgb, self.preprocessing)
        emb = self._encode(x)
        self.encoder_calls += 1
        enc = Encoded(emb, (int(rgb.shape[0]), int(rgb.shape[1])), resized)
        if self.cache_size:
            self._cache[key] = enc
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._current = enc

    def reset_image(self) -> None:
        """Forget the current image (its embedding stays in the cache)."""
        self._current = None

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def is_image_set(self) -> bool:
        return self._current is not None

    @property
    def original_size(self) -> tuple[int, int]:
        """(H, W) of the current image; (0, 0) before set_image (a property that raised would
        make ``isinstance(seg, Segmenter)`` false on a fresh segmenter)."""
        return (0, 0) if self._current is None else self._current.original_size

    @property
    def image_embedding(self) -> np.ndarray:
        """(1, C, h, w) float32 embedding of the current image."""
        if self._current is None:
            raise NoImageError("no image set: call set_image(image) first")
        return self._embedding_to_numpy(self._current.embedding)

    # ------------------------------------------------------------------ prompts
    def sparse_tokens(
        self, points: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None
    ) -> np.ndarray:
        """Checked original-image prompts -> (S, C) float32 fused sparse tokens (the official
        token list: points, a pad token when there is no box, the two box corners)."""
        assert self._current is not None
        size, pre = self._current.original_size, self.preprocessing
        pts_in = None if points is None else to_input_coords(points, size, pre)
        box_in = None if box is None else to_input_coords(box.reshape(2, 2), size, pre)
        coords, labs = ops.sam_prompt_tokens(
            pts_in, labels, None if box_in is None else box_in.reshape(4)
        )
        return ops.encode_sparse_prompts(coords, labs, self._weights)

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> Prediction:
        """point_coords (N, 2) (x, y) px and point_labels (N,) {0, 1}; box (4,) x1 y1 x2 y2 px;
        mask_input (1, 256, 256) low-res logits of an earlier prediction. Returns 3 masks
        (multimask_output) or 1, at the original size, with scores and low-res logits."""
        if self._current is None:
            raise NoImageError("predict() called before set_image(): set an image first")
        enc = self._current
        pts, labels, bx, mask = check_prompts(
            point_coords, point_labels, box, mask_input, enc.original_size, self.mask_input_size
        )
        sparse = self.sparse_tokens(pts, labels, bx)
        low_all, iou_all = self._decode(enc.embedding, sparse, mask)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        low = np.ascontiguousarray(low_all[sl], np.float32)
        scores = np.ascontiguousarray(iou_all[sl], np.float32)
        s = self.preprocessing.input_size
        _, masks = ops.postprocess_masks(
            low, (s, s), enc.resized_size, enc.original_size, return_logits=False
        )
        return Prediction(masks=masks, scores=scores, low_res_logits=low)
