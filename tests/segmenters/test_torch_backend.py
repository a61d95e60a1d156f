"""TorchSegmenter: the whole SAM predictor path against the official one (tiny random ViT,
non-square image), the embedding cache, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from medsam_agent_rt.segmenters import Segmenter  # noqa: E402
from medsam_agent_rt.segmenters.torch_backend import TorchSegmenter  # noqa: E402


@pytest.fixture(scope="module")
def pair(sam_oracle, tiny_configs, paired):
    ref, ours = paired(sam_oracle, tiny_configs.vit, seed=5)
    return ref, TorchSegmenter(ours, "sam", cache_size=2)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)  # H != W: padding + crop paths


def _official_predict(ref, image, points, labels, box, mask_input, multimask):
    """segment-anything's SamPredictor.set_image + predict, written out (its transforms module
    imports torchvision): ResizeLongestSide with PIL bilinear, Sam.preprocess, apply_coords,
    prompt encoder, decoder, Sam.postprocess_masks, > 0."""
    h, w = image.shape[:2]
    s = ref.image_encoder.img_size
    scale = s / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    resized = np.array(Image.fromarray(image).resize((neww, newh), Image.BILINEAR))
    x = ref.preprocess(torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None])
    ratio = np.array([neww / w, newh / h])
    with torch.no_grad():
        emb = ref.image_encoder(x)
        pts = None
        if points is not None:
            c = torch.as_tensor(points * ratio, dtype=torch.float)[None]
            pts = (c, torch.as_tensor(labels, dtype=torch.int)[None])
        bx = (
            None
            if box is None
            else torch.as_tensor(box.reshape(2, 2) * ratio, dtype=torch.float).reshape(1, 4)
        )
        m = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float)[None]
        sparse, dense = ref.prompt_encoder(points=pts, boxes=bx, masks=m)
        low, iou = ref.mask_decoder(
            emb, ref.prompt_encoder.get_dense_pe(), sparse, dense, multimask
        )
        masks = ref.postprocess_masks(low, (newh, neww), (h, w)) > ref.mask_threshold
    return masks[0].numpy(), iou[0].numpy(), low[0].numpy(), emb


def test_is_a_segmenter(pair):
    assert isinstance(pair[1], Segmenter)
    assert pair[1].backend == "torch" and pair[1].family == "sam"


@pytest.mark.parametrize("multimask", [True, False])
def test_whole_prediction_matches_official_predictor(pair, image, multimask):
    ref, seg = pair
    seg.set_image(image)
    pts = np.array([[10.0, 12.0], [60.5, 30.0]])
    labels = np.array([1, 0])
    box = np.array([5.0, 4.0, 70.0, 45.0])
    first = seg.predict(pts, labels, box, None, multimask)
    m_ref, iou_ref, low_ref, emb_ref = _official_predict(
        ref, image, pts, labels, box, None, multimask
    )
    np.testing.assert_allclose(seg.image_embedding, emb_ref.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(first.low_res_logits, low_ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(first.scores, iou_ref, atol=1e-4, rtol=0)
    assert first.masks.shape == m_ref.shape == ((3 if multimask else 1), 50, 80)
    assert first.masks.dtype == np.bool_
    assert (first.masks != m_ref).mean() < 1e-3  # float32 vs float64 upsampling near 0 only
    # chained: previous logits as mask input
    prev = first.low_res_logits[:1]
    second = seg.predict(pts[:1], labels[:1], None, prev, multimask)
    m2, iou2, low2, _ = _official_predict(ref, image, pts[:1], labels[:1], None, prev, multimask)
    np.testing.assert_allclose(second.low_res_logits, low2, atol=1e-4, rtol=0)
    np.testing.assert_allclose(second.scores, iou2, atol=1e-4, rtol=0)
    assert (second.masks != m2).mean() < 1e-3


def test_embedding_cache_is_keyed_by_content_and_lru(pair, image):
    _, seg = pair
    seg.clear_cache()
    calls = seg.encoder_calls
    seg.set_image(image)
    seg.set_image(image.copy())  # same content, other buffer: cached
    assert seg.encoder_calls == calls + 1
    other = image.copy()
    other[0, 0, 0] ^= 1  # one bit differs: a new image
    seg.set_image(other)
    assert seg.encoder_calls == calls + 2
    third = np.ascontiguousarray(image[:, ::-1])
    seg.set_image(third)  # cache_size=2: evicts `image`
    seg.set_image(other)
    assert seg.encoder_calls == calls + 3
    seg.set_image(image)
    assert seg.encoder_calls == calls + 4
    seg.reset_image()
    assert not seg.is_image_set
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict(box=np.array([1, 1, 5, 5]))
    seg.set_image(image)  # still cached after reset_image
    assert seg.encoder_calls == calls + 4


def test_grayscale_and_rgba_are_converted(pair, image):
    _, seg = pair
    gray = image[:, :, 0]
    box = np.array([5.0, 4.0, 70.0, 45.0])
    seg.set_image(np.repeat(gray[:, :, None], 3, axis=2))
    want = seg.predict(box=box)
    for variant in (gray, gray[:, :, None]):
        seg.set_image(variant)
        got = seg.predict(box=box)
        np.testing.assert_array_equal(got.low_res_logits, want.low_res_logits)
    seg.set_image(image)
    want = seg.predict(box=box)
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 7, np.uint8)], axis=2)
    seg.set_image(rgba)
    np.testing.assert_array_equal(seg.predict(box=box).low_res_logits, want.low_res_logits)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((20, 30), np.uint16), "uint8.*uint16.*convert"),
        (np.zeros((20, 30, 3), np.float32), "uint8.*float32.*convert"),
        (np.zeros((20, 30, 2), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, 30, 3), np.uint8), "empty"),
    ],
)
def test_bad_images_are_rejected(pair, bad, match):
    with pytest.raises(ValueError, match=match):
        pair[1].set_image(bad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "empty prompt list"),
        ({"point_coords": np.zeros((0, 2)), "point_labels": np.zeros(0)}, "empty prompt list"),
        ({"box": np.array([30.0, 5.0, 30.0, 20.0])}, "x1 < x2"),
        ({"box": np.array([10.0, 25.0, 30.0, 20.0])}, "y1 < y2"),
        ({"box": np.array([-1.0, 5.0, 30.0, 20.0])}, "outside the image of 80x50"),
        ({"box": np.array([1.0, 2.0, 3.0])}, r"box must be \(4,\)"),
        (
            {"point_coords": np.array([[80.0, 10.0]]), "point_labels": np.array([1])},
            r"point \(80, 10\) is outside the image of 80x50",
        ),
        (
            {"point_coords": np.array([[10.0, -0.5]]), "point_labels": np.array([1])},
            r"point \(10, -0.5\) is outside",
        ),
        (
            {"point_coords": np.array([[10.0, 5.0]]), "point_labels": np.array([2])},
            "0 \\(negative\\)",
        ),
        ({"point_coords": np.array([[10.0, 5.0]]), "point_labels": np.array([1, 0])}, "to match"),
        ({"point_coords": np.array([[10.0, 5.0]])}, "together"),
        ({"point_coords": np.array([[np.nan, 5.0]]), "point_labels": np.array([1])}, "finite"),
        (
            {
                "box": np.array([1.0, 2.0, 30.0, 40.0]),
                "mask_input": np.zeros((1, 16, 16), np.float32),
            },
            r"mask_input must be float low-res logits of shape \(1, 32, 32\)",
        ),
        (
            {
                "box": np.array([1.0, 2.0, 30.0, 40.0]),
                "mask_input": np.zeros((1, 32, 32), np.uint8),
            },
            "mask_input must be float",
        ),
    ],
)
def test_bad_prompts_are_rejected(pair, image, kwargs, match):
    _, seg = pair
    seg.set_image(image)
    with pytest.raises(ValueError, match=match):
        seg.predict(**kwargs)


def test_predict_before_set_image(tiny_configs):
    from medsam_agent_rt.segmenters.modeling.sam import SamModel

    seg = TorchSegmenter(SamModel(tiny_configs.vit), "sam")
    with pytest.raises(RuntimeError, match="before set_image"):
        seg.predict(box=np.array([1.0, 1.0, 5.0, 5.0]))
    assert seg.original_size == (0, 0) and isinstance(seg, Segmenter)
    with pytest.raises(RuntimeError, match="set_image"):
        _ = seg.image_embedding


def test_litemedsam_coordinates_follow_the_official_floor_mapping(litemedsam_seg, demo_image):
    """LiteMedSAM maps boxes with int(v * 256 / max(H, W)): boxes that floor to the same model
    pixels give identical logits (SAM-style scaling would not); the next pixel differs."""
    seg = litemedsam_seg
    seg.set_image(demo_image[0])  # 1024 x 1024: model pixel = floor(v / 4)
    a = seg.predict(box=np.array([400.0, 500.0, 600.0, 640.0]), multimask_output=False)
    b = seg.predict(box=np.array([403.0, 503.5, 603.9, 643.0]), multimask_output=False)
    c = seg.predict(box=np.array([404.0, 500.0, 600.0, 640.0]), multimask_output=False)
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
    assert np.abs(a.low_res_logits - c.low_res_logits).max() > 1e-3
    assert a.masks.shape == (1, 1024, 1024)
