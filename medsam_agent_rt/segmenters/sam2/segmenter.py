"""The SAM2.1 / MedSAM2 image-mode segmenter (SAM2ImagePredictor's behaviour) behind the
Segmenter API, shared by the torch and ONNX Runtime backends.

``encode(image) -> Encoded`` (no hidden state) and ``decode(encoded, ...) -> Prediction`` are the
stateless pair, over the thread-safe content-keyed ``EncodingStore`` every episode shares;
``set_image`` / ``predict`` keep SAM's convenience layer. Per call: prompts checked (``segmenters.prompts``), scaled per axis to the S x S input,
ordered as SAM2 does (box corners with labels 2 and 3 first, then the clicks, then one padding
point); the decoder returns all 4 mask tokens and the official selection runs here in NumPy
(multimask: tokens 1..3; single: token 0 unless its stability score < 0.98, then the best of
1..3); low-res logits are clamped to [-32, 32] and upsampled bilinearly to the original size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medsam_agent_rt.segmenters.base import Prediction, Preprocessing
from medsam_agent_rt.segmenters.predictor import PredictorLayer
from medsam_agent_rt.segmenters.preprocess import as_rgb_uint8
from medsam_agent_rt.segmenters.prompts import check_prompts
from medsam_agent_rt.segmenters.sam2.preprocess import (
    preprocess,
    prompt_tokens,
    to_input_coords,
    upsample_logits,
)
from medsam_agent_rt.segmenters.store import Encoded, EncodingStore, image_key


def select_outputs(
    low: np.ndarray, iou: np.ndarray, multimask: bool, delta: float = 0.05, thresh: float = 0.98
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of ``sam2.decoder.select_masks`` for one prompt: low (4, h, w), iou (4,)."""
    if multimask:
        return low[1:], iou[1:]
    inter = float((low[0] > delta).sum())
    union = float((low[0] > -delta).sum())
    stability = inter / union if union > 0 else 1.0
    if stability >= thresh:
        return low[:1], iou[:1]
    best = 1 + int(np.argmax(iou[1:]))
    return low[best : best + 1], iou[best : best + 1]


class Sam2PredictorBase(PredictorLayer):
    """The Segmenter API over two backend calls: ``_encode(x (1, 3, S, S) float32)`` -> an
    embedding object, and ``_decode(embedding, coords (T, 2) f32, labels (T,) i32, mask (s, s)
    f32 | None)`` -> (low-res logits (4, s, s), IoU (4,)) of all mask tokens."""

    backend = "base"

    def __init__(self, spec: Any, input_size: int, cache_size: int = 8, source: str = "") -> None:
        self.store = EncodingStore(cache_size)
        self.spec = spec
        self.family: str = spec.name
        self.input_size = int(input_size)
        pre = spec.preprocessing
        self.preprocessing = Preprocessing(
            pre.family, self.input_size, pre.resize, pre.normalize, interpolation=pre.interpolation
        )
        self.mask_input_size = (self.input_size // 4, self.input_size // 4)
        self.source = source
        self._current: Encoded | None = None
        self.closed = False

    # ------------------------------------------------------------------ backend hooks
    def _encode(self, x: np.ndarray) -> Any:
        raise NotImplementedError

    def _decode(
        self, embedding: Any, coords: np.ndarray, labels: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ stateless pair
    def encode(self, image: np.ndarray, keep: bool = True) -> Encoded:
        """(H, W, 3) uint8 RGB (grayscale/RGBA converted) -> Encoded (cached by content unless
        keep=False)."""
        self._check_open()
        rgb = as_rgb_uint8(image)
        key = image_key(rgb)

        def compute() -> Encoded:
            emb = self._encode(preprocess(rgb, self.input_size))
            return Encoded(emb, (int(rgb.shape[0]), int(rgb.shape[1])), (self.input_size,) * 2, key)

        return self.store.get_or_encode(key, compute, keep)

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
        """Prompts in original-image px (see ``Segmenter.predict``); mask_input (1, S/4, S/4)
        low-res logits. Returns 3 masks (multimask_output) or 1 at the original size.
        ``on_device`` is accepted for the contract and ignored (host path)."""
        self._check_decodable(encoded)
        size = encoded.original_size
        pts, labels, bx, mask = check_prompts(
            point_coords, point_labels, box, mask_input, size, self.mask_input_size
        )
        s = self.input_size
        pts_in = None if pts is None else to_input_coords(pts, size, s)
        box_in = None if bx is None else to_input_coords(bx.reshape(2, 2), size, s).reshape(4)
        coords, labs = prompt_tokens(pts_in, labels, box_in)
        c = np.asarray(coords, np.float32).reshape(-1, 2)
        lab = np.asarray(labs, np.int32)
        low4, iou4 = self._decode(encoded.embedding, c, lab, mask)
        low, iou = select_outputs(low4, iou4, multimask_output)
        low = np.clip(low, -32.0, 32.0).astype(np.float32)
        masks = upsample_logits(low, size) > 0
        return Prediction(masks=masks, scores=iou.astype(np.float32), low_res_logits=low)


class Sam2TorchSegmenter(Sam2PredictorBase):
    """A ``sam2.model.Sam2Model`` in PyTorch (float32, inference mode)."""

    backend = "torch"

    def __init__(
        self, model: Any, spec: Any, device: str = "cpu", cache_size: int = 8, source: str = ""
    ) -> None:
        from medsam_agent_rt.segmenters.torch_backend import require_torch

        torch = require_torch()
        self.device = torch.device(device)
        self.model = model.to(self.device, torch.float32).eval()
        super().__init__(spec, model.config.image_size, cache_size, source)

    def _encode(self, x: np.ndarray) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.encode(torch.from_numpy(x).to(self.device))

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        return embedding[0].detach().cpu().numpy()

    def _decode(
        self, embedding: Any, coords: np.ndarray, labels: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        dev, s = self.device, self.mask_input_size
        with torch.inference_mode():
            m = torch.zeros(1, 1, *s, device=dev)
            if mask is not None:
                m = torch.from_numpy(mask).to(dev).view(1, 1, *s)
            has = torch.tensor([0.0 if mask is None else 1.0], device=dev)
            emb, s0, s1 = embedding
            c = torch.from_numpy(coords).to(dev)[None]
            lab = torch.from_numpy(labels).to(dev).long()[None]
            low, iou, _, _ = self.model.decode(emb, s0, s1, c, lab, m, has)
        return low[0].float().cpu().numpy(), iou[0].float().cpu().numpy()
