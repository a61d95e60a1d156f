"""The SAM2 image-mode segmenter: checkpoint recognition and strict loading in the original
layout, the end-to-end predictor against transformers (preprocessing, prompt order, selection,
post-processing), and a MedSAM2 agent episode following the released protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from medsam_agent_rt.segmenters import build_segmenter  # noqa: E402
from medsam_agent_rt.segmenters.checkpoints import CheckpointError, load_checkpoint  # noqa: E402
from medsam_agent_rt.segmenters.families import FAMILIES  # noqa: E402
from medsam_agent_rt.segmenters.sam2.preprocess import preprocess, upsample_logits  # noqa: E402
from medsam_agent_rt.segmenters.sam2.segmenter import Sam2TorchSegmenter  # noqa: E402


def test_preprocess_matches_torch_antialiased_resize():
    rng = np.random.default_rng(0)
    for h, w, s in [(300, 500, 512), (700, 450, 256), (64, 80, 512)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        t = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
        ref = F.interpolate(t, (s, s), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        assert np.abs(preprocess(img, s) - ((ref - mean) / std).numpy()).max() < 1e-5
    low = rng.normal(size=(2, 128, 128)).astype(np.float32) * 8
    for size in [(300, 500), (100, 77)]:
        ref = F.interpolate(torch.from_numpy(low)[None], size, mode="bilinear", align_corners=False)
        assert np.abs(upsample_logits(low, size) - ref[0].numpy()).max() < 1e-4


@pytest.mark.slow
def test_checkpoint_recognition_and_strict_loading(medsam2_file, tiny512, tmp_path):
    loaded = load_checkpoint(medsam2_file)
    assert loaded.family.name == "medsam2" and loaded.variant == "sam2.1_hiera_tiny"
    assert loaded.model.config.image_size == 1024  # the released agent's config
    assert loaded.family.preprocessing.input_size == 1024
    assert load_checkpoint(medsam2_file, image_size=512).model.config.image_size == 512
    ours = tiny512[0].state_dict()
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, ours[k]), k
    # the same keys as safetensors, a SAM2.1 file name
    from safetensors.torch import save_file

    st = tmp_path / "sam2.1_hiera_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in ours.items()}, str(st))
    assert load_checkpoint(st).family.name == "sam2"
    # strict: a missing key is named; a wrong family is refused
    state = dict(ours)
    state.pop("memory_encoder.out_proj.weight")
    bad = tmp_path / "MedSAM2_broken.pt"
    torch.save({"model": state}, bad)
    with pytest.raises(CheckpointError, match="memory_encoder.out_proj.weight"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="sam2 or medsam2"):
        load_checkpoint(medsam2_file, family="medsam")


def _reference(hf, image, size, points, labels, box, mask, multimask):
    """SAM2ImagePredictor's steps written with torch ops around transformers' Sam2Model."""
    h, w = image.shape[:2]
    t = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    t = F.interpolate(t, (size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    scale = np.array([size / w, size / h])
    coords, labs = [], []
    if box is not None:
        coords += list(np.asarray(box, float).reshape(2, 2) * scale)
        labs += [2, 3]
    if points is not None:
        coords += list(np.asarray(points, float) * scale)
        labs += list(labels)
    with torch.no_grad():
        out = hf(
            pixel_values=(t - mean) / std,
            input_points=torch.tensor(np.array([[coords]]), dtype=torch.float32),
            input_labels=torch.tensor([[labs]]),
            input_masks=None if mask is None else torch.from_numpy(mask)[None],
            multimask_output=multimask,
        )
    low = out.pred_masks[0, 0]
    up = F.interpolate(low[None], (h, w), mode="bilinear", align_corners=False)[0]
    return up.numpy(), torch.clamp(low, -32, 32).numpy(), out.iou_scores[0, 0].numpy()


@pytest.mark.slow
def test_segmenter_matches_transformers_end_to_end(tiny512):
    ours, hf = tiny512
    seg = Sam2TorchSegmenter(ours, FAMILIES["medsam2"])
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    seg.set_image(image)
    box = np.array([40.0, 30.0, 200.0, 180.0])
    pts, labs = np.array([[120.0, 100.0], [20.0, 200.0]]), np.array([1, 0])
    first = seg.predict(box=box, multimask_output=True)
    calls = [
        (None, None, box, None, True),
        (pts, labs, None, None, False),
        (pts, labs, box, None, True),
        (pts[:1], labs[:1], None, first.low_res_logits[:1], False),
    ]
    for p, lab, b, m, mm in calls:
        pred = seg.predict(p, lab, b, m, mm)
        up, low, iou = _reference(hf, image, 512, p, lab, b, m, mm)
        assert np.abs(pred.scores - iou).max() < 1e-4
        assert np.abs(pred.low_res_logits - low).max() < 1e-4
        sure = np.abs(up) > 1e-3  # pixels whose sign a 1e-4 difference cannot flip
        np.testing.assert_array_equal(pred.masks[sure], up[sure] > 0)
    assert seg.encoder_calls == 1


@pytest.mark.slow
def test_build_segmenter_from_a_medsam2_file(medsam2_file):
    seg = build_segmenter(str(medsam2_file), image_size=512)
    assert seg.family == "medsam2" and seg.backend == "torch"
    assert seg.preprocessing.input_size == 512 and seg.mask_input_size == (128, 128)
    with pytest.raises(RuntimeError, match="before set_image"):
        seg.predict(box=np.array([1, 1, 5, 5]))


def _call(name, **arguments):
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


@pytest.mark.slow
def test_medsam2_episode_follows_the_released_protocol(medsam2_file):
    """MedSAM2_latest.pt through SAM2.1's Hiera-T config at 1024; a recorded conversation (box,
    positive click, negative click, stop) replayed: the first call sends the box as labels 2, 3
    with multimask output and keeps the best score; each refinement sends ONLY the newest click
    plus the previous 256x256 low-res logits and asks for one mask."""
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.policies import ReplayPolicy

    seg = build_segmenter(str(medsam2_file))
    assert seg.input_size == 1024 and seg.mask_input_size == (256, 256)
    sent = []
    decode = seg._decode

    def spy(emb, coords, labels, mask):
        sent.append((coords.copy(), labels.copy(), None if mask is None else mask.copy()))
        return decode(emb, coords, labels, mask)

    seg._decode = spy
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    texts = [
        _call("add_bbox", bbox_2d=[200, 250, 700, 750]),
        _call("add_point", point_2d=[450, 500], point_type="positive"),
        _call("add_point", point_2d=[300, 300], point_type="negative"),
        _call("stop_action"),
    ]
    mask, rec = Episode(seg, ReplayPolicy(texts)).run(image, "liver")
    assert rec.strategy == "newest_click+prev_logits"
    assert [t.outcome for t in rec.turns] == ["executed"] * 3 + ["stop"]
    assert [s[1].tolist() for s in sent] == [[2, 3, -1], [1, -1], [0, -1]]
    assert sent[0][2] is None and sent[1][2] is not None and sent[2][2] is not None
    assert [t.prompts["multimask_output"] for t in rec.turns[:3]] == [True, False, False]
    # replay the same prompts directly: the episode's masks are the segmenter's own outputs
    seg._decode = decode
    seg.set_image(image)
    box = np.array(rec.turns[0].prompts["box"])
    p0 = seg.predict(box=box, multimask_output=True)
    k = int(np.argmax(p0.scores))
    logits = p0.low_res_logits[k : k + 1]
    for turn in rec.turns[1:3]:
        pr = turn.prompts
        p = seg.predict(
            np.array(pr["point_coords"]), np.array(pr["point_labels"]), None, logits, False
        )
        logits = p.low_res_logits[:1]
        assert turn.mask_area == int(p.masks[0].sum())
    np.testing.assert_array_equal(mask, p.masks[0])
