"""Fixtures of the GGUF tests: tiny random-weight Qwen3-VL / Qwen2.5-VL checkpoints (the real
architectures at toy sizes, built from configs) and their GGUF exports, built once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """{"qwen3_vl": DIR, "qwen2_5_vl": DIR}: Qwen3-VL with 32-px patches (64 tokens per 512
    view, one deepstack layer) and Qwen2.5-VL with its real 14-px patches and 112-px windows
    (324 tokens per view, window + full attention blocks)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from medsam_agent_rt.training.tiny_qwen import TinyQwenSize, build_tiny_qwen

    root = tmp_path_factory.mktemp("tiny_qwen")
    return {
        "qwen3_vl": build_tiny_qwen(
            root / "q3", "qwen3_vl", seed=7, size=TinyQwenSize(vision_patch=32)
        ),
        "qwen2_5_vl": build_tiny_qwen(root / "q25", "qwen2_5_vl", seed=7),
    }


@pytest.fixture(scope="session")
def gguf_export(tiny_checkpoints, tmp_path_factory):
    """export(family, quant) -> the export directory (cached per session, parity not measured)."""
    pytest.importorskip("gguf")
    from medsam_agent_rt.export.gguf_export import export_policy

    root = tmp_path_factory.mktemp("gguf_exports")
    done: dict = {}

    def export(family: str, quant: str = "f16"):
        if (family, quant) not in done:
            out = root / f"{family}-{quant}"
            done[family, quant] = export_policy(
                tiny_checkpoints[family], out, quant, progress=False, parity=False
            ).directory
        return done[family, quant]

    return export


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one torch thread avoids oversubscription."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
