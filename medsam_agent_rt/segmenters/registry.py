"""``build_segmenter``: one call from a spec to a ready Segmenter.

spec: "litemedsam" (the embedded default, shipped in the wheel), "litemedsam-click" (LiteMedSAM
with its decoder fine-tuned for clicks, shipped too), a checkpoint file
(``.pth`` / ``.pt`` / ``.safetensors`` of SAM, MedSAM, LiteMedSAM, MobileSAM, SAM2.1 or MedSAM2;
see ``segmenters.checkpoints``), or an exported model directory (``medsam-agent export sam``: ONNX
graphs + manifest, see ``segmenters.exported``).
backend: "torch" runs a checkpoint; "onnx" (ONNX Runtime) and "trt" (TensorRT engines built from
the ONNX graphs on first use) and "openvino" (CPU; compiled models cached on disk) run an
exported model directory — the embedded segmenters' own
export directory when the wheel ships one (``assets.embedded_onnx_dir``; litemedsam-click's names
LiteMedSAM's encoder graphs). "auto" (the default, :func:`resolve_backend`) runs an embedded
segmenter's shipped graphs on a CPU with OpenVINO when installed, else ONNX Runtime when
importable (no torch needed), and torch otherwise (and on CUDA).
"""

from __future__ import annotations

from pathlib import Path

from medsam_agent_rt.segmenters.base import Segmenter

BACKENDS = ("auto", "torch", "onnx", "openvino", "trt")
EMBEDDED = ("litemedsam", "litemedsam-click")
#: The segmenter every entry point runs when none is named (build_segmenter, segment, serve,
#: track, eval, info, the evaluation runner). Switching the package's default is this one line
#: (litemedsam-click: README, "litemedsam-click", for the rule and the licence consequence).
#: v9: box-only demo Dice 0.835 vs LiteMedSAM's 0.808 (the rule allows -0.005).
DEFAULT_SEGMENTER = "litemedsam-click"


def importable(module: str) -> bool:
    """Whether ``import module`` works here (a failing import is not cached by Python)."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def cpu_backend() -> str | None:
    """The exported-model backend "auto" runs on a CPU: "openvino" when installed (fastest here,
    README "CPU speed"), else "onnx" when onnxruntime is, else None."""
    for backend, module in (("openvino", "openvino"), ("onnx", "onnxruntime")):
        if importable(module):
            return backend
    return None


def resolve_backend(spec: str, backend: str = "auto", device: str = "cpu") -> str:
    """The concrete backend ``backend`` means for ``spec`` on ``device``: itself unless "auto";
    "auto" is :func:`cpu_backend` (openvino, else onnx) for an embedded segmenter whose graphs
    the wheel ships when the device is the CPU, "onnx" for an exported model directory, else
    "torch" (checkpoint files; no CPU runtime installed; CUDA, where the torch backend has the
    device-resident decode)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend != "auto":
        return backend
    from medsam_agent_rt.assets import embedded_onnx_dir

    spec = str(spec)
    if spec in EMBEDDED:
        if device == "cpu" and embedded_onnx_dir(spec) is not None:
            return cpu_backend() or "torch"
        return "torch"
    return "onnx" if Path(spec).is_dir() else "torch"


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
    if backend == "openvino":
        from medsam_agent_rt.segmenters.openvino_backend import OpenVinoSegmenter

        return OpenVinoSegmenter(exported, device=device, cache_size=cache_size, **options)
    from medsam_agent_rt.segmenters.trt_backend import TrtSegmenter

    return TrtSegmenter(exported, device=device, cache_size=cache_size, **options)


def _build_embedded_exported(spec, backend, device, cache_size, family, options):
    """An embedded segmenter on an exported-model backend, over the directory the wheel ships."""
    from medsam_agent_rt.assets import embedded_onnx_dir

    if family not in (None, spec):
        raise ValueError(f"spec {spec!r} is the LiteMedSAM family {spec!r}, got family={family!r}")
    directory = embedded_onnx_dir(spec)
    if directory is None:
        raise ValueError(
            f"this install ships no ONNX graphs of {spec!r}: export them with `medsam-agent export "
            f"sam {spec} --out DIR`, then build_segmenter(DIR, backend={backend!r}), or use "
            "backend='torch'"
        )
    # The wheel's RECORD already guards the shipped files; hashing ~47 MB per build is skipped.
    options.setdefault("verify", False)
    return _build_exported(directory, backend, device, cache_size, None, options)


def build_segmenter(
    spec: str = DEFAULT_SEGMENTER,
    backend: str = "auto",
    device: str = "cpu",
    cache_size: int = 8,
    family: str | None = None,
    **options,
) -> Segmenter:
    """A Segmenter for ``spec`` on ``backend`` ("auto": see :func:`resolve_backend`).

    device: "cpu" | "cuda" | "cuda:N"; cache_size: image embeddings kept (LRU);
    family: force the checkpoint family where the file cannot tell (SAM vs MedSAM ViT-B);
    options: backend-specific keywords (torch: image_size for SAM2 checkpoints; onnx: precision,
    providers, intra_op_threads, allow_spinning; openvino: precision, threads, cache_dir; trt:
    precision, cache_dir, max_prompt_tokens, ...; all three: verify)."""
    spec = str(spec)
    backend = resolve_backend(spec, backend, device)
    path = Path(spec)
    if spec not in EMBEDDED and path.is_dir():
        return _build_exported(path, backend, device, cache_size, family, dict(options))
    if spec in EMBEDDED and backend != "torch":
        return _build_embedded_exported(spec, backend, device, cache_size, family, dict(options))
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


def _dist_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def available_backends() -> dict[str, dict]:
    """{backend: {"version": str | None, ...}} of the model runtimes installed here (package
    metadata only, nothing heavy imported; ONNX Runtime adds its execution providers)."""
    out: dict[str, dict] = {
        "torch": {"version": _dist_version("torch")},
        "onnx": {"version": _dist_version("onnxruntime") or _dist_version("onnxruntime-gpu")},
        "openvino": {"version": _dist_version("openvino")},
        "trt": {"version": _dist_version("tensorrt")},
    }
    if out["onnx"]["version"] and importable("onnxruntime"):
        import onnxruntime

        out["onnx"]["providers"] = onnxruntime.get_available_providers()
    return out


def default_choice(spec: str = DEFAULT_SEGMENTER, device: str = "cpu") -> str:
    """What ``build_segmenter(spec, device=device)`` runs, e.g. "openvino bf16" or "torch fp32"
    (nothing is loaded)."""
    backend = resolve_backend(spec, "auto", device)
    if backend == "torch":
        return "torch fp32"
    from medsam_agent_rt.assets import embedded_onnx_dir
    from medsam_agent_rt.segmenters.exported import default_precision, load_export

    directory = embedded_onnx_dir(spec) if spec in EMBEDDED else Path(spec)
    if backend == "openvino":
        from medsam_agent_rt.segmenters.openvino_backend import default_precision as ov_default

        return f"openvino {ov_default()}"
    return f"{backend} {default_precision(load_export(directory, verify=False), device)}"
