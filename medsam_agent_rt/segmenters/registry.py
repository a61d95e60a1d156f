"""``build_segmenter``: one call from a spec to a ready Segmenter.

spec: "litemedsam" (the embedded default, shipped in the wheel), "litemedsam-click" (LiteMedSAM
with its decoder fine-tuned for clicks, shipped too), a checkpoint file
(``.pth`` / ``.pt`` / ``.safetensors`` of SAM, MedSAM, LiteMedSAM, MobileSAM, SAM2.1 or MedSAM2;
see ``segmenters.checkpoints``), or an exported model directory (``medsam-agent export sam``: ONNX
graphs + manifest, see ``segmenters.exported``).
backend: "torch" runs a checkpoint; "onnx" (ONNX Runtime) and "trt" (TensorRT engines built from
the ONNX graphs on first use) run an exported model directory.
"""

from __future__ import annotations

from pathlib import Path

from medsam_agent_rt.segmenters.base import Segmenter

BACKENDS = ("torch", "onnx", "trt")
EMBEDDED = ("litemedsam", "litemedsam-click")


def load_embedded(spec: str):
    """(SamModel, source path) of an embedded segmenter ``spec`` (one of EMBEDDED)."""
    from medsam_agent_rt import assets
    from medsam_agent_rt.segmenters import checkpoints

    if spec == "litemedsam":
        return checkpoints.load_embedded_litemedsam(), str(assets.lite_medsam_path())
    if spec == "litemedsam-click":
        return checkpoints.load_embedded_litemedsam_click(), str(assets.lite_medsam_click_path())
    raise ValueError(f"embedded segmenters are {', '.join(EMBEDDED)}; got {spec!r}")


def _build_exported(path: Path, backend: str, device: str, cache_size: int, family, options):
    """OnnxSegmenter / TrtSegmenter over an exported model directory (manifest verified)."""
    from medsam_agent_rt.segmenters.exported import load_export
    from medsam_agent_rt.segmenters.sam2.onnx import Sam2OnnxSegmenter, is_sam2_export

    if is_sam2_export(path) and backend == "onnx":  # SAM2 graphs (segmenters.sam2.onnx)
        options.pop("verify", None)
        return Sam2OnnxSegmenter(path, cache_size=cache_size, **options)
    if backend == "torch":
        raise ValueError(
            f"{path} is an exported model directory: run it with backend='onnx' or 'trt' "
            "(backend='torch' needs a checkpoint file)"
        )
    exported = load_export(path, verify=options.pop("verify", True))
    if family is not None and family != exported.family:
        raise ValueError(f"{path} holds a {exported.family!r} model, got family={family!r}")
    if backend == "onnx":
        from medsam_agent_rt.segmenters.onnx_backend import OnnxSegmenter

        return OnnxSegmenter(exported, device=device, cache_size=cache_size, **options)
    from medsam_agent_rt.segmenters.trt_backend import TrtSegmenter

    return TrtSegmenter(exported, device=device, cache_size=cache_size, **options)


def build_segmenter(
    spec: str = "litemedsam",
    backend: str = "torch",
    device: str = "cpu",
    cache_size: int = 8,
    family: str | None = None,
    **options,
) -> Segmenter:
    """A Segmenter for ``spec`` on ``backend``.

    device: "cpu" | "cuda" | "cuda:N"; cache_size: image embeddings kept (LRU);
    family: force the checkpoint family where the file cannot tell (SAM vs MedSAM ViT-B);
    options: backend-specific keywords (torch: image_size for SAM2 checkpoints; onnx: precision, providers, intra_op_threads,
    allow_spinning; trt: precision, cache_dir, max_prompt_tokens, ...; both: verify)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    spec = str(spec)
    path = Path(spec)
    if spec not in EMBEDDED and path.is_dir():
        return _build_exported(path, backend, device, cache_size, family, dict(options))
    if backend != "torch":
        raise ValueError(
            f"backend {backend!r} runs exported models: export {spec!r} first with "
            f"`medsam-agent export sam {spec} --out DIR`, then build_segmenter(DIR, "
            f"backend={backend!r})"
        )
    image_size = options.pop("image_size", None)  # SAM2 files: 1024 (default) or 512
    if options:
        raise TypeError(f"backend 'torch' takes no options {sorted(options)}")
    from medsam_agent_rt.segmenters.torch_backend import TorchSegmenter, require_torch

    require_torch()  # a clear "install the torch extra" before any model code imports torch
    if spec in EMBEDDED:
        if family not in (None, spec):
            raise ValueError(
                f"spec {spec!r} is the LiteMedSAM family {spec!r}, got family={family!r}"
            )
        model, source = load_embedded(spec)
        return TorchSegmenter(model, spec, device, cache_size, source)
    if not path.is_file():
        raise FileNotFoundError(
            f"segmenter spec {spec!r} is neither {' nor '.join(map(repr, EMBEDDED))} nor an "
            "existing checkpoint file "
            "or exported model directory"
        )
    from medsam_agent_rt.segmenters.checkpoints import load_checkpoint

    loaded = load_checkpoint(path, family=family, image_size=image_size)
    if loaded.family.name in ("sam2", "medsam2"):
        from medsam_agent_rt.segmenters.sam2.segmenter import Sam2TorchSegmenter

        return Sam2TorchSegmenter(loaded.model, loaded.family, device, cache_size, str(path))
    return TorchSegmenter(loaded.model, loaded.family, device, cache_size, str(path))
