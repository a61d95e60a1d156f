"""Model selection of the click tool (training.tool_eval): the loose-box measures a policy's boxes
call for, against a per-box loop and an independent NumPy geometry oracle."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.training import tool_data, tool_eval, tool_sim  # noqa: E402
from medsam_agent_rt.training.tool_finetune import Pool  # noqa: E402

from tests.training.test_tool_finetune import tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def val_pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("tool_eval_cache")
    torch.set_num_threads(1)
    assert tool_data.build_cache(root, None, "val", 0, phantoms=2, seed=3, model=tiny_model()) == 2
    return Pool(root, "val")


def _disc_gt(size=256, box=(60, 80, 119, 129)):
    gt = np.zeros((size, size), bool)
    x1, y1, x2, y2 = box
    gt[y1 : y2 + 1, x1 : x2 + 1] = True
    return gt


def test_grown_box_only_grows_within_bounds_and_clips():
    gt = _disc_gt()
    w, h = 60, 50
    for seed in range(300):
        box = tool_sim.grown_box(gt, np.random.default_rng(seed), 0.5)
        # outward only, by at most half the side (rounded), never past the frame
        assert box[0] <= 60 and box[1] <= 80 and box[2] >= 119 and box[3] >= 129
        assert box[0] >= 60 - 0.5 * w - 0.5 and box[2] <= 119 + 0.5 * w + 0.5
        assert box[1] >= 80 - 0.5 * h - 0.5 and box[3] <= 129 + 0.5 * h + 0.5
    edge = _disc_gt(box=(0, 0, 30, 30))
    for seed in range(50):
        box = tool_sim.grown_box(edge, np.random.default_rng(seed), 2.0)
        assert box.min() >= 0 and box.max() <= 255


def test_parse_loose_names_bad_measures():
    assert tool_eval.parse_loose("jitter0.3, grow1") == [("jitter", 0.3), ("grow", 1.0)]
    assert tool_eval.parse_loose("") == []
    for bad in ("jitter", "shrink0.2", "jitter0.5", "grow3", "grow0"):
        with pytest.raises(ValueError, match="loose box measure"):
            tool_eval.parse_loose(bad)


def test_loose_boxes_are_the_same_for_every_call_and_differ_per_draw():
    gt = _disc_gt()
    a = tool_eval.loose_box(gt, "grow", 0.5, (3, 1, 0))
    assert np.array_equal(a, tool_eval.loose_box(gt, "grow", 0.5, (3, 1, 0)))
    assert not np.array_equal(a, tool_eval.loose_box(gt, "grow", 0.5, (3, 1, 1)))


def test_loose_box_dice_matches_a_per_box_loop(val_pool):
    """The batched measure equals decoding each loose box alone and scoring it with NumPy."""
    model = tiny_model(1).eval()
    pairs = tool_eval.val_pairs(val_pool, 0)
    embs, gts, valids = val_pool.batch(pairs)
    got = tool_eval.loose_box_dice(model, embs, gts, valids, pairs, "jitter", 0.3)
    want = np.zeros(len(pairs))
    for k, (i, t) in enumerate(pairs):
        for d in range(tool_eval.LOOSE_DRAWS):
            box = tool_eval.loose_box(gts[k], "jitter", 0.3, (i, t, d))
            coords, labels = tool_sim.prompt_tokens([], box)
            with torch.inference_mode():
                sparse = model.prompt_encoder.embed_tokens(
                    torch.from_numpy(coords[None]), torch.from_numpy(labels[None])
                )
                low, _ = model.decode(
                    torch.from_numpy(embs[k : k + 1]),
                    sparse,
                    torch.zeros(1, 1, *model.mask_input_size),
                    torch.zeros(1),
                )
            pred = (low[0, 0].numpy() > 0) & valids[k]
            denom = pred.sum() + gts[k].sum()
            want[k] += (
                2.0 * (pred & gts[k]).sum() / denom if denom else 0.0
            ) / tool_eval.LOOSE_DRAWS
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_evaluate_by_dataset_adds_loose_measures_alone(val_pool):
    model = tiny_model(1).eval()
    res = tool_eval.evaluate_by_dataset(model, val_pool, carry="", loose="jitter0.2,grow0.5")
    for row in res.values():
        assert set(row) == {"pairs", "box~jitter0.2", "box~grow0.5"}
        assert 0.0 <= row["box~grow0.5"] <= 1.0
    with pytest.raises(ValueError, match="carry"):
        tool_eval.evaluate_pool(model, val_pool, carry="", loose="")
