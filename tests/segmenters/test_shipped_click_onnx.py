"""The ONNX export of ``litemedsam-click`` shipped in the wheel (``assets/onnx/litemedsam-click``,
scripts/export_embedded_onnx.py): its own decoder graph, prompt-fusion weights and manifest, with
LiteMedSAM's encoder graphs named as ``../litemedsam/...`` (pinned by SHA-256) instead of a
second copy; the "auto" backend that runs it on a CPU; its predictions against the torch model
on real demo images with a box, corrective clicks and the previous low-res logits carried
(``box+all_clicks+prev_logits``); verification of corrupted or out-of-tree files; and the
OpenVINO compiled-model cache following graph content, not paths."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from medsam_agent_rt.assets import embedded_onnx_dir  # noqa: E402
from medsam_agent_rt.segmenters import PromptChain, build_segmenter  # noqa: E402
from medsam_agent_rt.segmenters.exported import (  # noqa: E402
    DECODER_INPUTS,
    MANIFEST_NAME,
    ExportError,
    load_export,
    sha256_file,
)
from medsam_agent_rt.segmenters.families import FAMILIES  # noqa: E402
from medsam_agent_rt.segmenters.registry import (  # noqa: E402
    cpu_backend,
    default_choice,
    resolve_backend,
)

REPO = Path(__file__).resolve().parents[2]
CLICK = embedded_onnx_dir("litemedsam-click")
LITE = embedded_onnx_dir("litemedsam")
# real demo masks (large organ, ultrasound chamber, endoscopy polyp): evaluation data only
CASES = (
    "06_CT_abdomen_right+kidney",
    "21_ultrasound_heart_left+heart+atrium",
    "24_endoscope_colon_neoplastic+polyp",
)


@pytest.fixture(autouse=True)
def _openvino_cache(tmp_path_factory, monkeypatch):
    """OpenVINO's compiled-model cache in a temporary folder, not the user's ~/.cache."""
    monkeypatch.setenv("MSRT_OPENVINO_CACHE", str(tmp_path_factory.getbasetemp() / "ov-cache"))


def test_click_export_ships_its_decoder_and_names_litemedsams_encoder():
    assert CLICK is not None and LITE is not None, "run scripts/export_embedded_onnx.py"
    click = load_export(CLICK, verify=True)  # every file's SHA-256, the sibling's encoders too
    lite = load_export(LITE, verify=False)
    assert click.family == "litemedsam-click" and click.precisions == ("fp32", "int8")
    assert click.preprocessing == lite.preprocessing
    assert click.shared_encoder == LITE
    # no second encoder: the directory holds the decoder side only
    assert sorted(p.name for p in CLICK.iterdir()) == [
        "decoder.fp32.onnx",
        "manifest.json",
        "prompt_encoder.safetensors",
    ]
    for precision in ("fp32", "int8"):
        assert click.graph(precision, "encoder") == lite.graph(precision, "encoder")
        assert click.graph_sha256(precision, "encoder") == lite.graph_sha256(precision, "encoder")
        assert click.graph(precision, "decoder") == CLICK / "decoder.fp32.onnx"
    # its own fine-tuned decoder and prompt embeddings, not LiteMedSAM's
    assert click.graph_sha256("fp32", "decoder") != lite.graph_sha256("fp32", "decoder")
    assert click.manifest["files"]["prompt_encoder.safetensors"] != sha256_file(
        LITE / "prompt_encoder.safetensors"
    )
    parity = click.manifest["graphs"]["fp32"]["parity"]  # LiteMedSAM's encoder vs click torch
    assert parity["image_embeddings_max_abs"] < 1e-4 and parity["low_res_masks_max_abs"] < 1e-3
    quant = click.manifest["graphs"]["int8"]["quantization"]
    assert quant == {**lite.manifest["graphs"]["int8"]["quantization"], "shared_from": "litemedsam"}


def test_the_click_decoder_graph_has_the_mask_input_path():
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(CLICK / "decoder.fp32.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == list(DECODER_INPUTS)
    assert {"mask_input", "has_mask_input"} <= {i.name for i in graph.input}
    # both inputs reach the computation (not dangling inputs the exporter kept)
    used = {name for node in graph.node for name in node.input}
    assert {"mask_input", "has_mask_input"} <= used


def test_auto_runs_the_click_graphs_on_the_cpu_and_torch_elsewhere(monkeypatch):
    assert resolve_backend("litemedsam-click") == cpu_backend() in ("openvino", "onnx")
    seg = build_segmenter("litemedsam-click")
    assert seg.backend == cpu_backend() and seg.family == "litemedsam-click"
    assert seg.source == str(CLICK)
    assert f"{seg.backend} {seg.precision}" == default_choice("litemedsam-click")
    assert PromptChain(seg, np.zeros((64, 64, 3), np.uint8)).strategy == (
        FAMILIES["litemedsam-click"].default_strategy
    )
    assert FAMILIES["litemedsam-click"].default_strategy == "box+all_clicks+prev_logits+zoom"
    assert resolve_backend("litemedsam-click", device="cuda") == "torch"
    assert resolve_backend("litemedsam-click", backend="torch") == "torch"
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    assert resolve_backend("litemedsam-click") == "onnx"
    assert build_segmenter("litemedsam-click").backend == "onnx"


def test_torch_by_name_still_runs_the_click_weights():
    pytest.importorskip("torch")
    seg = build_segmenter("litemedsam-click", backend="torch", cache_size=1)
    assert seg.backend == "torch" and seg.source.endswith("lite_medsam_click.safetensors")


# ----------------------------------------------------------------------------- parity


def _demo_samples(demo_dir):
    from PIL import Image

    out = []
    for case in CASES:
        stem = "_".join(case.split("_")[:3])
        image = np.asarray(Image.open(demo_dir / "demo" / f"{stem}.png").convert("RGB"))
        gt = np.asarray(Image.open(demo_dir / "demo_mask" / f"{case}.png").convert("L")) > 127
        out.append({"image": image, "masks": {case: gt}})
    return out


@pytest.fixture(scope="module")
def torch_click():
    pytest.importorskip("torch")
    return build_segmenter("litemedsam-click", backend="torch", cache_size=1)


# (backend, precision, bounds) — None: fp32, float rounding only (logits max abs, mask flip rate,
# IoU head max abs); else (mean IoU, min IoU, IoU head max abs) vs torch over the 9 turns.
# Measured on these 9 turns: bf16 IoU ~0.98 / ~0.96, IoU head <= ~0.01 (README,
# litemedsam-click); int8: the int8 encoder's loss (README "CPU speed").
VARIANTS = [
    ("onnx", "fp32", None),
    ("openvino", "fp32", None),
    ("openvino", "bf16", (0.95, 0.88, 0.03)),
    ("onnx", "int8", (0.6, 0.3, 0.3)),
]


@pytest.mark.parametrize("backend, precision, bounds", VARIANTS)
def test_shipped_click_graphs_predict_what_the_torch_model_predicts(
    torch_click, demo_dir, backend, precision, bounds
):
    """Box, then 2 corrective clicks (``ops.next_click`` on torch's mask), each backend carrying
    its own previous low-res logits as mask input, replayed with the same prompts."""
    sys.path.insert(0, str(REPO))  # benchmarks/ is a repository folder
    from benchmarks.backend_parity import replay_parity

    if backend == "openvino":
        pytest.importorskip("openvino")
        from medsam_agent_rt.segmenters.openvino_backend import has_bf16

        if precision == "bf16" and not has_bf16():
            pytest.skip("no bf16 on this CPU")
    seg = build_segmenter("litemedsam-click", backend=backend, precision=precision, cache_size=1)
    assert (seg.backend, seg.precision, seg.source) == (backend, precision, str(CLICK))
    masks, summary = replay_parity(torch_click, {"x": seg}, _demo_samples(demo_dir), clicks=2)
    r = summary["x"]
    assert masks == 3 and r["turns"] == 9
    assert r["mask_input_turns"] == 6  # every turn after the box fed the previous logits
    if bounds is None:
        assert r["logits_max_abs"] < 2e-3, r
        assert r["mask_flip_rate_max"] < 1e-4, r
        assert r["iou_head_max_abs"] < 1e-3, r
        assert r["iou_min"] > 0.999, r
    else:
        mean_iou, min_iou, score_tol = bounds
        assert r["iou_mean"] >= mean_iou and r["iou_min"] >= min_iou, r
        assert r["iou_head_max_abs"] <= score_tol, r


def test_the_previous_logits_reach_the_exported_decoder(torch_click, demo_dir):
    """The same box + click with and without the previous logits: the mask input changes the
    click decoder's output, in torch and identically in the ONNX graph (fed, not dropped)."""
    from medsam_agent_rt import ops

    sample = _demo_samples(demo_dir)[2]
    image, gt = sample["image"], next(iter(sample["masks"].values()))
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
    seg = build_segmenter("litemedsam-click", backend="onnx", precision="fp32", cache_size=1)
    out = {}
    for name, s in (("torch", torch_click), ("onnx", seg)):
        e = s.encode(image)
        first = s.decode(e, box=box, multimask_output=False)
        if name == "torch":
            c = ops.next_click(first.masks[0], gt)
            pts, labels = np.array([[c.x, c.y]], np.float64), np.array([int(c.positive)])
        with_prev = s.decode(e, pts, labels, box, first.low_res_logits, False)
        without = s.decode(e, pts, labels, box, None, False)
        out[name] = (with_prev.low_res_logits, without.low_res_logits)
    effect = np.abs(out["torch"][0] - out["torch"][1]).max()
    assert effect > 0.5, effect  # the click decoder uses its mask input
    for a, b in zip(out["torch"], out["onnx"]):
        np.testing.assert_allclose(b, a, atol=2e-3, rtol=0)


# ----------------------------------------------------------------------------- verification


@pytest.fixture
def copied(tmp_path):
    """Both shipped export directories copied side by side (the click one names ../litemedsam)."""
    shutil.copytree(LITE, tmp_path / "litemedsam")
    shutil.copytree(CLICK, tmp_path / "litemedsam-click")
    return tmp_path


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verification_catches_a_corrupted_decoder_or_shared_encoder(copied):
    click = copied / "litemedsam-click"
    assert load_export(click, verify=True).shared_encoder == copied / "litemedsam"
    decoder = click / "decoder.fp32.onnx"
    intact = decoder.read_bytes()
    _flip_byte(decoder, len(intact) // 2)
    with pytest.raises(ExportError, match=r"decoder\.fp32\.onnx: SHA-256 mismatch"):
        load_export(click, verify=True)
    with pytest.raises(ExportError, match="SHA-256 mismatch"):
        build_segmenter(str(click), backend="onnx")  # a directory spec verifies by default
    decoder.write_bytes(intact)
    load_export(click, verify=True)
    # the shared encoder is pinned too: a changed LiteMedSAM encoder fails the click export
    _flip_byte(copied / "litemedsam" / "encoder.fp32.onnx", 1 << 20)
    with pytest.raises(ExportError, match=r"litemedsam/encoder\.fp32\.onnx: SHA-256 mismatch"):
        load_export(click, verify=True)
    shutil.rmtree(copied / "litemedsam")  # the sibling missing: refused even without verify
    with pytest.raises(ExportError, match=r"\.\./litemedsam/encoder\.fp32\.onnx .*missing"):
        load_export(click, verify=False)


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../../litemedsam/encoder.fp32.onnx", "sub/decoder.fp32.onnx", "..", "../x/"],
)
def test_manifest_names_nothing_outside_the_export_and_its_sibling(copied, name):
    click = copied / "litemedsam-click"
    manifest = json.loads((click / MANIFEST_NAME).read_text())
    manifest["files"][name] = "0" * 64
    (click / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="expected a file of the export directory"):
        load_export(click, verify=False)


def test_every_graph_a_backend_opens_is_hashed(copied):
    click = copied / "litemedsam-click"
    manifest = json.loads((click / MANIFEST_NAME).read_text())
    del manifest["files"]["../litemedsam/encoder.int8.onnx"]
    (click / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="not listed in the manifest's files"):
        load_export(click, verify=False)


def test_openvino_cache_follows_graph_content_not_path(copied, tmp_path):
    """A decoder re-exported in place (same path, same size, same mtime, new weights) must not
    load the compiled blob of the old one (OpenVINO's own cache key is path + size + mtime); a
    graph two exports share compiles into one cache folder."""
    pytest.importorskip("openvino")
    onnx = pytest.importorskip("onnx")
    from medsam_agent_rt.segmenters.openvino_backend import OpenVinoSegmenter

    click, cache = copied / "litemedsam-click", tmp_path / "ov"
    image = _phantom()
    box = np.array([20, 30, 150, 140], np.float64)

    def run(directory, cache_dir):
        with OpenVinoSegmenter(directory, "fp32", threads=1, cache_dir=cache_dir) as seg:
            return seg.decode(seg.encode(image), box=box, multimask_output=False).low_res_logits

    before = run(click, cache)
    # "re-export": the same graph with its largest initializer scaled, serialised to the same
    # number of bytes, the old mtime restored, the manifest's hash updated
    decoder = click / "decoder.fp32.onnx"
    stat, old_sha = decoder.stat(), sha256_file(decoder)
    model = onnx.load(str(decoder))
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    values = onnx.numpy_helper.to_array(init)
    init.raw_data = (values * 0.5).astype(values.dtype).tobytes()
    onnx.save(model, str(decoder))
    assert decoder.stat().st_size == stat.st_size
    os.utime(decoder, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    manifest = json.loads((click / MANIFEST_NAME).read_text())
    manifest["files"]["decoder.fp32.onnx"] = sha256_file(decoder)
    (click / MANIFEST_NAME).write_text(json.dumps(manifest))
    after = run(click, cache)
    fresh = run(click, False)  # compiled now, no cache
    assert np.abs(fresh - before).max() > 1e-2  # the new weights change the output
    np.testing.assert_array_equal(after, fresh)  # not the stale blob
    run(copied / "litemedsam", cache)  # LiteMedSAM: its encoder's folder is already there
    exported = load_export(click, verify=False)
    lite = load_export(copied / "litemedsam", verify=False)
    folders = {p.name for p in cache.iterdir()}
    assert folders == {
        exported.graph_sha256("fp32", "encoder")[:16],
        sha256_file(decoder)[:16],
        old_sha[:16],
        lite.graph_sha256("fp32", "decoder")[:16],
    }


def _phantom() -> np.ndarray:
    from medsam_agent_rt.data.phantoms import generate

    return generate("CT", 7, (180, 200)).image
