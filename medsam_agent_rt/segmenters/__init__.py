"""The segmentation tool: SAM-family models behind torch / ONNX Runtime / TensorRT backends."""

from medsam_agent_rt.segmenters.base import Prediction, Preprocessing, Segmenter

__all__ = ["Prediction", "Preprocessing", "Segmenter"]
