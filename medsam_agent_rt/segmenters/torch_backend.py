"""The PyTorch backend: :class:`TorchSegmenter`, a SAM-family model behind the Segmenter API.

``set_image`` preprocesses the image the family's official way and runs the image encoder once
(an LRU cache keyed by image content skips it for images seen before); ``predict`` maps the
prompts to the model input frame, fuses them with ``ops.encode_sparse_prompts``, runs the prompt
encoder's mask path and the mask decoder, and upsamples with ``ops.postprocess_masks``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from medsam_agent_rt import ops
from medsam_agent_rt.segmenters.base import Prediction, Preprocessing
from medsam_agent_rt.segmenters.families import FamilySpec, family_spec
from medsam_agent_rt.segmenters.preprocess import as_rgb_uint8, preprocess_image, to_input_coords
from medsam_agent_rt.segmenters.prompts import check_prompts


def require_torch():
    """The torch module, or an ImportError naming the extra to install."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "the torch segmenter backend needs PyTorch: pip install 'medsam-agent-rt[torch]'"
        ) from e
    return torch


def prompt_encoder_weights(prompt_encoder: Any) -> ops.PromptEncoderWeights:
    """What ``ops.encode_sparse_prompts`` needs from a SAM PromptEncoder (ours or the official
    one): the Fourier matrix, the 5 label embeddings and the padded input size."""
    g = prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    rows = [prompt_encoder.not_a_point_embed.weight] + [
        e.weight for e in prompt_encoder.point_embeddings
    ]
    labels = np.concatenate([r.detach().cpu().float().numpy() for r in rows], axis=0)
    return ops.PromptEncoderWeights(
        gaussian_matrix=g.detach().cpu().float().numpy(),
        label_embeddings=labels,
        input_size=tuple(int(v) for v in prompt_encoder.input_image_size),
    )


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
class _Encoded:
    embedding: Any  # torch.Tensor (1, C, h, w) on the model's device
    original_size: tuple[int, int]
    resized_size: tuple[int, int]


class TorchSegmenter:
    """A SAM-family model in PyTorch (float32, inference mode) implementing ``Segmenter``.

    model: a ``modeling.sam.SamModel`` with its weights; family: a FamilySpec or family name
    (its preprocessing is adapted to the model's input size); device: "cpu", "cuda", "cuda:1";
    cache_size: image embeddings kept (LRU by image content; 0 disables the cache).
    """

    backend = "torch"

    def __init__(
        self,
        model: Any,
        family: FamilySpec | str,
        device: str = "cpu",
        cache_size: int = 8,
        source: str = "",
    ) -> None:
        torch = require_torch()
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        spec = family_spec(family) if isinstance(family, str) else family
        size = int(model.config.input_size)
        self.spec = replace(spec, preprocessing=replace(spec.preprocessing, input_size=size))
        self.family = spec.name
        self.preprocessing: Preprocessing = self.spec.preprocessing
        self.source = source
        self.device = torch.device(device)
        self.model = model.to(self.device, torch.float32).eval()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, _Encoded] = OrderedDict()
        self._current: _Encoded | None = None
        self._weights = prompt_encoder_weights(model.prompt_encoder)
        self.mask_input_size: tuple[int, int] = tuple(model.mask_input_size)
        self.encoder_calls = 0  # how many times the image encoder actually ran

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB ((H, W), (H, W, 1) grayscale and RGBA are converted)."""
        torch = require_torch()
        rgb = as_rgb_uint8(image)
        key = image_key(rgb)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self._current = hit
            return
        x, resized = preprocess_image(rgb, self.preprocessing)
        with torch.inference_mode():
            emb = self.model.encode(torch.from_numpy(x).to(self.device))
        self.encoder_calls += 1
        enc = _Encoded(emb, (int(rgb.shape[0]), int(rgb.shape[1])), resized)
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
        return self._current.embedding.detach().cpu().numpy()

    # ------------------------------------------------------------------ prompts
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
        torch = require_torch()
        if self._current is None:
            raise NoImageError("predict() called before set_image(): set an image first")
        enc = self._current
        pts, labels, bx, mask = check_prompts(
            point_coords, point_labels, box, mask_input, enc.original_size, self.mask_input_size
        )
        pre = self.preprocessing
        pts_in = None if pts is None else to_input_coords(pts, enc.original_size, pre)
        box_in = None if bx is None else to_input_coords(bx.reshape(2, 2), enc.original_size, pre)
        coords, labs = ops.sam_prompt_tokens(
            pts_in, labels, None if box_in is None else box_in.reshape(4)
        )
        sparse = ops.encode_sparse_prompts(coords, labs, self._weights)
        dev = self.device
        with torch.inference_mode():
            m = torch.zeros(1, 1, *self.mask_input_size, device=dev)
            if mask is not None:
                m = torch.from_numpy(mask).to(dev).view(1, 1, *self.mask_input_size)
            has = torch.tensor([0.0 if mask is None else 1.0], device=dev)
            low, iou = self.model.decode(
                enc.embedding, torch.from_numpy(sparse).to(dev)[None], m, has
            )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        low = low[0, sl].float().cpu().numpy()
        scores = iou[0, sl].float().cpu().numpy()
        s = pre.input_size
        _, masks = ops.postprocess_masks(low, (s, s), enc.resized_size, enc.original_size)
        return Prediction(masks=masks, scores=scores, low_res_logits=low)
