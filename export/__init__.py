"""Exporters (installed as ``medsam_agent_rt.export``): torch -> ONNX for the SAM encoder and
decoder, ONNX -> TensorRT engines, Hugging Face -> GGUF."""
