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
from medsam_agent_rt.segmenters.registry import resolve_backend  # noqa: E402

SHIPPED = embedded_onnx_dir("litemedsam")


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


def test_default_is_onnx_over_the_shipped_graphs():
    seg = build_segmenter()
    assert (seg.backend, seg.family, seg.precision) == ("onnx", "litemedsam", "fp32")
    assert seg.source == str(SHIPPED)
    assert resolve_backend("litemedsam") == "onnx"
    assert resolve_backend("litemedsam", device="cuda") == "torch"
    assert resolve_backend("litemedsam-click") == "torch"  # no shipped graphs (yet)
    assert resolve_backend("model.pth") == "torch"


def test_default_falls_back_to_torch_without_onnxruntime(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert resolve_backend("litemedsam") == "torch"
    seg = build_segmenter()
    assert seg.backend == "torch" and seg.source.endswith("lite_medsam.safetensors")


def test_shipped_graphs_predict_what_the_torch_model_predicts():
    """fp32 ONNX Runtime vs the torch reference on phantoms of three modalities and sizes: a box,
    then a box + click with the previous logits chained in."""
    pytest.importorskip("torch")
    ref = build_segmenter("litemedsam", backend="torch", cache_size=1)
    seg = build_segmenter("litemedsam", cache_size=1)
    for ph in _phantoms():
        mask = next(iter(ph.masks.values()))
        box = _box(mask)
        ys, xs = np.nonzero(mask)
        click = np.array([[xs[len(xs) // 2], ys[len(ys) // 2]]], np.float64)
        outs = {}
        for s in (ref, seg):
            e = s.encode(ph.image)
            first = s.decode(e, box=box, multimask_output=False)
            second = s.decode(e, click, np.array([1]), box, first.low_res_logits, False)
            outs[s.backend] = (s.embedding(e), first, second)
        emb_t, *preds_t = outs["torch"]
        emb_o, *preds_o = outs["onnx"]
        np.testing.assert_allclose(emb_o, emb_t, atol=1e-3, rtol=0)
        for a, b in zip(preds_t, preds_o):
            np.testing.assert_allclose(b.low_res_logits, a.low_res_logits, atol=1e-3, rtol=0)
            np.testing.assert_allclose(b.scores, a.scores, atol=1e-4, rtol=0)
            assert (a.masks != b.masks).mean() < 1e-4


def test_embedded_on_onnx_needs_no_torch():
    """The default CPU path (shipped graphs, preprocessing, prompt fusion, post-processing)
    with torch made unimportable: it segments and torch never enters sys.modules."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch': raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from medsam_agent_rt.segmenters import build_segmenter\n"
        "seg = build_segmenter('litemedsam')\n"
        "img = np.zeros((120, 160, 3), np.uint8); img[30:90, 40:120] = 200\n"
        "e = seg.encode(img)\n"
        "m = seg.decode(e, box=np.array([35, 25, 125, 95]), multimask_output=False).masks[0]\n"
        "assert seg.backend == 'onnx' and m.shape == (120, 160) and 0.5 < m[30:90, 40:120].mean()\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'torch'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
