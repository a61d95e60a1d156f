"""medsam-agent-rt: run, export and train MedSAM-Agent.

A multimodal LLM policy segments a medical image by driving a Segment-Anything-family model over
several turns (box, positive/negative clicks, stop). The few names a script needs::

    from medsam_agent_rt import Episode, build_policy, build_segmenter, read_image

    img = read_image("ct.dcm", window="abdomen")
    with build_segmenter("litemedsam") as seg:
        mask, record = Episode(seg, build_policy("expert")).run(img.rgb, "liver", gt)

This package imports with NumPy alone: the names above are imported on first use (module
``__getattr__``), and torch, onnxruntime, tensorrt, transformers and llama_cpp are imported
lazily by the parts that need them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from medsam_agent_rt._ext import build_info, cuda_available, has_ext

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "Episode": "medsam_agent_rt.episode",
    "SessionConfig": "medsam_agent_rt.session_config",
    "build_policy": "medsam_agent_rt.policies.registry",
    "build_segmenter": "medsam_agent_rt.segmenters.registry",
    "read_image": "medsam_agent_rt.io.reader",
    "read_mask": "medsam_agent_rt.io.masks",
}

__all__ = ["__version__", "build_info", "cuda_available", "has_ext", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medsam_agent_rt' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
