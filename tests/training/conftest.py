"""Fixtures of the training tests: one tiny Qwen3-VL checkpoint (coarse 32-px patches, so a
512 view is 64 tokens) built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # training_fakes (importlib mode)


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from medsam_agent_rt.training.tiny_qwen import TinyQwenSize, build_tiny_qwen

    return build_tiny_qwen(
        tmp_path_factory.mktemp("tiny_policy"), "qwen3_vl", seed=3, size=TinyQwenSize(vision_patch=32)
    )
