"""TensorRT engines for the exported SAM graphs: build from ONNX, cache on disk, run.

Supports the TensorRT 10.x (Jetson) and 11.x Python APIs. What differs between them and how it
is handled:

- Precision: 11.x removed every weak-typing builder flag (``BuilderFlag.FP16`` etc.); networks
  are always strongly typed. We never use the flag: FP16 comes from the FP16 ONNX graph, and on
  10.x the network is created with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` so the graph's
  types are obeyed the same way (on 11.x that flag is deprecated and ignored: we pass none).
- FP32 engines clear ``BuilderFlag.TF32`` where the flag exists (TF32 matmuls would cost ~1e-3 of
  parity); pass ``allow_tf32=True`` to trade that for speed.
- Unchanged in both and used here: ``create_builder_config``, ``set_memory_pool_limit(WORKSPACE)``,
  ``create_optimization_profile`` / ``set_shape``, ``build_serialized_network``,
  ``deserialize_cuda_engine``, the name-based I/O API (``num_io_tensors``, ``get_tensor_name``,
  ``get_tensor_mode``, ``get_tensor_dtype``), ``set_input_shape``, ``set_tensor_address`` and
  ``execute_async_v3``.

Engines are cached under ``cache_dir`` keyed by (ONNX SHA-256, TensorRT version, GPU name and
compute capability, precision, optimisation profile): :func:`engine_key`, :func:`engine_path`.
Device memory: PyTorch CUDA tensors (a CUDA build of torch is required; cuda-python is not
used), allocated ONCE per engine at the profile's largest shapes and bound by tensor name.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENGINE_SUFFIX = ".engine"


def require_tensorrt():
    """The tensorrt module (10.x or 11.x), or an ImportError naming the extra to install."""
    try:
        import tensorrt
    except ImportError as e:
        raise ImportError(
            "the trt segmenter backend needs TensorRT 10 or 11: pip install "
            "'medsam-agent-rt[trt]' (on Jetson use the JetPack python3-libnvinfer package)"
        ) from e
    major = int(str(tensorrt.__version__).split(".")[0])
    if major < 10:
        raise ImportError(f"TensorRT 10.x or 11.x is required, found {tensorrt.__version__}")
    return tensorrt


def default_cache_dir() -> Path:
    """$MSRT_TRT_CACHE, else $XDG_CACHE_HOME/medsam-agent-rt/trt, else
    ~/.cache/medsam-agent-rt/trt."""
    from medsam_agent_rt.segmenters.exported import derived_cache_dir

    return derived_cache_dir("trt", "MSRT_TRT_CACHE")


@dataclass(frozen=True)
class TokenProfile:
    """The TensorRT optimisation profile of the decoder's prompt-token axis (T of
    ``sparse_embeddings`` (1, T, C)). SAM's token list is the clicks, plus a pad token when there
    is no box, plus 2 box corners: a box is 2 tokens, a box and 2 clicks 4 (``opt``, kernels are
    tuned for it); ``max`` 16 covers a box and 14 clicks (episodes stop far earlier). Raise
    ``max`` for longer click histories (another engine is built and cached)."""

    min: int = 1
    opt: int = 4
    max: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(
                f"token profile must satisfy 1 <= min <= opt <= max, got "
                f"min={self.min}, opt={self.opt}, max={self.max}"
            )


def decoder_profile_shapes(
    embedding_shape: tuple[int, ...], mask_input_size: tuple[int, int], profile: TokenProfile
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """{input name: (min, opt, max) shape} of the decoder for ``profile``; only
    ``sparse_embeddings`` varies."""
    c = int(embedding_shape[1])
    emb = tuple(int(v) for v in embedding_shape)
    mask = (1, 1, int(mask_input_size[0]), int(mask_input_size[1]))
    fixed = {"image_embeddings": emb, "mask_input": mask, "has_mask_input": (1,)}
    shapes = {name: (s, s, s) for name, s in fixed.items()}
    shapes["sparse_embeddings"] = ((1, profile.min, c), (1, profile.opt, c), (1, profile.max, c))
    return shapes


def engine_key(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    precision: str,
    profile: TokenProfile | None,
    allow_tf32: bool = False,
) -> str:
    """SHA-256 (hex) of the canonical JSON of everything an engine depends on."""
    fields = {
        "onnx_sha256": onnx_sha256,
        "tensorrt": str(trt_version),
        "gpu": str(gpu_name),
        "compute_capability": list(compute_capability),
        "precision": precision,
        "profile": None if profile is None else [profile.min, profile.opt, profile.max],
        "allow_tf32": bool(allow_tf32),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def engine_path(cache_dir: str | Path, family: str, part: str, precision: str, key: str) -> Path:
    """``cache_dir/{family}-{part}-{precision}-{key[:24]}.engine`` (a ``.json`` sidecar next to
    it records the key fields)."""
    return Path(cache_dir) / f"{family}-{part}-{precision}-{key[:24]}{ENGINE_SUFFIX}"


def build_serialized_engine(
    trt: Any,
    onnx_path: str | Path,
    shapes: dict[str, tuple] | None,
    precision: str,
    workspace_bytes: int = 1 << 30,
    allow_tf32: bool = False,
) -> bytes:
    """Parse ``onnx_path`` (external data resolved next to it) and build a serialized engine;
    ``shapes``: {input: (min, opt, max)} for one optimisation profile, None when all inputs are
    static. Raises RuntimeError with the parser's errors."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0
    if major == 10:  # 11.x: always strongly typed, the flag is deprecated
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None and precision == "fp32" and not allow_tf32:
        config.clear_flag(tf32)
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log)")
    return bytes(plan)


