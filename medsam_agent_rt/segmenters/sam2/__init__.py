"""SAM2.1 / MedSAM2 in plain PyTorch, original checkpoint layout (strict loading).

config (sizes and presets), hiera (trunk + FPN neck), decoder, memory (memory attention and
encoder), model (Sam2Model), checkpoint (recognition and loading), preprocess (NumPy transforms
and prompt order), segmenter (image mode, torch backend), onnx (export + ONNX Runtime backend),
tracking (the memory tracker). Importing this package loads nothing heavy; the torch modules
are imported where used.
"""
