"""The segmentation tool: SAM-family models behind torch / ONNX Runtime / TensorRT backends.

``build_segmenter("litemedsam")`` gives the embedded default; ``Episode`` keeps the chained
prompt state of one episode. Imports here need NumPy only (torch is loaded by the backends).
"""

from medsam_agent_rt.segmenters.base import Prediction, Preprocessing, Segmenter
from medsam_agent_rt.segmenters.episode import STRATEGIES, Episode, StepResult
from medsam_agent_rt.segmenters.families import FAMILIES, FamilySpec
from medsam_agent_rt.segmenters.registry import build_segmenter

__all__ = [
    "FAMILIES",
    "STRATEGIES",
    "Episode",
    "FamilySpec",
    "Prediction",
    "Preprocessing",
    "Segmenter",
    "StepResult",
    "build_segmenter",
]
