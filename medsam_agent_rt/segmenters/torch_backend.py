"""The PyTorch backend: :class:`TorchSegmenter`, a SAM-family model behind the Segmenter API.

``encode`` preprocesses the image the family's official way and runs the image encoder once
(the shared content-keyed store skips it for images seen before); ``decode`` maps the prompts to
the model input frame, fuses them with ``ops.encode_sparse_prompts``, runs the prompt encoder's
mask path and the mask decoder, and upsamples with ``ops.postprocess_masks``. All of that except
the two model calls lives in ``segmenters.predictor`` (shared with onnx / trt).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from medsam_agent_rt import ops
from medsam_agent_rt.segmenters.families import FamilySpec, family_spec
from medsam_agent_rt.segmenters.predictor import SamPredictorBase
from medsam_agent_rt.transfers import METER, to_host


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


class TorchSegmenter(SamPredictorBase):
    """A SAM-family model in PyTorch (float32, inference mode) implementing ``Segmenter``.

    model: a ``modeling.sam.SamModel`` with its weights; family: a FamilySpec or family name
    (its preprocessing is adapted to the model's input size); device: "cpu", "cuda", "cuda:1";
    cache_size: image embeddings kept (LRU by image content; 0 disables the cache). The cache,
    prompt checks, fusion and post-processing are shared with the other backends
    (``segmenters.predictor``).
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
        spec = family_spec(family) if isinstance(family, str) else family
        size = int(model.config.input_size)
        self.spec = replace(spec, preprocessing=replace(spec.preprocessing, input_size=size))
        self.device = torch.device(device)
        self.model = model.to(self.device, torch.float32).eval()
        super().__init__(
            spec.name,
            self.spec.preprocessing,
            prompt_encoder_weights(model.prompt_encoder),
            tuple(model.mask_input_size),
            cache_size,
            source,
        )

    @property
    def on_device(self) -> bool:
        return self.device.type == "cuda"

    def _upload(self, x: np.ndarray) -> Any:
        """A host array on the model's device (counted when it crosses to a GPU)."""
        if self.device.type == "cuda":
            METER.add("h2d", x.nbytes)
        return require_torch().from_numpy(np.ascontiguousarray(x)).to(self.device)

    def _encode(self, x: np.ndarray) -> Any:
        torch = require_torch()
        with torch.inference_mode():
            return self.model.encode(self._upload(x))

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        return to_host(embedding.detach()).copy()

    def _release(self) -> None:
        self.model = None  # the weights go with the last reference

    def _decode_device(self, embedding: Any, sparse: np.ndarray, mask: Any) -> tuple[Any, Any]:
        torch = require_torch()
        size = self.mask_input_size
        with torch.inference_mode():
            if mask is None:
                m = torch.zeros(1, 1, *size, device=self.device)
            elif isinstance(mask, np.ndarray):
                m = self._upload(mask).view(1, 1, *size)
            else:  # already on the device (the previous turn's logits)
                m = mask.reshape(1, 1, *size).float()
            has = self._upload(np.array([0.0 if mask is None else 1.0], np.float32))
            tokens = self._upload(np.asarray(sparse, np.float32))[None]
            low, iou = self.model.decode(embedding, tokens, m, has)
        return low[0].float(), iou[0].float()

    def _decode(
        self, embedding: Any, sparse: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        low, iou = self._decode_device(embedding, sparse, mask)
        return to_host(low), to_host(iou)
