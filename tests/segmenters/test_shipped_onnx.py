"""The ONNX graphs of the embedded LiteMedSAM shipped in the wheel (``assets/onnx/litemedsam``,
scripts/export_embedded_onnx.py) and the "auto" backend that runs them by default on a CPU:
intact files, predictions of the torch model on phantom images, the backend choice with and
without onnxruntime, and a run that never imports torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from medsam_agent_rt.assets import embedded_onnx_dir  # noqa: E402
from medsam_agent_rt.segmenters import build_segmenter  # noqa: E402
from medsam_agent_rt.segmenters.exported import load_export  # noqa: E402
from medsam_agent_rt.segmenters.registry import (  # noqa: E402
    DEFAULT_SEGMENTER,
    cpu_backend,
    default_choice,
    resolve_backend,
)

SHIPPED = embedded_onnx_dir("litemedsam")
# the weights file torch loads for each embedded segmenter (the default may be either)
WEIGHTS = {
    "litemedsam": "lite_medsam.safetensors",
    "litemedsam-click": "lite_medsam_click.safetensors",
}


@pytest.fixture(autouse=True)
def _openvino_cache(tmp_path_factory, monkeypatch):
    """OpenVINO's compiled-model cache in a temporary folder, not the user's ~/.cache."""
    monkeypatch.setenv("MSRT_OPENVINO_CACHE", str(tmp_path_factory.getbasetemp() / "ov-cache"))


def _phantoms(n: int = 3):
    from medsam_agent_rt.data.phantoms import generate

    return [
        generate(m, 7, (200 + 40 * i, 240)) for i, m in enumerate(("CT", "X-Ray", "fundus")[:n])
    ]


def _box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def test_shipped_directory_is_a_verified_fp32_export():
    assert SHIPPED is not None, "run scripts/export_embedded_onnx.py"
    exported = load_export(SHIPPED, verify=True)  # every file's SHA-256 against the manifest
    assert exported.family == "litemedsam" and "fp32" in exported.precisions
    assert exported.preprocessing.input_size == 256 and exported.embedding_shape == (1, 256, 64, 64)
    parity = exported.manifest["graphs"]["fp32"]["parity"]
    assert parity["image_embeddings_max_abs"] < 1e-3 and parity["low_res_masks_max_abs"] < 1e-3
    if "int8" in exported.precisions:  # calibrated on phantoms + realpack train, never the demo
        sources = exported.manifest["graphs"]["int8"]["quantization"]["calibration_sources"]
        assert sources and all(s.startswith(("phantom/", "realpack/")) for s in sources)
        assert exported.graph("int8", "decoder") == exported.graph("fp32", "decoder")


def test_default_runs_the_shipped_graphs_on_the_best_cpu_runtime():
    seg = build_segmenter()
    assert seg.backend == cpu_backend() and seg.backend in ("openvino", "onnx")
    assert seg.family == DEFAULT_SEGMENTER
    assert seg.source == str(embedded_onnx_dir(DEFAULT_SEGMENTER))
    assert f"{seg.backend} {seg.precision}" == default_choice()
    assert resolve_backend("litemedsam", device="cuda") == "torch"
    assert resolve_backend("litemedsam-click") == cpu_backend()  # its graphs ship too
    assert resolve_backend("model.pth") == "torch"


def test_default_without_openvino_is_onnxruntime_and_without_both_torch(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    assert resolve_backend("litemedsam") == "onnx" == resolve_backend(DEFAULT_SEGMENTER)
    seg = build_segmenter()
    assert seg.backend == "onnx" and seg.precision == default_choice().split()[1]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert resolve_backend("litemedsam") == "torch" and default_choice() == "torch fp32"
    seg = build_segmenter()
    assert seg.backend == "torch" and seg.source.endswith(WEIGHTS[DEFAULT_SEGMENTER])


@pytest.fixture(scope="module")
def torch_reference():
    """Per phantom: (image, box, click, torch embedding, [box turn, box + click turn])."""
    pytest.importorskip("torch")
    ref = build_segmenter("litemedsam", backend="torch", cache_size=1)
    out = []
    for ph in _phantoms():
        mask = next(iter(ph.masks.values()))
        ys, xs = np.nonzero(mask)
        click = np.array([[xs[len(xs) // 2], ys[len(ys) // 2]]], np.float64)
        out.append((ph.image, _box(mask), click, *_turns(ref, ph.image, _box(mask), click)))
    return out


def _turns(seg, image, box, click):
    e = seg.encode(image)
    first = seg.decode(e, box=box, multimask_output=False)
    second = seg.decode(e, click, np.array([1]), box, first.low_res_logits, False)
    return seg.embedding(e), [first, second]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# (backend, precision, bounds): fp32 matches torch to float rounding (None); bf16 / int8 masks keep
# (mean IoU, min IoU, max |score difference|) with torch's over the 6 phantom turns (measured:
# bf16 0.984 / 0.925 / 0.004, int8 0.91 / 0.75 / 0.16); their Dice on the 71 demo masks is in
# the README, "CPU speed".
BF16_BOUNDS = (0.97, 0.88, 0.02)
INT8_BOUNDS = (0.85, 0.6, 0.25)
VARIANTS = [
    ("onnx", "fp32", None),
    ("onnx", "int8", INT8_BOUNDS),
    ("openvino", "fp32", None),
    ("openvino", "bf16", BF16_BOUNDS),
    ("openvino", "int8", INT8_BOUNDS),
]


@pytest.mark.parametrize("backend, precision, bounds", VARIANTS)
def test_shipped_graphs_predict_what_the_torch_model_predicts(
    torch_reference, backend, precision, bounds
):
    """Each runtime x precision over the shipped graphs vs the torch reference on phantoms of
    three modalities and sizes: a box, then a box + click with the previous logits chained in."""
    if backend == "openvino":
        pytest.importorskip("openvino")
        from medsam_agent_rt.segmenters.openvino_backend import has_bf16

        if precision == "bf16" and not has_bf16():
            pytest.skip("no bf16 on this CPU")
    seg = build_segmenter("litemedsam", backend=backend, precision=precision, cache_size=1)
    assert (seg.backend, seg.precision) == (backend, precision)
    ious, score_diffs = [], []
    for image, box, click, emb_t, preds_t in torch_reference:
        emb, preds = _turns(seg, image, box, click)
        for a, b in zip(preds_t, preds):
            if bounds is None:
                np.testing.assert_allclose(emb, emb_t, atol=1e-3, rtol=0)
                np.testing.assert_allclose(b.low_res_logits, a.low_res_logits, atol=2e-3, rtol=0)
                np.testing.assert_allclose(b.scores, a.scores, atol=1e-3, rtol=0)
                assert (a.masks != b.masks).mean() < 1e-4
            ious.append(_iou(a.masks[0], b.masks[0]))
            score_diffs.append(float(np.abs(a.scores - b.scores).max()))
    if bounds is not None:
        mean_iou, min_iou, score_tol = bounds
        assert np.mean(ious) >= mean_iou and min(ious) >= min_iou, ious
        assert max(score_diffs) <= score_tol, score_diffs


@pytest.mark.parametrize("blocked", [("torch",), ("torch", "openvino")])
def test_the_default_cpu_path_needs_no_torch(blocked):
    """The default CPU path (shipped graphs, preprocessing, prompt fusion, post-processing)
    with torch (and openvino: the ONNX Runtime path) made unimportable: it segments and torch
    never enters sys.modules."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from medsam_agent_rt.segmenters import build_segmenter\n"
        "seg = build_segmenter('litemedsam')\n"
        "img = np.zeros((120, 160, 3), np.uint8); img[30:90, 40:120] = 200\n"
        "e = seg.encode(img)\n"
        "m = seg.decode(e, box=np.array([35, 25, 125, 95]), multimask_output=False).masks[0]\n"
        "assert seg.backend in ('onnx', 'openvino') and m.shape == (120, 160) and 0.5 < m[30:90, 40:120].mean()\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'torch'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
