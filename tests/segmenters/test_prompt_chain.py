"""PromptChain: the prompts each carrying strategy sends, multimask on the first prompt only,
preview/commit, and a real chained run on TorchSegmenter."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_agent_rt.segmenters import STRATEGIES, Encoded, Prediction, PromptChain


class Recorder:
    """A Segmenter that records every decode() call and returns masks it can be checked by:
    mask k of call n has k + n pixels set, score 0.1 * (k + 1) reversed on odd calls (so the
    best-scoring mask is not always mask 0), logits = n + k."""

    family = "test"
    backend = "fake"

    def __init__(self, h=10, w=12):
        self.calls: list[dict] = []
        self.size = (h, w)
        self.images = 0

    def encode(self, image):
        self.images += 1
        return Encoded(None, self.size, self.size, "k")

    def decode(self, encoded, *args, **kwargs):
        assert isinstance(encoded, Encoded) and encoded.original_size == self.size
        return self.predict(*args, **kwargs)

    def set_image(self, image):
        self.images += 1

    def reset_image(self):
        pass

    @property
    def is_image_set(self):
        return self.images > 0

    @property
    def original_size(self):
        return self.size

    def predict(
        self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True
    ):
        n = len(self.calls)
        self.calls.append(
            dict(
                points=point_coords,
                labels=point_labels,
                box=box,
                mask_input=mask_input,
                multimask=multimask_output,
            )
        )
        c = 3 if multimask_output else 1
        masks = np.zeros((c, *self.size), bool)
        for k in range(c):
            masks[k].flat[: k + n + 1] = True
        scores = np.arange(1, c + 1, dtype=np.float32) * 0.1
        if n % 2:
            scores = scores[::-1].copy()
        logits = np.stack([np.full((4, 4), n + k, np.float32) for k in range(c)])
        return Prediction(masks, scores, logits)


IMG = np.zeros((10, 12, 3), np.uint8)
BOX, BOX2 = [1, 1, 8, 8], [2, 2, 9, 9]


def _run(strategy):
    seg = Recorder()
    ep = PromptChain(seg, IMG, strategy=strategy, multimask_first=True)
    ep.add_box(BOX)
    ep.add_point((3, 4), True)
    ep.add_point((5, 6), False)
    ep.add_box(BOX2)
    return ep, seg.calls


def _pts(call):
    return None if call["points"] is None else call["points"].tolist()


def test_authors_strategy_sends_newest_prompt_and_previous_logits():
    ep, calls = _run("newest_click+prev_logits")
    assert calls[0]["box"].tolist() == BOX and _pts(calls[0]) is None
    assert calls[0]["mask_input"] is None and calls[0]["multimask"]
    # the box is dropped once a mask exists; only the newest click goes
    assert calls[1]["box"] is None and _pts(calls[1]) == [[3, 4]]
    assert calls[1]["labels"].tolist() == [1]
    assert calls[2]["box"] is None and _pts(calls[2]) == [[5, 6]]
    assert calls[2]["labels"].tolist() == [0]
    assert calls[3]["box"].tolist() == BOX2 and _pts(calls[3]) is None
    for i in (1, 2, 3):
        assert calls[i]["mask_input"] is not None and not calls[i]["multimask"]
    assert ep.strategy == "newest_click+prev_logits"


def test_box_strategies_keep_the_box_and_the_clicks():
    _, calls = _run("box+newest_click+prev_logits")
    assert calls[1]["box"].tolist() == BOX and _pts(calls[1]) == [[3, 4]]
    assert calls[2]["box"].tolist() == BOX and _pts(calls[2]) == [[5, 6]]
    assert calls[3]["box"].tolist() == BOX2 and _pts(calls[3]) == [[5, 6]]  # new box replaces
    _, calls = _run("box+all_clicks+prev_logits")
    assert _pts(calls[2]) == [[3, 4], [5, 6]] and calls[2]["labels"].tolist() == [1, 0]
    assert calls[3]["box"].tolist() == BOX2 and _pts(calls[3]) == [[3, 4], [5, 6]]
    assert all(c["mask_input"] is not None for c in calls[1:])
    _, calls = _run("box+all_clicks")
    assert _pts(calls[2]) == [[3, 4], [5, 6]] and calls[2]["box"].tolist() == BOX
    assert all(c["mask_input"] is None for c in calls)


def test_previous_logits_are_those_of_the_kept_mask():
    """Multimask on the first prompt keeps the best-scoring mask; its logits go to the next
    step's mask_input."""
    ep, calls = _run("box+all_clicks+prev_logits")
    first = ep.history[0]
    assert first.mask_index == 2 and first.score == pytest.approx(0.3)  # scores 0.1, 0.2, 0.3
    assert first.mask.sum() == 3  # mask 2 of call 0 has 3 pixels
    np.testing.assert_array_equal(calls[1]["mask_input"], np.full((1, 4, 4), 2, np.float32))
    np.testing.assert_array_equal(calls[2]["mask_input"], np.full((1, 4, 4), 1, np.float32))
    assert [s.prompts.multimask_output for s in ep.history] == [True, False, False, False]
    assert ep.num_steps == 4 and ep.mask.sum() == calls.__len__()


