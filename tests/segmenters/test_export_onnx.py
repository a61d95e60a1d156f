"""ONNX export: round trip (ONNX Runtime vs torch on inputs the exporter never saw), the graph
contract, FP16 graphs, the manifest and its verification, atomic output."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from medsam_agent_rt import ops  # noqa: E402
from medsam_agent_rt.segmenters.exported import (  # noqa: E402
    FORMAT_VERSION,
    ExportError,
    load_export,
)
from medsam_agent_rt.segmenters.torch_backend import prompt_encoder_weights  # noqa: E402


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _decoder_feeds(model, rng, tokens):
    """Random decoder inputs with `tokens` fused prompt tokens (real fusion kernel output)."""
    w = prompt_encoder_weights(model.prompt_encoder)
    s = w.input_size[0]
    coords = rng.uniform(0, s, (tokens, 2)).astype(np.float32)
    labels = rng.integers(-1, 4, tokens)
    sparse = ops.encode_sparse_prompts(coords, labels, w)[None]
    c = w.embed_dim
    e = model.config.embedding_size
    has = float(rng.integers(0, 2))
    return {
        "image_embeddings": rng.normal(0, 1, (1, c, e, e)).astype(np.float32),
        "sparse_embeddings": sparse.astype(np.float32),
        "mask_input": rng.normal(0, 5, (1, 1, 4 * e, 4 * e)).astype(np.float32),
        "has_mask_input": np.array([has], np.float32),
    }


def test_tiny_fp32_round_trip_on_fresh_inputs(tiny_export):
    model, exported, _ = tiny_export
    rng = np.random.default_rng(7)
    enc = _session(exported.graph("fp32", "encoder"))
    dec = _session(exported.graph("fp32", "decoder"))
    x = rng.normal(0, 1, (1, 3, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        want = model.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(enc.run(None, {"image": x})[0], want, atol=1e-4, rtol=0)
    for tokens in (1, 2, 5, 11):  # the token axis is dynamic
        feed = _decoder_feeds(model, rng, tokens)
        low, iou = dec.run(None, feed)
        with torch.inference_mode():
            ref_low, ref_iou = model.decode(*(torch.from_numpy(v) for v in feed.values()))
        assert low.shape == (1, 4, 32, 32) and iou.shape == (1, 4)
        np.testing.assert_allclose(low, ref_low.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(iou, ref_iou.numpy(), atol=1e-4, rtol=0)


def test_graph_contract(tiny_export):
    _, exported, _ = tiny_export
    for precision in ("fp32", "fp16"):
        dec = onnx.load(str(exported.graph(precision, "decoder")))
        names = [i.name for i in dec.graph.input]
        assert names == ["image_embeddings", "sparse_embeddings", "mask_input", "has_mask_input"]
        assert "orig_im_size" not in names
        dims = {
            v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(dec.graph.input) + list(dec.graph.output)
        }
        assert dims["sparse_embeddings"][0] == 1 and isinstance(dims["sparse_embeddings"][1], str)
        assert dims["low_res_masks"] == [1, 4, 32, 32] and dims["iou_predictions"] == [1, 4]
        for v in list(dec.graph.input) + list(dec.graph.output):
            assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 boundary
        assert dec.opset_import[0].version == 18


def test_contract_check_rejects_a_value_dependent_graph(tmp_path):
    """A SAM-style decoder with orig_im_size and a dynamic output is refused."""
    from medsam_agent_rt.export.onnx_checks import GraphContractError, check_graph

    h = onnx.helper
    inputs = [
        h.make_tensor_value_info("image_embeddings", onnx.TensorProto.FLOAT, [1, 8, 4, 4]),
        h.make_tensor_value_info("sparse_embeddings", onnx.TensorProto.FLOAT, [1, "n", 8]),
        h.make_tensor_value_info("mask_input", onnx.TensorProto.FLOAT, [1, 1, 16, 16]),
        h.make_tensor_value_info("has_mask_input", onnx.TensorProto.FLOAT, [1]),
        h.make_tensor_value_info("orig_im_size", onnx.TensorProto.FLOAT, [2]),
    ]
    out = [
        h.make_tensor_value_info("low_res_masks", onnx.TensorProto.FLOAT, [1, 4, "H", "W"]),
        h.make_tensor_value_info("iou_predictions", onnx.TensorProto.FLOAT, [1, 4]),
    ]
    nodes = [
        h.make_node("Identity", ["mask_input"], ["low_res_masks"]),
        h.make_node("Identity", ["has_mask_input"], ["iou_predictions"]),
    ]
    model = h.make_model(h.make_graph(nodes, "g", inputs, out))
    onnx.save(model, tmp_path / "bad.onnx")
    expect = {"image_embeddings": (1, 8, 4, 4), "low_res_masks": (1, 4, 16, 16)}
    with pytest.raises(GraphContractError, match="orig_im_size"):
        check_graph(tmp_path / "bad.onnx", "decoder", expect)


def test_fp16_graphs_compute_in_half_with_float32_io(tiny_export):
    model, exported, _ = tiny_export
    for part in ("encoder", "decoder"):
        g = onnx.load(str(exported.graph("fp16", part)))
        types = {i.data_type for i in g.graph.initializer if len(i.dims) >= 2}
        assert onnx.TensorProto.FLOAT16 in types  # the weight matrices are float16
    rng = np.random.default_rng(3)
    dec = _session(exported.graph("fp16", "decoder"))
    feed = _decoder_feeds(model, rng, 4)
    low, iou = dec.run(None, feed)
    assert low.dtype == np.float32
    with torch.inference_mode():
        ref_low, ref_iou = model.decode(*(torch.from_numpy(v) for v in feed.values()))
    ref = ref_low.numpy()
    # float16 rounding: errors of a few 1e-3 relative to the logits' range, same masks nearly
    assert np.abs(low - ref).max() <= 1e-2 * max(1.0, np.abs(ref).max())
    assert np.mean((low > 0) == (ref > 0)) > 0.99
    parity = exported.manifest["graphs"]["fp16"]["parity"]
    assert 0 < parity["low_res_masks_max_abs"] < 0.1


def test_manifest_written_and_read_back(tiny_export):
    model, exported, ckpt = tiny_export
    m = exported.manifest
    assert m["format_version"] == FORMAT_VERSION and m["family"] == "sam"
    assert m["opset"] == 18 and m["source"] == str(ckpt.resolve()) and m["variant"]
    assert exported.precisions == ("fp32", "fp16")
    assert exported.preprocessing.input_size == 64 and exported.preprocessing.family == "sam"
    assert exported.embedding_shape == (1, 32, 8, 8) and exported.mask_input_size == (32, 32)
    assert set(m["versions"]) >= {"torch", "onnx", "onnxruntime", "medsam_agent_rt"}
    import hashlib

    for name, digest in m["files"].items():
        assert hashlib.sha256((exported.directory / name).read_bytes()).hexdigest() == digest
    assert m["graphs"]["fp32"]["parity"]["low_res_masks_max_abs"] < 1e-4
    w = exported.prompt_weights()
    ref = prompt_encoder_weights(model.prompt_encoder)
    np.testing.assert_array_equal(w.gaussian_matrix, ref.gaussian_matrix)
    np.testing.assert_array_equal(w.label_embeddings, ref.label_embeddings)
    assert w.input_size == (64, 64)


def test_tampered_or_foreign_directories_are_refused(tiny_export, tmp_path):
    from medsam_agent_rt.segmenters import build_segmenter

    _, exported, _ = tiny_export
    bad = tmp_path / "copy"
    shutil.copytree(exported.directory, bad)
    blob = bytearray((bad / "decoder.fp32.onnx").read_bytes())
    blob[-1] ^= 0xFF
    (bad / "decoder.fp32.onnx").write_bytes(bytes(blob))
    with pytest.raises(ExportError, match="decoder.fp32.onnx: SHA-256 mismatch"):
        load_export(bad)
    with pytest.raises(ExportError, match="SHA-256 mismatch"):
        build_segmenter(str(bad), backend="onnx")
    load_export(bad, verify=False)  # explicitly skipped
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=f"format version {FORMAT_VERSION + 1} is not supported"):
        load_export(bad)
    (bad / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ExportError, match="expected format"):
        load_export(bad)
    (bad / "manifest.json").unlink()
    with pytest.raises(ExportError, match="not an exported model directory"):
        build_segmenter(str(bad), backend="onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no manifest.json"):
        load_export(tmp_path / "empty")


def test_failed_export_leaves_nothing(tiny_export, tmp_path, monkeypatch):
    from medsam_agent_rt.export import sam_onnx

    model, _, _ = tiny_export

    def broken(module, args, path, part, opset):
        path.write_bytes(b"partial")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(sam_onnx, "export_graph", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="exporter crashed"):
        sam_onnx.export_sam(model, "sam", out, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="precisions must be"):
        sam_onnx.export_sam(model, "sam", out, ("int8",), progress=False)
    with pytest.raises(ValueError, match="opset must be in 17"):
        sam_onnx.export_sam(model, "sam", out, opset=13, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
        sam_onnx.export_sam(model, "sam", tmp_path / "full", progress=False)
    assert (tmp_path / "full" / "x").read_text() == "keep"


def test_cli_errors(tmp_path, capsys):
    from medsam_agent_rt.cli import main

    assert main(["export", "sam", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "o")]) == 2
    assert (
        "neither 'litemedsam' nor 'litemedsam-click' nor a checkpoint file"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "o").exists()


def test_litemedsam_export_matches_torch_on_a_demo_image(
    litemedsam_export, litemedsam_seg, demo_image
):
    """The real LiteMedSAM graphs in ONNX Runtime vs torch on a real CT image: embedding,
    logits and IoU predictions within 1e-3 (box, box + clicks, a chained mask input)."""
    image, _ = demo_image
    litemedsam_seg.set_image(image)
    x = litemedsam_seg.preprocessing
    from medsam_agent_rt.segmenters.preprocess import preprocess_image

    inp, _ = preprocess_image(image, x)
    emb = _session(litemedsam_export.graph("fp32", "encoder")).run(None, {"image": inp})[0]
    np.testing.assert_allclose(emb, litemedsam_seg.image_embedding, atol=1e-3, rtol=0)
    dec = _session(litemedsam_export.graph("fp32", "decoder"))
    model = litemedsam_seg.model
    w = prompt_encoder_weights(model.prompt_encoder)
    box = np.array([100.0, 125.0, 150.0, 160.0], np.float32)
    prev = None
    for pts, labels in ((None, None), (np.array([[120.0, 140.0], [140.0, 150.0]]), [1, 0])):
        coords, labs = ops.sam_prompt_tokens(pts, None if labels is None else np.array(labels), box)
        feed = {
            "image_embeddings": emb,
            "sparse_embeddings": ops.encode_sparse_prompts(coords, labs, w)[None],
            "mask_input": np.zeros((1, 1, 256, 256), np.float32) if prev is None else prev,
            "has_mask_input": np.array([0.0 if prev is None else 1.0], np.float32),
        }
        low, iou = dec.run(None, feed)
        with torch.inference_mode():
            ref = model.decode(
                torch.from_numpy(litemedsam_seg.image_embedding),
                *(torch.from_numpy(feed[k]) for k in list(feed)[1:]),
            )
        np.testing.assert_allclose(low, ref[0].numpy(), atol=1e-3, rtol=0)
        np.testing.assert_allclose(iou, ref[1].numpy(), atol=1e-3, rtol=0)
        assert np.mean((low > 0) == (ref[0].numpy() > 0)) > 0.9999
        prev = low[:, :1]
    assert litemedsam_export.manifest["graphs"]["fp32"]["parity"]["low_res_masks_max_abs"] < 1e-3
