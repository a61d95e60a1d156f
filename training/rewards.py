"""Rewards of multi-turn RL (PROTOCOL.md, "Reward used in RL"), over episode records.

Every function takes a list of ``EpisodeRecord`` (medsam_agent_rt.trajectory) and keywords and
returns one float per record, TRL reward-function style ``(trajectories, **kw) -> list[float]``.
The records must have been run with a ground-truth mask (per-turn ``iou`` / ``dice`` filled).

With T executed actions (box or point) and IoU_t / Dice_t after action t (ground-truth
resolution; an empty GT and an empty prediction count as IoU = Dice = 1, as ``ops`` computes):

- format  = 1.0 if at least one box/point call was made AND the last call is stop_action,
            0.5 if exactly one of the two holds, 0 otherwise;
- base    = 0.5 IoU_T + 0.5 Dice_T  (T = 0: the empty final mask against the GT);
- penalty = (max_t IoU_t - IoU_T) + 0.01 T            if T > 1, else 0;
- bonus   = 0.1 * sum_{t>=2} max(0, IoU_t - IoU_{t-1})  if T > 1, else 0;
- quality = clip(base - penalty + bonus, 0, 1);
- reward  = 0.2 format + 0.8 quality.

The worked example, a box with IoU 0.80 / Dice 0.889 and then stop_action:

>>> rec = episode_from_scores([(0.80, 0.889)], stop=True)
>>> round(agent_reward([rec])[0], 4)
0.8756

A box then a click that first helps and then a click that hurts, stopped by the budget:

>>> rec = episode_from_scores([(0.6, 0.75), (0.7, 0.82), (0.65, 0.79)], stop=False)
>>> format_reward([rec])
[0.5]
>>> round(quality_reward([rec])[0], 4)  # 0.72 - (0.05 + 0.03) + 0.1 * 0.1
0.65

``turn_credits`` adds process-level credit: per executed action its IoU gain over the previous
action (IoU_0 = 0), so GRPO can reward the turns that improved the mask and blame the ones that
did not (an option of grpo.py, off by default as released).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "RewardWeights",
    "agent_reward",
    "episode_from_scores",
    "format_reward",
    "quality_reward",
    "reward_components",
    "turn_credits",
]

ACTION_NAMES = ("add_bbox", "add_point", "add_positive_point", "add_negative_point")


@dataclass(frozen=True)
class RewardWeights:
    """The constants of the released reward (PROTOCOL.md); change them only to experiment."""

    format_weight: float = 0.2  # weight of the format reward in the total
    quality_weight: float = 0.8  # weight of the quality reward in the total
    iou_weight: float = 0.5  # weight of IoU_T in base
    dice_weight: float = 0.5  # weight of Dice_T in base
    turn_cost: float = 0.01  # per-action cost inside the T > 1 penalty
    improvement_bonus: float = 0.1  # factor of the summed positive IoU gains (T > 1)

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"RewardWeights.{name} must be a number >= 0, got {value!r}")


# ----------------------------------------------------------------------------- record access


def _executed_scores(rec: Any) -> tuple[list[float], list[float]]:
    """IoU_t and Dice_t of the executed actions of ``rec``, in order."""
    ious, dices = [], []
    for t in rec.turns:
        if t.outcome != "executed":
            continue
        if t.iou is None or t.dice is None:
            raise ValueError(
                f"episode {rec.image_id!r} turn {t.index}: no IoU/Dice recorded; rewards need "
                "episodes run with a ground-truth mask (Episode.run(image, target, gt))"
            )
        ious.append(float(t.iou))
        dices.append(float(t.dice))
    return ious, dices


def _final_scores(rec: Any, ious: list[float], dices: list[float]) -> tuple[float, float]:
    """(IoU_T, Dice_T); with no executed action, the final (empty) mask against the GT."""
    if ious:
        return ious[-1], dices[-1]
    iou, dice = rec.final.get("iou"), rec.final.get("dice")
    if iou is None or dice is None:
        raise ValueError(
            f"episode {rec.image_id!r}: no final IoU/Dice recorded; rewards need episodes run "
            "with a ground-truth mask"
        )
    return float(iou), float(dice)


def _made_action_call(rec: Any) -> bool:
    """Whether a box/point call was parsed (executed, or failed in the tool)."""
    return any(t.action is not None and t.action.get("name") in ACTION_NAMES for t in rec.turns)


def _ends_with_stop(rec: Any) -> bool:
    return bool(rec.turns) and rec.turns[-1].outcome == "stop"


# ----------------------------------------------------------------------------- rewards


def format_reward(trajectories: Sequence[Any], **kw: Any) -> list[float]:
    """1.0 / 0.5 / 0 per episode: a box/point call was made; the last call is stop_action."""
    return [0.5 * _made_action_call(r) + 0.5 * _ends_with_stop(r) for r in trajectories]


def reward_components(
    trajectories: Sequence[Any], weights: RewardWeights | None = None, **kw: Any
) -> list[dict[str, float]]:
    """Every term per episode: format, base, penalty, bonus, quality, reward, iou, dice, turns."""
    w = weights or RewardWeights()
    out = []
    fmt = format_reward(trajectories)
    for rec, f in zip(trajectories, fmt):
        ious, dices = _executed_scores(rec)
        iou_t, dice_t = _final_scores(rec, ious, dices)
        n = len(ious)
        base = w.iou_weight * iou_t + w.dice_weight * dice_t
        penalty = bonus = 0.0
        if n > 1:
            penalty = (max(ious) - iou_t) + w.turn_cost * n
            bonus = w.improvement_bonus * sum(max(0.0, b - a) for a, b in zip(ious, ious[1:]))
        quality = min(1.0, max(0.0, base - penalty + bonus))
        out.append(
            {
                "format": f,
                "base": base,
                "penalty": penalty,
                "bonus": bonus,
                "quality": quality,
                "reward": w.format_weight * f + w.quality_weight * quality,
                "iou": iou_t,
                "dice": dice_t,
                "turns": float(n),
            }
        )
    return out


def quality_reward(
    trajectories: Sequence[Any], weights: RewardWeights | None = None, **kw: Any
) -> list[float]:
    """clip(base - penalty + bonus, 0, 1) per episode."""
    return [c["quality"] for c in reward_components(trajectories, weights)]


def agent_reward(
    trajectories: Sequence[Any], weights: RewardWeights | None = None, **kw: Any
) -> list[float]:
    """The released total: 0.2 format + 0.8 quality per episode."""
    return [c["reward"] for c in reward_components(trajectories, weights)]


def turn_credits(trajectories: Sequence[Any], **kw: Any) -> list[list[float]]:
    """Process-level credit per policy call (one list per episode, one value per turn record):
    an executed action gets IoU_t - IoU_{t-1} (IoU_0 = 0); every other call 0.

    >>> turn_credits([episode_from_scores([(0.6, 0.75), (0.7, 0.82), (0.65, 0.79)], stop=True)])
    [[0.6, 0.1, -0.05, 0.0]]
    """
    out = []
    for rec in trajectories:
        prev, credits = 0.0, []
        _executed_scores(rec)  # validates that scores exist
        for t in rec.turns:
            if t.outcome == "executed":
                credits.append(round(float(t.iou) - prev, 12))
                prev = float(t.iou)
            else:
                credits.append(0.0)
        out.append(credits)
    return out


# ----------------------------------------------------------------------------- test helper


def episode_from_scores(
    scores: Sequence[tuple[float, float]], *, stop: bool = True, gt_empty: bool = False
) -> Any:
    """A synthetic EpisodeRecord with one executed box/point per (IoU, Dice) pair, then a
    stop_action (``stop``) or the end of the budget: for doctests and hand-computed tests."""
    from medsam_agent_rt.trajectory import EpisodeRecord, TurnRecord

    rec = EpisodeRecord(
        image_id="synthetic",
        image_shape=[8, 8],
        image_sha256="",
        target="target",
        policy="synthetic",
        segmenter="",
        backend="",
        strategy="",
        config={},
        view={},
    )
    for i, (iou, dice) in enumerate(scores):
        name = "add_bbox" if i == 0 else "add_point"
        turn = TurnRecord(i, i, "", "executed", action={"name": name}, iou=iou, dice=dice)
        rec.turns.append(turn)
    if stop:
        rec.turns.append(
            TurnRecord(len(scores), len(scores), "", "stop", action={"name": "stop_action"})
        )
        rec.end_reason = "stop"
    else:
        rec.end_reason = "budget"
    empty = 1.0 if gt_empty else 0.0
    last = scores[-1] if scores else (empty, empty)
    rec.final = {"iou": last[0], "dice": last[1]}
    return rec
