"""``build_segmenter``: one call from a spec to a ready Segmenter.

spec: "litemedsam" (the embedded default, shipped in the wheel), a checkpoint file
(``.pth`` / ``.pt`` / ``.safetensors`` of SAM, MedSAM, LiteMedSAM or MobileSAM; see
``segmenters.checkpoints``), or an exported model directory (ONNX / TensorRT, with a manifest).
backend: "torch" today; "onnx" and "trt" are the hook for the export task and raise a clear
"not built yet" error until they exist.
"""

from __future__ import annotations

from pathlib import Path

from medsam_agent_rt.segmenters.base import Segmenter

BACKENDS = ("torch", "onnx", "trt")
EMBEDDED = ("litemedsam",)


def _not_built(backend: str, spec: str) -> NotImplementedError:
    return NotImplementedError(
        f"segmenter backend {backend!r} is not built yet (spec {spec!r}); use backend='torch'"
    )


def build_segmenter(
    spec: str = "litemedsam",
    backend: str = "torch",
    device: str = "cpu",
    cache_size: int = 8,
    family: str | None = None,
) -> Segmenter:
    """A Segmenter for ``spec`` on ``backend``.

    device: "cpu" | "cuda" | "cuda:N" (torch backend); cache_size: image embeddings kept (LRU);
    family: force the checkpoint family where the file cannot tell (SAM vs MedSAM ViT-B)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    spec = str(spec)
    path = Path(spec)
    if spec not in EMBEDDED and path.is_dir():
        # Exported models (encoder/decoder ONNX + manifest.json) belong to the onnx/trt backends.
        raise _not_built(backend if backend != "torch" else "onnx", spec)
    if backend != "torch":
        raise _not_built(backend, spec)
    from medsam_agent_rt.segmenters.torch_backend import TorchSegmenter, require_torch

    require_torch()  # a clear "install the torch extra" before any model code imports torch
    if spec in EMBEDDED:
        if family not in (None, "litemedsam"):
            raise ValueError(f"spec 'litemedsam' is the LiteMedSAM family, got family={family!r}")
        from medsam_agent_rt.assets import lite_medsam_path
        from medsam_agent_rt.segmenters.checkpoints import load_embedded_litemedsam

        model = load_embedded_litemedsam()
        return TorchSegmenter(model, "litemedsam", device, cache_size, str(lite_medsam_path()))
    if not path.is_file():
        raise FileNotFoundError(
            f"segmenter spec {spec!r} is neither 'litemedsam' nor an existing checkpoint file "
            "or exported model directory"
        )
    from medsam_agent_rt.segmenters.checkpoints import load_checkpoint

    loaded = load_checkpoint(path, family=family)
    return TorchSegmenter(loaded.model, loaded.family, device, cache_size, str(path))