def load_or_build(
    trt: Any,
    onnx_path: Path,
    path: Path,
    key_fields: dict[str, Any],
    build: Any,
) -> tuple[bytes, bool]:
    """(serialized engine, cache hit). Reads ``path`` when present; otherwise calls ``build()``
    and writes the engine (atomically) and its JSON sidecar. A cache file TensorRT cannot
    deserialize is rebuilt by the caller (see TrtEngine)."""
    from medsam_agent_rt.io.atomic import atomic_write_bytes

    if path.is_file():
        return path.read_bytes(), True
    print(
        f"building TensorRT engine from {onnx_path.name} (once; cached at {path})",
        file=sys.stderr,
        flush=True,
    )
    plan = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, plan)
    sidecar = path.with_suffix(".json")
    atomic_write_bytes(sidecar, (json.dumps(key_fields, indent=2) + "\n").encode())
    return plan, False


class TrtEngine:
    """One deserialized engine with its execution context and device buffers for every I/O
    tensor (allocated once, at the profile's largest shapes) bound by name, run on ``stream``
    (a ``torch.cuda.Stream``; engines sharing a stream are ordered without host syncs).

    ``run(inputs)`` copies host arrays into the input buffers (or binds a given CUDA tensor in
    place), sets the dynamic input shapes and enqueues ``execute_async_v3``; it returns the
    output buffers' views (torch CUDA tensors, valid until the next run; read them on
    ``stream``)."""

    def __init__(self, trt: Any, plan: bytes, stream: Any) -> None:
        import torch

        self.torch = torch
        self.stream = stream
        self.device = stream.device
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (stale or corrupt)")
        self.context = self.engine.create_execution_context()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.buffers: dict[str, Any] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
            shape = tuple(self.engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                shape = tuple(self.engine.get_tensor_profile_shape(name, 0)[2])
            dtype = _torch_dtype(torch, trt, self.engine.get_tensor_dtype(name))
            self.buffers[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())

    def max_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.buffers[name].shape)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            for name, value in inputs.items():
                buf = self.buffers[name]
                if isinstance(value, torch.Tensor) and value.is_cuda:
                    # already on the device (a cached embedding): bind it where it is
                    value = value.contiguous()
                    self.context.set_tensor_address(name, value.data_ptr())
                    shape = tuple(value.shape)
                else:
                    self.context.set_tensor_address(name, buf.data_ptr())
                    host = torch.from_numpy(value)
                    shape = tuple(host.shape)
                    buf.view(-1)[: host.numel()].copy_(host.reshape(-1), non_blocking=False)
                self.context.set_input_shape(name, shape)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            out = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                n = 1
                for d in shape:
                    n *= d
                out[name] = self.buffers[name].view(-1)[:n].view(shape)
        return out


def _torch_dtype(torch: Any, trt: Any, dt: Any) -> Any:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}
    if dt not in table:
        raise TypeError(f"unsupported TensorRT I/O dtype {dt}")
    return table[dt]
