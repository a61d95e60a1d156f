"""What every backend shares: the stateless ``encode`` / ``decode`` contract around two model calls.

:class:`SamPredictorBase` implements the whole ``Segmenter`` API once:

- ``encode(image) -> Encoded``: image checks and the family's preprocessing, then the image
  encoder, through the thread-safe content-keyed :class:`~segmenters.store.EncodingStore` that
  every episode on this segmenter shares (an image is encoded once, also under concurrency);
- ``decode(encoded, ...) -> Prediction``: prompt validation (``segmenters.prompts``), the mapping
  of prompts to the model input frame, prompt fusion (``ops.encode_sparse_prompts``), the mask
  decoder, mask selection and post-processing (``ops.postprocess_masks``). No hidden state: any
  number of episodes / threads decode against their own ``Encoded``;
- segment-anything's ``set_image`` / ``predict`` / ``reset_image``: a thin convenience layer that
  remembers one ``Encoded`` (not for sharing between episodes);
- ``close()`` and the context-manager protocol (releases the backend's native resources).

A backend (torch, ONNX Runtime, TensorRT) supplies the model calls :meth:`_encode`,
:meth:`_decode`, :meth:`_embedding_to_numpy` and, if it owns native resources, :meth:`_release`,
so all backends accept and reject exactly the same inputs. NumPy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medsam_agent_rt import ops
from medsam_agent_rt.segmenters.base import Prediction, Preprocessing
from medsam_agent_rt.segmenters.preprocess import as_rgb_uint8, preprocess_image, to_input_coords
from medsam_agent_rt.segmenters.prompts import check_prompts
from medsam_agent_rt.segmenters.store import Encoded, EncodingStore, image_key


class NoImageError(RuntimeError, AttributeError):
    """An image-dependent attribute or call before ``set_image`` (also an AttributeError, so
    ``isinstance(seg, Segmenter)`` protocol checks work before an image is set)."""


class ClosedError(RuntimeError):
    """A call on a segmenter after ``close()``."""


class PredictorLayer:
    """What every predictor family (SAM-1 here, SAM2 in ``segmenters.sam2``) shares on top of its
    stateless ``encode`` / ``decode``: lifetime (``close``, context manager, the shared
    ``store``), host copies of embeddings and segment-anything's ``set_image`` / ``predict``
    layer. A subclass sets ``store``, ``_current``, ``closed``, ``backend``, ``family`` and
    implements ``encode``, ``decode`` and ``_embedding_to_numpy``."""

    store: EncodingStore
    _current: Encoded | None
    closed: bool
    backend = "base"
    family = ""

    @property
    def on_device(self) -> bool:
        """Whether the model runs on a CUDA device (then ``decode(..., on_device=True)`` keeps
        logits and masks there)."""
        return False

    def _release(self) -> None:
        """Free the backend's native resources (sessions, engines, device buffers, the model)."""

    # ------------------------------------------------------------------ lifetime
    @property
    def cache_size(self) -> int:
        return self.store.capacity

    @property
    def encoder_calls(self) -> int:
        """How many times the image encoder actually ran."""
        return self.store.computed

    def close(self) -> None:
        """Drop every encoding and release the backend's native resources; idempotent. Later
        calls raise :class:`ClosedError`."""
        if self.closed:
            return
        self.closed = True
        self._current = None
        self.store.clear()
        self._release()

    def __enter__(self) -> PredictorLayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"the {self.backend} segmenter ({self.family}) is closed")

    def _check_decodable(self, encoded: Encoded) -> None:
        """Open, and ``encoded`` is what ``encode`` returns (else a clear error)."""
        self._check_open()
        if not isinstance(encoded, Encoded):
            raise TypeError(
                f"decode() needs the Encoded returned by encode(image), got {type(encoded).__name__}"
            )

    # ------------------------------------------------------------------ host copies
    def embedding(self, encoded: Encoded) -> np.ndarray:
        """(1, C, h, w) float32 host copy of an encoded image's embedding."""
        return self._embedding_to_numpy(encoded.embedding)

    # ------------------------------------------------------------------ SamPredictor layer
    def set_image(self, image: np.ndarray) -> None:
        """Encode ``image`` and remember it for ``predict`` (segment-anything's API)."""
        self._current = self.encode(image)

    def reset_image(self) -> None:
        """Forget the current image (its encoding stays in the store)."""
        self._current = None

    def clear_cache(self) -> None:
        self.store.clear()

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
        return self.embedding(self._current)

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> Prediction:
        """``decode`` against the image of the last ``set_image``."""
        if self._current is None:
            raise NoImageError("predict() called before set_image(): set an image first")
        return self.decode(
            self._current, point_coords, point_labels, box, mask_input, multimask_output
        )


