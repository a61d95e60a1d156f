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
        tmp_path_factory.mktemp("tiny_policy"),
        "qwen3_vl",
        seed=3,
        size=TinyQwenSize(vision_patch=32),
    )


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread avoids oversubscription stalls
    (backward passes were 5-10x slower with two threads under load)."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
