"""Click fine-tuning of the tool (training.tool_*): on a tiny SAM-architecture model with real
LiteMedSAM sizes (64 x 64 embedding grid, 256 x 256 frame) and a cache built from phantoms."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.training import tool_data, tool_sim  # noqa: E402
from medsam_agent_rt.training.tool_finetune import Pool, ToolConfig, episode_loss, train  # noqa: E402

from medsam_agent_rt import ops  # noqa: E402
from medsam_agent_rt.segmenters.modeling.sam import SamConfig, SamModel  # noqa: E402
from medsam_agent_rt.segmenters.modeling.tiny_vit import TinyViTConfig  # noqa: E402

TINY = SamConfig(
    encoder=TinyViTConfig(
        img_size=256,
        embed_dims=(8, 16, 24, 320),
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 3, 4),
        window_sizes=(7, 7, 14, 7),
        out_chans=32,
    ),
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_depth=1,
    decoder_heads=2,
    decoder_mlp_dim=32,
    iou_head_hidden_dim=16,
)


def tiny_model(seed: int = 0) -> SamModel:
    torch.manual_seed(seed)
    return SamModel(TINY)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """4 train + 2 val phantom images encoded by the tiny encoder."""
    root = tmp_path_factory.mktemp("tool_cache")
    torch.set_num_threads(1)
    model = tiny_model()
    assert tool_data.build_cache(root, None, "train", 0, phantoms=4, seed=1, model=model) == 4
    assert tool_data.build_cache(root, None, "val", 0, phantoms=2, seed=1, model=model) == 2
    return root


def cfg(cache, out, **kw) -> ToolConfig:
    base = dict(
        cache=str(cache),
        out=str(out),
        steps=4,
        batch=2,
        clicks=2,
        lr=3e-3,
        warmup=1,
        eval_every=0,
        eval_limit=2,
        threads=1,
    )
    base.update(kw)
    return ToolConfig(**base)


def test_cache_is_resumable_and_masks_match_the_frame(cache):
    entries = tool_data.read_index(cache, "train")
    assert len(entries) == 4 and len({e.image_id for e in entries}) == 4
    assert (
        tool_data.build_cache(cache, None, "train", 0, phantoms=4, seed=1, model=tiny_model()) == 0
    )
    emb, masks, resized = tool_data.load_entry(entries[0])
    assert emb.shape == (32, 64, 64) and emb.dtype == np.float16
    assert masks.shape[1:] == (256, 256) and masks.dtype == np.bool_
    assert not masks[:, resized[0] :, :].any() and not masks[:, :, resized[1] :].any()


def test_mask_to_frame_against_a_loop():
    rng = np.random.default_rng(0)
    m = rng.random((37, 23)) > 0.5
    out = tool_data.mask_to_frame(m, (16, 10), 20)
    want = np.zeros((20, 20), bool)
    for r in range(16):
        for c in range(10):
            want[r, c] = m[int((r + 0.5) * 37 / 16), int((c + 0.5) * 23 / 10)]
    np.testing.assert_array_equal(out, want)


def test_clicks_follow_the_kernel_and_stay_in_the_error_region():
    gt = np.zeros((40, 50), bool)
    gt[10:30, 5:25] = True
    pred = np.zeros_like(gt)
    pred[10:30, 5:15] = True
    rng = np.random.default_rng(0)
    c = ops.next_click(pred, gt)
    assert tool_sim.corrective_click(pred, gt, [], rng, True) == (c.x, c.y, int(c.positive))
    for _ in range(20):
        x, y, lab = tool_sim.corrective_click(pred, gt, [], rng, False)
        assert lab == 1 and gt[y, x] and not pred[y, x]
    x, y, lab = tool_sim.first_click(gt, rng, False)
    assert lab == 1 and gt[y, x]
    box = tool_sim.jittered_box(gt, rng, 0.0)
    np.testing.assert_array_equal(box, [5, 10, 24, 29])


def test_prompt_tokens_match_the_ops_layout():
    coords, labels = tool_sim.prompt_tokens([(3, 4, 1), (5, 6, 0)], None)
    ref_c, ref_l = ops.sam_prompt_tokens(
        np.array([[3, 4], [5, 6]], np.float32), np.array([1, 0]), None
    )
    np.testing.assert_array_equal(coords, ref_c)
    np.testing.assert_array_equal(labels, ref_l)
    coords, labels = tool_sim.prompt_tokens([(3, 4, 1)], np.array([1.0, 2.0, 9.0, 8.0]))
    ref_c, ref_l = ops.sam_prompt_tokens(
        np.array([[3, 4]], np.float32), np.array([1]), np.array([1, 2, 9, 8], np.float32)
    )
    np.testing.assert_array_equal(coords, ref_c)
    np.testing.assert_array_equal(labels, ref_l)


def test_losses_against_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 8, 8)).astype(np.float32)
    gt = (rng.random((2, 8, 8)) > 0.5).astype(np.float32)
    valid = np.ones_like(gt)
    valid[:, 6:] = 0
    iou_pred = np.array([0.3, 0.7], np.float32)
    t = [torch.from_numpy(a) for a in (logits, iou_pred, gt, valid)]
    focal, dice, mse, iou = (v.numpy() for v in tool_sim.losses(t[0], t[1], t[2], t[3]))
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    ce = -(gt * np.log(p) + (1 - gt) * np.log(1 - p))
    pt = np.where(gt == 1, p, 1 - p)
    a = np.where(gt == 1, 0.25, 0.75)
    want_focal = (a * ce * (1 - pt) ** 2 * valid).sum((1, 2)) / valid.sum((1, 2))
    pv = p * valid
    want_dice = 1 - (2 * (pv * gt).sum((1, 2)) + 1) / (pv.sum((1, 2)) + gt.sum((1, 2)) + 1)
    hard = (logits > 0) & (valid > 0)
    want_iou = (hard & (gt > 0)).sum((1, 2)) / (hard | (gt > 0)).sum((1, 2))
    np.testing.assert_allclose(focal, want_focal, rtol=1e-4)
    np.testing.assert_allclose(dice, want_dice, rtol=1e-4)
    np.testing.assert_allclose(iou, want_iou, rtol=1e-6)
    np.testing.assert_allclose(mse, (iou_pred - want_iou) ** 2, rtol=1e-5)


def test_binary_kl_against_numpy():
    rng = np.random.default_rng(2)
    s, t = (rng.normal(size=(2, 6, 6)).astype(np.float32) * 3 for _ in range(2))
    valid = np.ones((2, 6, 6), np.float32)
    valid[1, :2] = 0
    got = tool_sim.binary_kl(*(torch.from_numpy(a) for a in (s, t, valid))).numpy()
    p, q = (1 / (1 + np.exp(-a.astype(np.float64))) for a in (s, t))
    kl = q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))
    np.testing.assert_allclose(got, (kl * valid).sum((1, 2)) / valid.sum((1, 2)), rtol=1e-4)
    same = tool_sim.binary_kl(*(torch.from_numpy(a) for a in (t, t, valid))).numpy()
    np.testing.assert_allclose(same, 0, atol=1e-6)


def test_distillation_pulls_the_box_only_output_to_the_teacher(cache, tmp_path):
    """Box-only episodes from a student (--init) unlike the base model (the teacher): with the
    distillation term the KL to the teacher ends well below the run without it."""
    import copy

    from medsam_agent_rt.training.tool_finetune import trainable_state

    torch.save(trainable_state(tiny_model(4)), tmp_path / "student.pt")
    pool = Pool(cache, "train")
    teacher = copy.deepcopy(tiny_model(3)).eval()
    probe = cfg(cache, tmp_path / "probe", p_box=1.0, clicks=0, distill=1.0)

    def kl(model) -> float:
        with torch.no_grad():
            draws = (np.random.default_rng(s) for s in range(4))
            return sum(episode_loss(model, pool, probe, r, teacher)[1][0][3] for r in draws)

    def kl_after(distill: float) -> float:
        model = tiny_model(3)
        c = cfg(cache, tmp_path / f"d{distill}", steps=8, p_box=1.0, clicks=0, distill=distill)
        train(replace(c, init=str(tmp_path / "student.pt")), log=lambda *_: None, model=model)
        return kl(model)

    with_distill, without = kl_after(50.0), kl_after(0.0)
    assert with_distill < 0.5 * without


@pytest.mark.slow
def test_loss_falls_resume_is_exact_and_the_encoder_stays_frozen(cache, tmp_path):
    # loss falls: the loss of fixed draws (box and click openings) before and after training
    model = tiny_model(1)
    enc_before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    c = cfg(cache, tmp_path / "a", steps=12, p_box=0.5)
    pool = Pool(cache, "train")

    def fixed_loss():
        with torch.no_grad():
            return sum(
                float(episode_loss(model, pool, c, np.random.default_rng(s))[0]) for s in range(6)
            )

    before = fixed_loss()
    train(c, log=lambda *_: None, model=model)
    assert fixed_loss() < 0.8 * before
    recs = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "loss" in r] == list(range(1, 13))
    for k, v in model.image_encoder.state_dict().items():
        assert torch.equal(v, enc_before[k]), k
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert (tmp_path / "a" / "loss.png").stat().st_size > 0

    # resume: 4 steps straight == 2 steps, stop, resume to 4 (bit-exact weights), with the
    # distillation teacher (the starting weights) and bf16 autocast on
    kw = dict(steps=4, distill=2.0, p_tight=0.5, bf16=True)
    m1 = tiny_model(2)
    train(cfg(cache, tmp_path / "b", **kw), log=lambda *_: None, model=m1)
    m2 = tiny_model(2)
    train(cfg(cache, tmp_path / "c", **{**kw, "steps": 2}), log=lambda *_: None, model=m2)
    m3 = tiny_model(2)
    train(cfg(cache, tmp_path / "c", **kw, resume=True), log=lambda *_: None, model=m3)
    for (k, v1), v3 in zip(m1.state_dict().items(), m3.state_dict().values()):
        assert torch.equal(v1, v3), k
    assert not torch.equal(
        m1.mask_decoder.iou_token.weight, tiny_model(2).mask_decoder.iou_token.weight
    )


def test_random_click_count_spans_the_range_and_fixed_count_is_unchanged(cache):
    """--clicks-min draws each step's number of corrections in [clicks-min, clicks] (every value
    occurs); without it every step runs clicks + 1 iterations, as before."""
    model = tiny_model()
    pool = Pool(cache, "train")
    seen = set()
    for step in range(24):
        rng = np.random.default_rng([0, step])
        with torch.no_grad():
            _, curve = episode_loss(model, pool, cfg(cache, "x", clicks=3, clicks_min=1), rng)
        seen.add(len(curve) - 1)
    assert seen == {1, 2, 3}
    for step in range(4):
        rng = np.random.default_rng([0, step])
        with torch.no_grad():
            _, curve = episode_loss(model, pool, cfg(cache, "x", clicks=3), rng)
        assert len(curve) == 4


def test_loose_boxes_grow_outward_only_when_enabled(cache, monkeypatch):
    """--p-loose replaces jittered boxes by boxes grown outward (each holds the GT box); without
    it no loose box is drawn (no extra random draw) and --grow has no effect."""
    model = tiny_model()
    pool = Pool(cache, "train")
    calls = []
    real = tool_sim.grown_box

    def spy(gt, rng, grow):
        box = real(gt, rng, grow)
        calls.append((gt, box, grow))
        return box

    monkeypatch.setattr(tool_sim, "grown_box", spy)
    loose = cfg(cache, "x", p_box=1.0, p_tight=0.0, p_loose=1.0, grow=0.8, clicks=1)
    for step in range(3):
        with torch.no_grad():
            episode_loss(model, pool, loose, np.random.default_rng([1, step]))
    assert len(calls) == 3 * loose.batch
    for gt, box, grow in calls:
        ys, xs = np.nonzero(gt)
        assert grow == 0.8
        assert (
            box[0] <= xs.min() and box[1] <= ys.min() and box[2] >= xs.max() and box[3] >= ys.max()
        )
    calls.clear()
    plain = cfg(cache, "x", p_box=1.0, clicks=1)
    with torch.no_grad():
        a, _ = episode_loss(model, pool, plain, np.random.default_rng([1, 0]))
        b, _ = episode_loss(model, pool, replace(plain, grow=1.5), np.random.default_rng([1, 0]))
    assert calls == [] and torch.equal(a, b)
    with pytest.raises(ValueError, match="p_loose"):
        train(cfg(cache, "x", p_loose=1.5), log=lambda *_: None, model=tiny_model())
    with pytest.raises(ValueError, match="loose box measure"):
        train(cfg(cache, "x", eval_loose="shrink0.2"), log=lambda *_: None, model=tiny_model())


# ----------------------------------------------------------------------------- zoom crops
def _disc(cx, cy, r, hw=(300, 400)):
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r**2


def test_zoom_crop_holds_its_target_and_keeps_only_whole_targets():
    import random

    a, near, far = _disc(100, 150, 15), _disc(122, 150, 4), _disc(350, 50, 10)
    sides = []
    for seed in range(40):
        frame, keep = tool_data.zoom_crop([a, near, far], 0, random.Random(seed))
        win = np.zeros(a.shape, bool)
        win[frame.y0 : frame.y0 + frame.h, frame.x0 : frame.x0 + frame.w] = True
        assert frame.w == frame.h and frame.x0 >= 0 and frame.y0 >= 0
        assert frame.x0 + frame.w <= 400 and frame.y0 + frame.h <= 300
        # the kept targets are exactly those >= 90 % inside (counted here on the full image)
        want = [k for k, m in enumerate([a, near, far]) if (m & win).sum() >= 0.9 * m.sum()]
        assert keep == want and 0 in keep and 2 not in keep
        sides.append(frame.w)
    # 29-px target: the side is expansion (1.4..4, log-uniform) x 29, never below 400 / 8
    assert min(sides) >= 50 and max(sides) <= int(np.ceil(4.0 * 29)) and max(sides) > 90
    big = np.zeros((300, 400), bool)
    big[20:280, 30:370] = True
    assert tool_data.zoom_crop([big], 0, random.Random(0)) is None  # would not zoom 1.5x


def test_zoom_crops_are_cached_resumably_and_shards_add_up(tmp_path):
    model = tiny_model()
    shards = tmp_path / "shards"
    assert tool_data.build_cache(shards, None, "train", 0, phantoms=4, seed=1, model=model) == 4
    added = [
        tool_data.build_zoom_crops(shards, None, "train", 0, 4, 1, shard=(i, 2), model=model)
        for i in (0, 1)
    ]
    whole = tmp_path / "whole"
    tool_data.build_cache(whole, None, "train", 0, phantoms=4, seed=1, model=model)
    n = tool_data.build_zoom_crops(whole, None, "train", 0, 4, 1, model=model)
    assert n == sum(added) >= 2  # phantoms hold small organs: most images give a crop
    assert tool_data.build_zoom_crops(whole, None, "train", 0, 4, 1, model=model) == 0
    crops = [e for e in tool_data.read_index(whole, "train") if e.is_zoom_crop]
    assert sorted(e.image_id for e in crops) == sorted(
        e.image_id for e in tool_data.read_index(shards, "train") if e.is_zoom_crop
    )
    assert len(crops) == n and all(e.image_id.endswith("#zoom0") for e in crops)
    for e in crops:
        emb, masks, resized = tool_data.load_entry(e)
        assert emb.shape == (32, 64, 64) and len(masks) == len(e.targets) >= 1
        assert not masks[:, resized[0] :, :].any() and not masks[:, :, resized[1] :].any()
        assert max(resized) == 256  # a crop fills the model frame like any image


def test_zoom_crops_are_not_distilled(cache, tmp_path):
    """The box iteration's KL to the base decoder is dropped for zoom-crop entries."""
    pool = Pool(cache, "train")
    probe = cfg(cache, tmp_path, p_box=1.0, clicks=0, distill=1.0)
    student, teacher = tiny_model(4).eval(), tiny_model(3).eval()

    def kl() -> float:
        with torch.no_grad():
            return episode_loss(student, pool, probe, np.random.default_rng(0), teacher)[1][0][3]

    assert kl() > 1e-4
    pool.entries = [
        replace(e, image_id=e.image_id + tool_data.ZOOM_TAG + "0") for e in pool.entries
    ]
    assert kl() == 0.0