def test_preview_does_not_change_state_and_commit_checks_its_base():
    seg = Recorder()
    ep = PromptChain(seg, IMG, strategy="box+all_clicks")
    ep.add_box(BOX)
    a = ep.preview_point((3, 4), True)
    b = ep.preview_point((7, 7), False)
    assert ep.clicks == [] and ep.num_steps == 1 and not a.committed
    done = ep.commit(b)
    assert done.committed and ep.clicks == [(7.0, 7.0, False)] and ep.num_steps == 2
    with pytest.raises(ValueError, match="current state"):
        ep.commit(a)  # previewed from an older state
    assert seg.images == 1  # the image is encoded once per episode


def test_undo_returns_to_the_state_before_the_last_commit():
    seg = Recorder()
    ep = PromptChain(seg, IMG, strategy="box+all_clicks+prev_logits")
    assert ep.undo() is None and ep.num_steps == 0
    first = ep.add_box(BOX)
    ep.add_point((3, 4), True)
    undone = ep.undo()
    assert undone.action == "point" and ep.clicks == [] and ep.num_steps == 1
    np.testing.assert_array_equal(ep.mask, first.mask)
    np.testing.assert_array_equal(ep.low_res_logits, first.low_res_logits)
    ep.add_point((5, 6), False)  # the next step chains from the restored logits
    np.testing.assert_array_equal(seg.calls[-1]["mask_input"], first.low_res_logits[None])
    assert _pts(seg.calls[-1]) == [[5, 6]] and len(ep.history) == 2
    ep.undo()
    ep.undo()
    assert ep.box is None and not ep.mask.any() and ep.low_res_logits is None


def test_family_defaults_and_bad_arguments():
    from medsam_agent_rt.segmenters.families import FAMILIES

    seg = Recorder()
    seg.family = "litemedsam"
    ep = PromptChain(seg, IMG)
    assert ep.strategy == FAMILIES["litemedsam"].default_strategy == "box+all_clicks"
    assert ep.multimask_first == FAMILIES["litemedsam"].multimask_first
    with pytest.raises(ValueError, match="strategy must be one of"):
        PromptChain(seg, IMG, strategy="all")
    with pytest.raises(ValueError, match="box must be 4"):
        ep.add_box([1, 2, 3])
    assert set(STRATEGIES) == {
        "newest_click+prev_logits",
        "box+newest_click+prev_logits",
        "box+all_clicks+prev_logits",
        "box+all_clicks",
    }


def test_record_is_json_serialisable():
    import json

    ep, _ = _run("box+all_clicks")
    rec = json.loads(json.dumps(ep.to_record()))
    assert rec["strategy"] == "box+all_clicks" and len(rec["steps"]) == 4
    assert rec["steps"][2]["prompts"]["point_coords"] == [[3.0, 4.0], [5.0, 6.0]]


def test_real_chain_on_litemedsam(litemedsam_seg, demo_image):
    """On the real model: a box then a positive click inside a missed part of the organ. The
    chained call equals a direct predict() with the same prompts (no hidden state), and a bad
    click raises without touching the episode state."""
    image, masks = demo_image
    gt = masks["liver"]
    ys, xs = np.nonzero(gt)
    box = [xs.min(), ys.min(), xs.max(), ys.max()]
    ep = PromptChain(
        litemedsam_seg, image, strategy="box+all_clicks+prev_logits", multimask_first=False
    )
    s1 = ep.add_box(box)
    miss = np.argwhere(gt & ~s1.mask)
    y, x = miss[len(miss) // 2]
    s2 = ep.add_point((x, y), True)
    litemedsam_seg.set_image(image)
    direct = litemedsam_seg.predict(
        np.array([[x, y]], float),
        np.array([1]),
        np.asarray(box, float),
        s1.low_res_logits[None],
        False,
    )
    np.testing.assert_array_equal(s2.mask, direct.masks[0])
    assert s2.prompts.used_mask_input and s2.prompts.box.tolist() == [float(v) for v in box]
    with pytest.raises(ValueError, match="outside the image"):
        ep.add_point((5000, 10), True)
    assert ep.num_steps == 2 and len(ep.clicks) == 1
