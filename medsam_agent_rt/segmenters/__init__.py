"""The segmentation tool: SAM-family models behind torch / ONNX Runtime / TensorRT backends.

``build_segmenter("litemedsam")`` gives the embedded default; ``PromptChain`` keeps the chained
prompt state of one episode. Imports here need NumPy only (torch is loaded by the backends).
"""

from medsam_agent_rt.segmenters.base import Prediction, Preprocessing, Segmenter
from medsam_agent_rt.segmenters.families import FAMILIES, FamilySpec
from medsam_agent_rt.segmenters.prompt_chain import STRATEGIES, PromptChain, StepResult
from medsam_agent_rt.segmenters.registry import build_segmenter
from medsam_agent_rt.segmenters.store import Encoded

__all__ = [
    "FAMILIES",
    "STRATEGIES",
    "Encoded",
    "FamilySpec",
    "Prediction",
    "Preprocessing",
    "PromptChain",
    "Segmenter",
    "StepResult",
    "build_segmenter",
]
