"""``export.sam_quantize``: the static int8 encoder added to an export (tiny random SAM): QDQ nodes
in the graph, a manifest entry that load_export verifies, calibration images from phantoms and a
realpack-layout folder, and an embedding close to the fp32 graph's."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from medsam_agent_rt.export.sam_quantize import calibration_images, quantize_encoder  # noqa: E402

from medsam_agent_rt.segmenters.exported import load_export  # noqa: E402
from medsam_agent_rt.segmenters.onnx_backend import OnnxSegmenter  # noqa: E402


def test_calibration_images_phantoms_and_realpack_train(tmp_path):
    from PIL import Image

    for ds in ("a", "b"):
        (tmp_path / ds / "train").mkdir(parents=True)
        (tmp_path / ds / "val").mkdir()
        for i in range(5):
            Image.fromarray(np.full((20, 30, 3), i, np.uint8)).save(
                tmp_path / ds / "train" / f"{i}.png"
            )
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / ds / "val" / "v.png")
    named = list(calibration_images(tmp_path, per_dataset=2, phantom_seeds=1))
    names = [n for n, _ in named]
    assert sum(n.startswith("phantom/") for n in names) == 8  # one per modality
    assert [n for n in names if n.startswith("realpack/")] == [
        "realpack/a/0.png",
        "realpack/a/4.png",
        "realpack/b/0.png",
        "realpack/b/4.png",
    ]  # spread over train/ only (val/v.png never)
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for _, im in named)


def test_quantized_encoder_is_qdq_verified_and_close_to_fp32(tiny_export, tmp_path):
    _, exported, _ = tiny_export
    out = tmp_path / "export"
    shutil.copytree(exported.directory, out)
    named = list(calibration_images(None, phantom_seeds=1))
    q = quantize_encoder(out, [im for _, im in named], [n for n, _ in named])
    q = load_export(out, verify=True)  # the new file's SHA-256 is in the manifest
    assert "int8" in q.precisions and q.graph("int8", "decoder") == q.graph("fp32", "decoder")
    meta = q.manifest["graphs"]["int8"]["quantization"]
    assert meta["calibration_images"] == 8 and meta["calibration_sources"][0].startswith("phantom/")
    ops = {n.op_type for n in onnx.load(str(q.graph("int8", "encoder"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    image = named[0][1]
    fp32 = OnnxSegmenter(q, "fp32", intra_op_threads=1)
    int8 = OnnxSegmenter(q, "int8", intra_op_threads=1)
    a, b = fp32.embedding(fp32.encode(image)), int8.embedding(int8.encode(image))
    rel = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < rel < 0.2, rel  # quantised (not identical), but the same function
