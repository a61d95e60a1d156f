"""Loader for the compiled extension ``medsam_agent_rt._C``.

The package imports without it; code that needs a native kernel calls :func:`require_ext`, which
raises an error saying how to rebuild. ``medsam_agent_rt.ops`` falls back to the NumPy reference
only for kernels whose reference result is identical.
"""

from __future__ import annotations

import importlib
import platform
from types import ModuleType
from typing import Any

__all__ = ["has_ext", "require_ext", "cuda_available", "build_info", "ExtensionMissingError"]

_REBUILD_HINT = (
    "rebuild it with `pip install --no-build-isolation -e .` (or `pip install .`) from the "
    "repository root; it needs a C++17 compiler, CMake >= 3.24 and pybind11"
)


class ExtensionMissingError(ImportError):
    """The compiled extension ``medsam_agent_rt._C`` could not be imported."""


_ext: ModuleType | None = None
_ext_error: BaseException | None = None
_loaded = False


def _load() -> ModuleType | None:
    global _ext, _ext_error, _loaded
    if not _loaded:
        _loaded = True
        try:
            _ext = importlib.import_module("medsam_agent_rt._C")
        except ImportError as exc:  # not built, or built for another Python
            _ext, _ext_error = None, exc
    return _ext


def has_ext() -> bool:
    """True when ``medsam_agent_rt._C`` imports."""
    return _load() is not None


def require_ext() -> ModuleType:
    """Return ``medsam_agent_rt._C`` or raise :class:`ExtensionMissingError` with a rebuild hint."""
    ext = _load()
    if ext is None:
        raise ExtensionMissingError(
            f"medsam_agent_rt._C is not available ({_ext_error}); {_REBUILD_HINT}"
        )
    return ext


def cuda_available() -> bool:
    """True when ``_C`` was compiled with CUDA and at least one CUDA device is visible."""
    ext = _load()
    return bool(ext is not None and ext.build_info()["cuda"] and ext.cuda_device_count() > 0)


def build_info() -> dict[str, Any]:
    """Facts about the installed build, safe to call without the extension or a GPU.

    Returns a JSON-serialisable dict: package version, whether ``_C`` loaded (and why not),
    compiled with CUDA?, CUDA version and architectures, compiler, the CPU kernels' default thread
    count (``MSRT_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs available), visible CUDA
    devices, the ops backend in use, and the Python / platform.
    """
    from medsam_agent_rt import __version__
    from medsam_agent_rt.ops import active_backend

    info: dict[str, Any] = {
        "package_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "extension": has_ext(),
    }
    ext = _load()
    if ext is None:
        info["extension_error"] = str(_ext_error)
        info.update(cuda=False, cuda_version=None, cuda_archs=None, compiler=None, cpu_threads=None)
        info["cuda_devices"] = 0
    else:
        info.update(ext.build_info())
        info["cuda_devices"] = int(ext.cuda_device_count())
        info["cuda_runtime_version"] = int(ext.cuda_runtime_version())
    info["ops_backend"] = active_backend()
    return info
