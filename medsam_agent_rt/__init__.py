"""medsam-agent-rt: run, export and train MedSAM-Agent.

A multimodal LLM policy segments a medical image by driving a Segment-Anything-family model over
several turns (box, positive/negative clicks, stop). This package imports with NumPy alone;
torch, onnxruntime, tensorrt, transformers and llama_cpp are imported lazily by the parts that
need them.
"""

from medsam_agent_rt._ext import build_info, cuda_available, has_ext

__version__ = "0.1.0"

__all__ = ["__version__", "build_info", "cuda_available", "has_ext"]
