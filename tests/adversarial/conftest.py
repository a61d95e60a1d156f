"""Fixtures of the adversarial suite: a cheap fake segmenter behind the CLI, case files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _fakes, _hostile (importlib mode)

from _fakes import BoxToolFactory  # noqa: E402


@pytest.fixture
def fake_segmenter(monkeypatch):
    """``build_segmenter`` (what the CLI and the evaluation runner call) returns a BoxToolFactory."""
    import medsam_agent_rt.segmenters as segmenters

    factory = BoxToolFactory()
    monkeypatch.setattr(segmenters, "build_segmenter", lambda *a, **k: factory)
    return factory


def _package_data(package: str, *parts: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.exists() else None


@pytest.fixture(scope="session")
def pydicom_files() -> Path:
    """pydicom's bundled test files (read in place, never downloaded)."""
    pytest.importorskip("pydicom")
    d = _package_data("pydicom", "data", "test_files")
    if d is None:
        pytest.skip("pydicom's bundled test files are not installed")
    return d


@pytest.fixture(scope="session")
def nibabel_files() -> Path:
    """nibabel's bundled test data (NIfTI-1 / NIfTI-2 files)."""
    pytest.importorskip("nibabel")
    d = _package_data("nibabel", "tests", "data")
    if d is None:
        pytest.skip("nibabel's bundled test data is not installed")
    return d
