"""training.rewards against hand-computed cases of PROTOCOL.md's reward (and its doctests)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from medsam_agent_rt.training import rewards
from medsam_agent_rt.training.rewards import (
    RewardWeights,
    agent_reward,
    episode_from_scores,
    format_reward,
    quality_reward,
    reward_components,
    turn_credits,
)

from medsam_agent_rt.trajectory import EpisodeRecord, TurnRecord


def test_doctests():
    result = doctest.testmod(rewards)
    assert result.attempted >= 4 and result.failed == 0


def test_worked_example_box_then_stop():
    rec = episode_from_scores([(0.80, 0.889)], stop=True)
    (c,) = reward_components([rec])
    assert c["format"] == 1.0 and c["penalty"] == 0.0 and c["bonus"] == 0.0
    assert c["base"] == pytest.approx(0.8445)
    assert c["reward"] == pytest.approx(0.2 * 1.0 + 0.8 * 0.8445)
    assert round(c["reward"], 4) == 0.8756


def test_single_action_ended_by_budget_has_half_format_and_no_penalty():
    rec = episode_from_scores([(0.5, 0.6)], stop=False)
    assert format_reward([rec]) == [0.5]
    assert quality_reward([rec]) == [pytest.approx(0.55)]
    assert agent_reward([rec]) == [pytest.approx(0.1 + 0.8 * 0.55)]


def test_three_actions_overshoot_cost_and_bonus_by_hand():
    # IoU 0.5 -> 0.9 -> 0.7; Dice_T 0.82. base = 0.76; penalty = (0.9 - 0.7) + 0.03 = 0.23;
    # bonus = 0.1 * (0.4 + 0) = 0.04; quality = 0.57; stop -> format 1 -> 0.2 + 0.456 = 0.656
    rec = episode_from_scores([(0.5, 0.66), (0.9, 0.95), (0.7, 0.82)], stop=True)
    (c,) = reward_components([rec])
    assert c["base"] == pytest.approx(0.76)
    assert c["penalty"] == pytest.approx(0.23)
    assert c["bonus"] == pytest.approx(0.04)
    assert c["quality"] == pytest.approx(0.57)
    assert c["reward"] == pytest.approx(0.656)
    assert c["turns"] == 3


def test_monotone_refinement_only_pays_the_turn_cost():
    # 0.6 -> 0.7: no overshoot; penalty 0.01 * 2; bonus 0.1 * 0.1
    rec = episode_from_scores([(0.6, 0.7), (0.7, 0.8)], stop=True)
    (c,) = reward_components([rec])
    assert c["penalty"] == pytest.approx(0.02)
    assert c["bonus"] == pytest.approx(0.01)
    assert c["quality"] == pytest.approx(0.75 - 0.02 + 0.01)


def test_quality_is_clipped_to_unit_interval():
    high = episode_from_scores([(1.0, 1.0), (1.0, 1.0)], stop=True)  # 1 - 0.02 + 0
    assert quality_reward([high]) == [pytest.approx(0.98)]
    # A collapse after a perfect mask: base 0, penalty 1 + 0.02 -> clipped at 0
    low = episode_from_scores([(1.0, 1.0), (0.0, 0.0)], stop=False)
    assert quality_reward([low]) == [0.0]
    assert agent_reward([low]) == [pytest.approx(0.1)]


def test_no_action_stop_and_empty_gt():
    # stop without any action (after the refused first stop): format 0.5, empty mask vs GT 0.
    rec = episode_from_scores([], stop=True)
    assert format_reward([rec]) == [0.5]
    assert agent_reward([rec]) == [pytest.approx(0.1)]
    # empty GT and empty prediction count as IoU = Dice = 1
    empty = episode_from_scores([], stop=True, gt_empty=True)
    assert agent_reward([empty]) == [pytest.approx(0.1 + 0.8)]


def _record(outcomes, ious=(), end="invalid_output"):
    rec = episode_from_scores([], stop=False)
    rec.turns, rec.end_reason = [], end
    it = iter(ious)
    for i, (outcome, name) in enumerate(outcomes):
        iou = next(it) if outcome == "executed" else None
        rec.turns.append(
            TurnRecord(
                i,
                0,
                "",
                outcome,
                action=name and {"name": name},
                iou=iou,
                dice=None if iou is None else iou,
            )
        )
    return rec


def test_format_of_invalid_and_tool_error_endings():
    # invalid twice, nothing parsed: format 0, quality of the empty mask (0) -> 0
    rec = _record([("invalid", None), ("invalid", None)])
    rec.final = {"iou": 0.0, "dice": 0.0}
    assert format_reward([rec]) == [0.0] and agent_reward([rec]) == [0.0]
    # a box, then invalid output twice: an action was made, last call not stop -> 0.5
    rec = _record([("executed", "add_bbox"), ("invalid", None), ("invalid", None)], ious=[0.6])
    assert format_reward([rec]) == [0.5]
    assert agent_reward([rec]) == [pytest.approx(0.1 + 0.8 * 0.6)]
    # a point that crashed the tool is still a call that was made
    rec = _record([("tool_error", "add_point")], end="tool_error")
    rec.final = {"iou": 0.0, "dice": 0.0}
    assert format_reward([rec]) == [0.5]
    # refused stop, box, stop: 1.0
    rec = _record(
        [("refused_stop", "stop_action"), ("executed", "add_bbox"), ("stop", "stop_action")],
        ious=[0.7],
        end="stop",
    )
    assert format_reward([rec]) == [1.0]


def test_weights_are_configurable_and_validated():
    rec = episode_from_scores([(0.8, 0.9)], stop=True)
    w = RewardWeights(format_weight=0.0, quality_weight=1.0, iou_weight=1.0, dice_weight=0.0)
    assert agent_reward([rec], weights=w) == [pytest.approx(0.8)]
    with pytest.raises(ValueError, match="turn_cost"):
        RewardWeights(turn_cost=-0.1)


def test_missing_scores_are_an_error_naming_the_fix():
    rec = episode_from_scores([(0.8, 0.9)], stop=True)
    rec.turns[0].iou = None
    with pytest.raises(ValueError, match="ground-truth"):
        agent_reward([rec])


def test_turn_credits_follow_iou_gains():
    rec = _record(
        [
            ("invalid", None),
            ("executed", "add_bbox"),
            ("executed", "add_point"),
            ("stop", "stop_action"),
        ],
        ious=[0.5, 0.8],
        end="stop",
    )
    assert turn_credits([rec]) == [[0.0, 0.5, pytest.approx(0.3), 0.0]]


def test_rewards_of_a_real_session_record():
    """On a record produced by the real Episode (geometric stand-in tool), the reward uses the
    per-turn IoU/Dice the session computed with ops and the record's end reason."""
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.policies import ReplayPolicy
    from medsam_agent_rt.protocol import PHRASE_BOX, PHRASE_STOP, assistant_text

    class BoxTool:
        strategy = "box"

        def __init__(self, image):
            self.shape = image.shape[:2]

        def _step(self, box):
            m = np.zeros(self.shape, bool)
            x1, y1, x2, y2 = (int(v) for v in box)
            m[y1 : y2 + 1, x1 : x2 + 1] = True
            return type("Step", (), {"mask": m, "score": 1.0})()

        def add_box(self, box):
            return self._step(box)

        def add_point(self, xy, positive):
            raise RuntimeError("unused")

        preview_box, preview_point = add_box, add_point

    gt = np.zeros((100, 100), bool)
    gt[20:60, 20:60] = True
    image = np.zeros((100, 100, 3), np.uint8)
    texts = [
        assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [202, 202, 795, 595]}),  # 20..79, 20..59
        assistant_text(PHRASE_STOP, "stop_action", {}),
    ]
    _, rec = Episode(BoxTool, ReplayPolicy(texts), tool_spec="box").run(image, "square", gt)
    pred = np.zeros_like(gt)
    pred[20:60, 20:80] = True
    iou = (pred & gt).sum() / (pred | gt).sum()
    dice = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
    assert rec.turns[0].iou == pytest.approx(iou)
    assert agent_reward([EpisodeRecord.from_json(rec.to_json())]) == [
        pytest.approx(0.2 + 0.8 * (0.5 * iou + 0.5 * dice))
    ]
