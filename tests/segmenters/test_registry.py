"""build_segmenter: the embedded default, checkpoint paths, backend routing and errors (the
exported-directory paths are tested in test_onnx_backend.py / test_export_onnx.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.segmenters import Segmenter, build_segmenter  # noqa: E402


def test_embedded_default_needs_no_download(monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError("build_segmenter tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    seg = build_segmenter(backend="torch")
    assert isinstance(seg, Segmenter)
    from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER

    assert (seg.family, seg.backend) == (DEFAULT_SEGMENTER, "torch")
    weights = {"litemedsam": "lite_medsam.safetensors"}.get(DEFAULT_SEGMENTER, "_click.safetensors")
    assert seg.preprocessing.input_size == 256 and seg.source.endswith(weights)


def test_checkpoint_path_spec(tmp_path, tiny_configs):
    from medsam_agent_rt.segmenters.modeling.sam import SamModel

    cfg = dataclasses.replace(tiny_configs.vit, decoder_heads=8)
    path = tmp_path / "medsam_vit_tiny.pth"
    torch.save(SamModel(cfg).state_dict(), path)
    seg = build_segmenter(str(path), cache_size=1)
    assert seg.family == "medsam" and seg.preprocessing.input_size == 64
    seg = build_segmenter(str(path), family="sam")
    assert seg.family == "sam"
    seg.set_image(np.zeros((30, 40, 3), np.uint8))
    assert seg.predict(box=np.array([1.0, 2.0, 20.0, 25.0])).masks.shape == (3, 30, 40)


def test_backends_and_errors(tmp_path, monkeypatch):
    from medsam_agent_rt import assets

    with pytest.raises(ValueError, match="backend 'onnx' runs exported models: export"):
        build_segmenter(str(tmp_path / "model.pth"), backend="onnx")
    with monkeypatch.context() as m:  # an install without litemedsam-click's graphs
        m.setattr(assets, "ONNX_DIR", tmp_path / "none")
        with pytest.raises(ValueError, match="ships no ONNX graphs of 'litemedsam-click'"):
            build_segmenter("litemedsam-click", backend="trt")
    with pytest.raises(ValueError, match="exported model directory: run it with backend='onnx'"):
        build_segmenter(str(tmp_path), backend="torch")  # a directory is an exported model
    with pytest.raises(ValueError, match="backend must be one of"):
        build_segmenter(backend="tflite")
    with pytest.raises(
        FileNotFoundError, match="neither 'litemedsam' nor 'litemedsam-click' nor an existing"
    ):
        build_segmenter(str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="LiteMedSAM family"):
        build_segmenter("litemedsam", family="sam")
