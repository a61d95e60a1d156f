"""OnnxSegmenter: the same predictions as TorchSegmenter (tiny random SAM, real LiteMedSAM on a
demo image through a chained episode), the same input checks, the cache, providers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from medsam_agent_rt.segmenters import PromptChain, Segmenter, build_segmenter  # noqa: E402
from medsam_agent_rt.segmenters.onnx_backend import OnnxSegmenter  # noqa: E402
from medsam_agent_rt.segmenters.torch_backend import TorchSegmenter  # noqa: E402


@pytest.fixture(scope="module")
def pair(tiny_export):
    """(TorchSegmenter, OnnxSegmenter fp32) over the same tiny model."""
    model, exported, _ = tiny_export
    onnx_seg = build_segmenter(str(exported.directory), backend="onnx", cache_size=2)
    return TorchSegmenter(model, "sam", cache_size=2), onnx_seg


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)  # H != W: padding + crop paths


def test_is_a_segmenter(pair):
    _, seg = pair
    assert isinstance(seg, Segmenter) and isinstance(seg, OnnxSegmenter)
    assert (seg.backend, seg.family, seg.precision) == ("onnx", "sam", "fp32")
    assert seg.preprocessing.input_size == 64 and seg.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("multimask", [True, False])
def test_same_predictions_as_torch(pair, image, multimask):
    ref, seg = pair
    pts = np.array([[10.0, 12.0], [60.5, 30.0]])
    labels = np.array([1, 0])
    box = np.array([5.0, 4.0, 70.0, 45.0])
    prev = {}
    for s in (ref, seg):
        s.set_image(image)
        first = s.predict(pts, labels, box, None, multimask)
        second = s.predict(pts[:1], labels[:1], None, first.low_res_logits[:1], multimask)
        prev[s.backend] = (first, second)
    np.testing.assert_allclose(seg.image_embedding, ref.image_embedding, atol=1e-4, rtol=0)
    for a, b in zip(prev["torch"], prev["onnx"]):
        np.testing.assert_allclose(b.low_res_logits, a.low_res_logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-4, rtol=0)
        assert b.masks.shape == a.masks.shape == ((3 if multimask else 1), 50, 80)
        assert b.masks.dtype == np.bool_ and (b.masks != a.masks).mean() < 1e-3


def test_fp16_precision(tiny_export, pair, image):
    _, exported, _ = tiny_export
    ref, _ = pair
    seg = OnnxSegmenter(exported, precision="fp16", intra_op_threads=1, allow_spinning=False)
    assert seg.precision == "fp16"
    box = np.array([5.0, 4.0, 70.0, 45.0])
    for s in (ref, seg):
        s.set_image(image)
    a, b = ref.predict(box=box), seg.predict(box=box)
    assert np.abs(a.low_res_logits - b.low_res_logits).max() <= 1e-2 * max(
        1.0, np.abs(a.low_res_logits).max()
    )
    assert (a.masks == b.masks).mean() > 0.99


def test_embedding_cache_is_keyed_by_content_and_lru(pair, image):
    _, seg = pair
    seg.clear_cache()
    calls = seg.encoder_calls
    seg.set_image(image)
    seg.set_image(image.copy())
    assert seg.encoder_calls == calls + 1
    other = image.copy()
    other[0, 0, 0] ^= 1
    seg.set_image(other)
    seg.set_image(np.ascontiguousarray(image[:, ::-1]))  # cache_size=2: evicts `image`
    seg.set_image(other)
    assert seg.encoder_calls == calls + 3
    seg.set_image(image)
    assert seg.encoder_calls == calls + 4
    seg.reset_image()
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict(box=np.array([1, 1, 5, 5]))
    seg.set_image(image)
    assert seg.encoder_calls == calls + 4


BAD_PROMPTS = [
    {},
    {"point_coords": np.zeros((0, 2)), "point_labels": np.zeros(0)},
    {"box": np.array([30.0, 5.0, 30.0, 20.0])},
    {"box": np.array([-1.0, 5.0, 30.0, 20.0])},
    {"box": np.array([1.0, 2.0, 3.0])},
    {"point_coords": np.array([[80.0, 10.0]]), "point_labels": np.array([1])},
    {"point_coords": np.array([[10.0, 5.0]]), "point_labels": np.array([2])},
    {"point_coords": np.array([[10.0, 5.0]])},
    {"point_coords": np.array([[np.nan, 5.0]]), "point_labels": np.array([1])},
    {"box": np.array([1.0, 2.0, 30.0, 40.0]), "mask_input": np.zeros((1, 16, 16), np.float32)},
]
BAD_IMAGES = [
    np.zeros((20, 30), np.uint16),
    np.zeros((20, 30, 3), np.float32),
    np.zeros((20, 30, 2), np.uint8),
    np.zeros((0, 30, 3), np.uint8),
]


@pytest.mark.parametrize("kwargs", BAD_PROMPTS)
def test_bad_prompts_fail_exactly_as_with_torch(pair, image, kwargs):
    messages = []
    for s in pair:
        s.set_image(image)
        with pytest.raises(ValueError) as err:
            s.predict(**kwargs)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("bad", BAD_IMAGES, ids=lambda a: f"{a.dtype}{a.shape}")
def test_bad_images_fail_exactly_as_with_torch(pair, bad):
    messages = []
    for s in pair:
        with pytest.raises(ValueError) as err:
            s.set_image(bad)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_gray_and_rgba_images_are_converted(pair, image):
    _, seg = pair
    box = np.array([5.0, 4.0, 70.0, 45.0])
    seg.set_image(np.repeat(image[:, :, :1], 3, axis=2))
    want = seg.predict(box=box).low_res_logits
    seg.set_image(image[:, :, 0])
    np.testing.assert_array_equal(seg.predict(box=box).low_res_logits, want)


def test_providers_and_options(tiny_export):
    _, exported, _ = tiny_export
    with pytest.raises(ValueError, match="CUDAExecutionProvider .*not available.*onnxruntime-gpu"):
        OnnxSegmenter(exported, device="cuda")
    with pytest.raises(ValueError, match="device must be"):
        OnnxSegmenter(exported, device="tpu")
    with pytest.raises(ValueError, match="intra_op_threads must be >= 0"):
        OnnxSegmenter(exported, intra_op_threads=-1)
    with pytest.raises(ValueError, match="cache_size must be >= 0"):
        OnnxSegmenter(exported, cache_size=-1)
    seg = OnnxSegmenter(exported, providers=["CPUExecutionProvider"], intra_op_threads=1)
    assert seg.decoder_session.get_providers() == ["CPUExecutionProvider"]


def test_build_segmenter_routes_and_errors(tiny_export, tmp_path, monkeypatch):
    _, exported, _ = tiny_export
    d = str(exported.directory)
    with pytest.raises(ValueError, match="exported model directory: run it with backend='onnx'"):
        build_segmenter(d, backend="torch")
    assert build_segmenter(d, verify=False).backend == "onnx"  # "auto" runs an export on ORT
    with pytest.raises(ValueError, match="holds a 'sam' model, got family='medsam'"):
        build_segmenter(d, backend="onnx", family="medsam")
    from medsam_agent_rt import assets

    with monkeypatch.context() as m:  # an install without litemedsam-click's graphs
        m.setattr(assets, "ONNX_DIR", tmp_path / "none")
        with pytest.raises(ValueError, match="ships no ONNX graphs of 'litemedsam-click'"):
            build_segmenter("litemedsam-click", backend="onnx")
    with pytest.raises(TypeError, match="takes no options"):
        build_segmenter("litemedsam", backend="torch", precision="fp16")
    seg = build_segmenter(d, backend="onnx", precision="fp16", verify=False)
    assert seg.precision == "fp16"


def test_litemedsam_episode_same_masks_as_torch(litemedsam_export, litemedsam_seg, demo_image):
    """The real LiteMedSAM, onnx vs torch, through a chained episode on a real CT image: a box,
    then clicks (previous logits carried as mask input), the same masks turn by turn."""
    image, masks = demo_image
    onnx_seg = build_segmenter(str(litemedsam_export.directory), backend="onnx")
    gt = next(iter(masks.values()))
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
    cy, cx = ys[len(ys) // 2], xs[len(xs) // 2]
    steps = [
        ("box", box),
        ("point", ((float(cx), float(cy)), True)),
        ("point", ((5.0, 5.0), False)),
    ]
    results = {}
    for seg in (litemedsam_seg, onnx_seg):
        ep = PromptChain(seg, image, strategy="box+all_clicks+prev_logits")
        out = []
        for kind, arg in steps:
            out.append(ep.add_box(arg) if kind == "box" else ep.add_point(*arg))
        results[seg.backend] = out
    for a, b in zip(results["torch"], results["onnx"]):
        np.testing.assert_allclose(b.low_res_logits, a.low_res_logits, atol=1e-3, rtol=0)
        inter = np.logical_and(a.mask, b.mask).sum()
        union = np.logical_or(a.mask, b.mask).sum()
        assert union > 0 and inter / union > 0.999
        assert b.prompts.to_dict() == a.prompts.to_dict()
