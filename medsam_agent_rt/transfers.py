"""Host <-> device traffic of the runtime: a byte counter and the one function that copies a
device array to the host.

Every explicit copy the runtime makes between host memory and a GPU (image upload, prompt tokens,
low-res logits, the 512 view the policy sees, the final mask) is counted in :data:`METER`; scalar
reads inside ``ops`` kernels (a component count, metric counts: a few bytes) are not. On a CPU
tool nothing crosses and the counters stay 0. ``python -m benchmarks.latency`` reports the bytes
per turn. NumPy only.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class TransferMeter:
    """Bytes copied host -> device (``h2d``) and device -> host (``d2h``); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.h2d = 0
        self.d2h = 0

    def add(self, direction: str, nbytes: int) -> None:
        if direction not in ("h2d", "d2h"):
            raise ValueError(f"direction must be 'h2d' or 'd2h', got {direction!r}")
        with self._lock:
            setattr(self, direction, getattr(self, direction) + int(nbytes))

    def snapshot(self) -> tuple[int, int]:
        """(h2d, d2h) bytes so far."""
        with self._lock:
            return self.h2d, self.d2h


METER = TransferMeter()


def is_device_array(x: Any) -> bool:
    """True for a CUDA array (torch / CuPy, DLPack device kCUDA)."""
    from medsam_agent_rt.ops._dispatch import is_cuda_array

    return is_cuda_array(x)


def nbytes(x: Any) -> int:
    """Size in bytes of a NumPy array or a torch / CuPy tensor."""
    n = getattr(x, "nbytes", None)
    if n is None:  # torch tensors: numel * element size
        n = x.numel() * x.element_size()
    return int(n)


def to_host(x: Any) -> np.ndarray:
    """A NumPy array of ``x``: device arrays are copied (and counted), torch CPU tensors viewed,
    NumPy arrays returned as they are."""
    if isinstance(x, np.ndarray):
        return x
    if is_device_array(x):
        from medsam_agent_rt.ops._dispatch import to_host as copy

        METER.add("d2h", nbytes(x))
        return copy(x)
    if hasattr(x, "detach"):  # a torch CPU tensor
        return x.detach().numpy()
    return np.asarray(x)
