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
