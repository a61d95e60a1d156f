"""Backend selection for ``medsam_agent_rt.ops``: reference (NumPy) | cpu (_C) | cuda (_C).

Rules, applied per call:
- A CUDA tensor (any object whose ``__dlpack_device__()`` says kDLCUDA: torch, CuPy) -> ``cuda``;
  it needs a CUDA build of ``_C``.
- Otherwise the inputs are NumPy arrays -> ``cpu`` when ``_C`` is importable, else ``reference``
  for ops whose reference result is identical to the kernel's (``exact_fallback=True``), else an
  error that says how to rebuild.
- ``MSRT_OPS_BACKEND=reference|cpu|cuda|auto`` (default auto) forces a backend for host inputs.

CUDA calls: inputs are handed to ``_C`` as DLPack capsules made on the producer's current stream
(:func:`cuda_stream_of`, :func:`cuda_call`), outputs are allocated by the input's own framework
(:func:`empty_like_framework`) and returned as that framework's tensors; kernels run
asynchronously on that stream. Host arrays of the dtypes a kernel reads natively are read in
place through their strides (any layout, no copies).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from medsam_agent_rt._ext import has_ext, require_ext

BACKENDS = ("reference", "cpu", "cuda")
_DLPACK_CUDA = 2
_DLPACK_CPU = 1


def requested_backend() -> str:
    """The value of MSRT_OPS_BACKEND (``auto`` when unset), validated."""
    value = os.environ.get("MSRT_OPS_BACKEND", "auto").strip().lower() or "auto"
    if value not in (*BACKENDS, "auto"):
        raise ValueError(
            f"MSRT_OPS_BACKEND must be one of auto, reference, cpu, cuda; got {value!r}"
        )
    return value


def active_backend() -> str:
    """The backend host (NumPy) inputs use right now: ``reference`` or ``cpu``."""
    req = requested_backend()
    if req in ("reference", "cpu"):
        return req
    return "cpu" if has_ext() else "reference"


def is_cuda_array(x: Any) -> bool:
    """True for DLPack-capable arrays living in CUDA memory (torch.cuda tensors, CuPy arrays)."""
    if isinstance(x, np.ndarray):
        return False
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None:
        return False
    try:
        return int(dev()[0]) == _DLPACK_CUDA
    except Exception:  # noqa: BLE001 - a broken producer is simply "not CUDA"
        return False


def select(op: str, *arrays: Any, exact_fallback: bool) -> str:
    """Pick the backend for one call of ``op`` on ``arrays`` (see the module docstring)."""
    if any(is_cuda_array(a) for a in arrays):
        ext = require_ext()
        if not ext.build_info()["cuda"]:
            raise RuntimeError(
                f"ops.{op}: got CUDA inputs but medsam_agent_rt._C was built without CUDA; "
                "rebuild with a CUDA compiler on PATH (MSRT_CUDA=ON to insist)"
            )
        return "cuda"
    req = requested_backend()
    if req == "reference":
        return "reference"
    if req == "cuda":
        raise ValueError(f"ops.{op}: MSRT_OPS_BACKEND=cuda needs CUDA tensors, got host arrays")
    if has_ext():
        return "cpu"
    if req == "cpu" or not exact_fallback:
        require_ext()  # raises with the rebuild hint
    return "reference"


def as_host_array(x: Any, name: str) -> np.ndarray:
    """A host array view of ``x`` (NumPy, or a CPU torch tensor / any CPU DLPack producer)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack_device__") and int(x.__dlpack_device__()[0]) == _DLPACK_CPU:
        try:
            return np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError):
            pass
    try:
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{name} must be an array, got {type(x).__name__}") from exc


# --------------------------------------------------------------------------- CUDA interop


def cuda_stream_of(x: Any) -> int:
    """The current CUDA stream handle of x's framework on x's device (torch or CuPy), else 1
    (the legacy default stream in DLPack's convention)."""
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        import torch

        return int(torch.cuda.current_stream(x.device).cuda_stream) or 1
    if module == "cupy":
        import cupy

        with cupy.cuda.Device(x.device.id):
            return int(cupy.cuda.get_current_stream().ptr) or 1
    return 1


def to_capsule(x: Any, stream: int) -> Any:
    """x.__dlpack__(stream=...) so the producer orders its pending work before ours."""
    return x.__dlpack__(stream=stream)


def cuda_call(fn: Any, *args: Any, stream: int) -> Any:
    """``fn(*args, stream=stream)`` for a ``_C`` entry point, every CUDA array among ``args``
    handed over as a DLPack capsule made on ``stream`` (other arguments pass unchanged)."""
    return fn(*(to_capsule(a, stream) if is_cuda_array(a) else a for a in args), stream=stream)


def empty_like_framework(x: Any, shape: tuple[int, ...], dtype: str) -> Any:
    """Allocate an output on x's device with x's own framework (its caching allocator)."""
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype), device=x.device)
    if module == "cupy":
        import cupy

        with cupy.cuda.Device(x.device.id):
            return cupy.empty(shape, dtype=dtype)
    raise TypeError(
        f"CUDA inputs must be torch tensors or CuPy arrays to allocate outputs, got {type(x)!r}"
    )


def framework_of(x: Any) -> str:
    """``torch`` or ``cupy`` for a CUDA array (the frameworks the CUDA path allocates with)."""
    module = type(x).__module__.split(".")[0]
    if module not in ("torch", "cupy"):
        raise TypeError(f"CUDA inputs must be torch tensors or CuPy arrays, got {type(x)!r}")
    return module


def dtype_name(x: Any) -> str:
    """The dtype of a NumPy / torch / CuPy array as a NumPy-style name ('float32', 'bool', ...)."""
    return str(x.dtype).replace("torch.", "")


def cast_framework(x: Any, dtype: str) -> Any:
    """x converted to ``dtype`` ('float32', 'int64', ...) by its own framework, on its device."""
    if framework_of(x) == "torch":
        import torch

        return x.to(getattr(torch, dtype))
    return x.astype(dtype)


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy of a CUDA array (synchronises with its stream)."""
    if framework_of(x) == "torch":
        return x.detach().cpu().numpy()
    return x.get()


def cuda_device_index(x: Any) -> int:
    """The CUDA device ordinal of a torch / CuPy array."""
    return int(x.__dlpack_device__()[1])


def same_cuda_device(arrays: dict[str, Any]) -> None:
    """Raise ValueError naming the first argument that is not on the first one's CUDA device."""
    items = list(arrays.items())
    first_name, first = items[0]
    want = cuda_device_index(first)
    for name, a in items[1:]:
        if not is_cuda_array(a) or cuda_device_index(a) != want:
            where = f"cuda:{cuda_device_index(a)}" if is_cuda_array(a) else "host memory"
            raise ValueError(f"{name} must be on cuda:{want} like {first_name}, got {where}")