class SamPredictorBase(PredictorLayer):
    """The Segmenter API over the model calls supplied by a subclass.

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
        self.store = EncodingStore(cache_size)
        self.family = family
        self.preprocessing: Preprocessing = preprocessing
        self.source = source
        self._current: Encoded | None = None
        self._weights = weights
        self.mask_input_size: tuple[int, int] = (int(mask_input_size[0]), int(mask_input_size[1]))
        self.closed = False

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

    def _decode_device(self, embedding: Any, sparse: np.ndarray, mask: Any) -> tuple[Any, Any]:
        """Like ``_decode`` but the outputs stay on the backend's CUDA device (torch tensors,
        (4, h, w) and (4,) float32); ``mask`` may be a CUDA tensor. Only when ``on_device``."""
        raise NotImplementedError(f"the {self.backend} backend has no device-resident decode")

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ stateless contract
    def encode(self, image: np.ndarray, keep: bool = True) -> Encoded:
        """image: (H, W, 3) uint8 RGB ((H, W), (H, W, 1) grayscale and RGBA are converted) ->
        its :class:`Encoded`, from the shared store or computed (once, also under concurrency);
        keep=False: not added to the store (a zoom crop, ``segmenters.zoom``)."""
        self._check_open()
        rgb = as_rgb_uint8(image)
        key = image_key(rgb)

        def compute() -> Encoded:
            x, resized = preprocess_image(rgb, self.preprocessing)
            size = (int(rgb.shape[0]), int(rgb.shape[1]))
            return Encoded(self._encode(x), size, resized, key)

        return self.store.get_or_encode(key, compute, keep)

    def sparse_tokens(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
        original_size: tuple[int, int],
    ) -> np.ndarray:
        """Checked original-image prompts -> (S, C) float32 fused sparse tokens (the official
        token list: points, a pad token when there is no box, the two box corners)."""
        pre = self.preprocessing
        pts_in = None if points is None else to_input_coords(points, original_size, pre)
        box_in = None if box is None else to_input_coords(box.reshape(2, 2), original_size, pre)
        coords, labs = ops.sam_prompt_tokens(
            pts_in, labels, None if box_in is None else box_in.reshape(4)
        )
        return ops.encode_sparse_prompts(coords, labs, self._weights)

    def decode(
        self,
        encoded: Encoded,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        on_device: bool = False,
    ) -> Prediction:
        """Masks of ``encoded`` for the prompts: point_coords (N, 2) (x, y) px and point_labels
        (N,) {0, 1}; box (4,) x1 y1 x2 y2 px; mask_input (1, 256, 256) low-res logits of an
        earlier prediction. Returns 3 masks (multimask_output) or 1, at the original size, with
        scores and low-res logits. ``on_device`` (on a CUDA backend, see ``on_device``): the
        Prediction holds torch CUDA tensors (masks post-processed by the ``ops`` CUDA kernel)
        and ``mask_input`` may be one; elsewhere it is ignored."""
        self._check_decodable(encoded)
        device = bool(on_device) and self.on_device
        mask_dev = None
        if device and mask_input is not None and not isinstance(mask_input, np.ndarray):
            mask_dev, mask_input = self._device_mask(mask_input), None
        pts, labels, bx, mask = check_prompts(
            point_coords, point_labels, box, mask_input, encoded.original_size, self.mask_input_size
        )
        sparse = self.sparse_tokens(pts, labels, bx, encoded.original_size)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        if device:
            m = mask_dev if mask_dev is not None else mask
            low_all, iou_all = self._decode_device(encoded.embedding, sparse, m)
            low, scores = low_all[sl].contiguous(), iou_all[sl].contiguous()
        else:
            low_all, iou_all = self._decode(encoded.embedding, sparse, mask)
            low = np.ascontiguousarray(low_all[sl], np.float32)
            scores = np.ascontiguousarray(iou_all[sl], np.float32)
        s = self.preprocessing.input_size
        _, masks = ops.postprocess_masks(
            low, (s, s), encoded.resized_size, encoded.original_size, return_logits=False
        )
        return Prediction(masks=masks, scores=scores, low_res_logits=low)

    def _device_mask(self, mask_input: Any) -> Any:
        """A device ``mask_input`` (1, h, w) or (h, w) float as (h, w) float32, checked."""
        h, w = self.mask_input_size
        if tuple(mask_input.shape) not in ((1, h, w), (h, w)):
            raise ValueError(
                f"mask_input must be (1, {h}, {w}) low-res logits, got {tuple(mask_input.shape)}"
            )
        return mask_input.reshape(h, w).float()
