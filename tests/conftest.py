"""Shared fixtures and markers. Tests never download: data comes from ../shared/data (or
$MSRT_SHARED_DATA) and tiny models are built from configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """../shared/data next to the checkout (or MSRT_SHARED_DATA), None if absent."""
    candidates = [
        os.environ.get("MSRT_SHARED_DATA"),
        REPO.parent / "shared" / "data",
        REPO / "shared" / "data",
    ]
    for c in candidates:
        if c and Path(c, "biomedparse-demo").is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The BiomedParse demo set (27 images, 71 masks); skips where it is absent."""
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared/data/biomedparse-demo not found (set MSRT_SHARED_DATA)")
    return root / "biomedparse-demo"


def _cuda_ready() -> bool:
    try:
        from medsam_agent_rt import cuda_available

        return cuda_available()
    except Exception:  # noqa: BLE001
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = _cuda_ready()
    for item in items:
        if "needs_cuda" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU and a CUDA build of _C"))
        if "needs_trt" in item.keywords:
            try:
                import tensorrt  # noqa: F401
            except ImportError:
                item.add_marker(pytest.mark.skip(reason="needs TensorRT"))
        if "needs_llama" in item.keywords:
            try:
                import llama_cpp  # noqa: F401
            except ImportError:
                item.add_marker(pytest.mark.skip(reason="needs llama-cpp-python"))
