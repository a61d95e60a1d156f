"""Shared helper for the CUDA variants of the kernel cases: torch with a visible GPU, else None."""

from __future__ import annotations

from typing import Any


def cuda_torch() -> Any | None:
    """The torch module when it can run CUDA and ``_C`` has CUDA kernels, else None."""
    try:
        import torch

        from medsam_agent_rt import cuda_available
    except ImportError:
        return None
    return torch if torch.cuda.is_available() and cuda_available() else None


def synced(torch: Any, fn: Any) -> Any:
    """fn followed by a device synchronisation, so wall time covers the GPU work."""

    def run() -> None:
        fn()
        torch.cuda.synchronize()

    return run
