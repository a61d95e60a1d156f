"""SAM2 encoder and decoder exported to ONNX, run by ONNX Runtime, against our torch model on the
same weights (MedSAM2 512 config, real Hiera-T size)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from medsam_agent_rt.segmenters import build_segmenter  # noqa: E402
from medsam_agent_rt.segmenters.families import FAMILIES  # noqa: E402
from medsam_agent_rt.segmenters.sam2.onnx import export_sam2  # noqa: E402
from medsam_agent_rt.segmenters.sam2.segmenter import Sam2TorchSegmenter  # noqa: E402


@pytest.mark.slow
def test_onnx_runtime_matches_torch(tiny512, tmp_path):
    ours = tiny512[0]
    export_sam2(ours, "medsam2", tmp_path / "medsam2_onnx")
    ort_seg = build_segmenter(str(tmp_path / "medsam2_onnx"), backend="onnx")
    assert ort_seg.backend == "onnx" and ort_seg.family == "medsam2"
    ref = Sam2TorchSegmenter(ours, FAMILIES["medsam2"])
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    ort_seg.set_image(image)
    ref.set_image(image)
    assert np.abs(ort_seg.image_embedding - ref.image_embedding).max() < 1e-4
    pts, labs = np.array([[50.0, 60.0], [100.0, 100.0], [250.0, 20.0]]), np.array([1, 0, 1])
    calls = [
        dict(box=np.array([10.0, 20.0, 150.0, 160.0])),
        dict(point_coords=pts[:1], point_labels=labs[:1], multimask_output=False),
        dict(point_coords=pts, point_labels=labs, box=np.array([5.0, 5.0, 290.0, 190.0])),
    ]
    prev = None
    for kw in calls + [dict(point_coords=pts[1:2], point_labels=labs[1:2])]:
        if prev is not None and "box" not in kw and len(kw["point_coords"]) == 1:
            kw["mask_input"] = prev
        a, b = ort_seg.predict(**kw), ref.predict(**kw)
        assert np.abs(a.low_res_logits - b.low_res_logits).max() < 1e-4
        assert np.abs(a.scores - b.scores).max() < 1e-4
        prev = b.low_res_logits[:1]
