"""Backend selection for ``medsam_agent_rt.ops``: reference (NumPy) | cpu (_C) | cuda (_C).

Rules, applied per call:
- A CUDA tensor (any object whose ``__dlpack_device__()`` says kDLCUDA: torch, CuPy) -> ``cuda``;
  it needs a CUDA build of ``_C``.
- Otherwise the inputs are NumPy arrays -> ``cpu`` when ``_C`` is importable, else ``reference``
  for ops whose reference result is identical to the kernel's (``exact_fallback=True``), else an
  error that says how to rebuild.
- ``MSRT_OPS_BACKEND=reference|cpu|cuda|auto`` (default auto) forces a backend for host inputs.
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
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None or isinstance(x, np.ndarray):
        return False
    try:
        return int(dev()[0]) == _DLPACK_CUDA
    except Exception:  # noqa: BLE001 - a broken producer is simply "not CUDA"
        return False


def select(op: str, *arrays: Any, exact_fallback: bool) -> str:
    """Pick the backend for one call of ``op`` on ``arrays`` (see the module docstring)."""
    if any(is_cuda_array(a) for a in arrays if a is not None):
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
