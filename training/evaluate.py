"""Held-out evaluation of trained policies next to the GT-driven baselines, in one harness: every
policy runs the real Episode with the same segmenter on the same samples (samples outer, so the
segmenter's encoding store encodes each image once for all policies). Per-sample rows go to a
JSONL file as they finish, so an interrupted evaluation resumes; samples with an empty GT are
skipped (PROTOCOL.md, evaluation conventions).

This is the training pipeline's own small harness (the validation hook of SFT/GRPO uses it too);
``medsam_agent_rt.eval`` is the full evaluation tool with per-class / per-modality breakdowns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from medsam_agent_rt.training.rewards import reward_components

PolicySource = Any  # a policy spec string (build_policy), a Policy, or a () -> Policy factory


def _policy(src: PolicySource) -> Any:
    from medsam_agent_rt.policies import build_policy

    if callable(src) and not hasattr(src, "act"):
        return src()
    return build_policy(src)


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Means over per-sample rows: dice, iou, actions, reward, format, quality, rates."""
    if not rows:
        return {"n": 0}
    n = len(rows)
    out = {
        k: float(np.mean([r[k] for r in rows]))
        for k in ("dice", "iou", "actions", "reward", "format", "quality")
    }
    # Dice change of every executed turn after the first (rows written before per_turn_dice
    # existed have none): do corrections help on average?
    steps = [
        b - a
        for r in rows
        for a, b in zip(r.get("per_turn_dice") or [], (r.get("per_turn_dice") or [])[1:])
        if a is not None and b is not None
    ]
    out.update(
        refine_rate=sum(r["actions"] > 1 for r in rows) / n,
        later_turns=len(steps),
        dice_change_after_first=float(np.mean(steps)) if steps else None,
    )
    out.update(
        n=n,
        invalid_rate=sum(r["end_reason"] == "invalid_output" for r in rows) / n,
        stop_rate=sum(r["end_reason"] == "stop" for r in rows) / n,
        tool_errors=sum(r["end_reason"] == "tool_error" for r in rows),
    )
    return out


def evaluate_policies(
    policies: dict[str, PolicySource],
    samples: Sequence[Any],
    segmenter: Any,
    *,
    session_config: Any = None,
    rows_path: str | Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """{policy name: summary} over ``samples`` (data.Sample with GT); rows appended to
    ``rows_path`` (JSONL; rows already there are reused, not re-run)."""
    from tqdm import tqdm

    from medsam_agent_rt.episode import Episode

    done: dict[tuple[str, str], dict[str, Any]] = {}
    if rows_path is not None and Path(rows_path).is_file():
        for line in Path(rows_path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["policy"], r["sample_id"])] = r
    episodes = {
        name: Episode(segmenter, _policy(src), session_config) for name, src in policies.items()
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in policies}
    total = len(samples) * len(policies)
    with tqdm(total=total, desc="evaluate", disable=not progress, dynamic_ncols=True) as bar:
        for s in samples:
            image, gt = s.load()
            if not gt.any():
                bar.update(len(policies))
                continue
            for name, episode in episodes.items():
                row = done.get((name, s.sample_id))
                if row is None:
                    _, rec = episode.run(image, s.description, gt, s.sample_id)
                    row = episode_row(name, s, rec)
                    if rows_path is not None:
                        with open(rows_path, "a") as f:
                            f.write(json.dumps(row) + "\n")
                rows[name].append(row)
                bar.update(1)
    return {name: summarize(r) for name, r in rows.items()}


def episode_row(name: str, sample: Any, rec: Any) -> dict[str, Any]:
    """One evaluation row: final Dice/IoU, actions, reward and its parts, end reason."""
    c = reward_components([rec])[0]
    return {
        "policy": name,
        "sample_id": sample.sample_id,
        "modality": getattr(sample, "modality", ""),
        "dataset": getattr(sample, "dataset", ""),
        "split": getattr(sample, "split", ""),
        "target": sample.description,
        "dice": float(rec.final["dice"]),
        "iou": float(rec.final["iou"]),
        "actions": int(rec.totals.get("actions", 0)),
        "end_reason": rec.end_reason,
        "reward": c["reward"],
        "format": c["format"],
        "quality": c["quality"],
        "per_turn_iou": [t.iou for t in rec.executed()],
        "per_turn_dice": [t.dice for t in rec.executed()],
    }


def validation_hook(
    samples: Sequence[Any], segmenter: Any, session_config: Any = None, *, max_new_tokens: int = 128
) -> Callable[[Any, int], dict[str, float]]:
    """The SFT/GRPO evaluation hook: the current model, greedy, on ``samples``."""

    def hook(policy: Any, step: int) -> dict[str, float]:
        policy.max_new_tokens = max_new_tokens
        return evaluate_policies(
            {"policy": policy}, samples, segmenter, session_config=session_config, progress=False
        )["policy"]

    return hook
