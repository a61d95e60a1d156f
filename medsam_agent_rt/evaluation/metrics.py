"""Aggregation of per-sample result rows into the tables of PROTOCOL.md "Evaluation conventions".

A row (one sample; see ``evaluation.rows``) carries at least ``index``, ``dataset``,
``modality``, ``target``, ``skipped`` (None or why it was not evaluated: "empty_gt",
"load_error"), and for evaluated rows ``dice`` / ``iou`` (the final mask at GT resolution),
``round_dice`` / ``round_iou`` (after each executed action, in order), ``actions`` (labels of
the executed actions: "box", "+point", "-point") and ``end_reason``.

Conventions:

- Means are over evaluated samples (skipped rows are only counted); per-group means
  ("per class" = per target name, per dataset, per modality) and their unweighted macro mean.
- Round curves: the value at round r (1..R) is the value after the r-th executed action,
  carried forward when the episode did fewer actions (it stopped); an episode with no action
  at all scores 0 (empty mask against a non-empty GT).
- Click metrics (only for click policies: no box in any episode): NoC@t = the number of clicks
  after which IoU >= t first holds, ``cap`` (20) when never reached within the executed clicks
  (also when the episode's budget was smaller than the cap); NoF@t counts the never-reached
  samples; mIoU@k = mean IoU after k clicks with carry-forward.

All sums use ``math.fsum`` over rows sorted by index, so shards merged in any order give the
same numbers bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

NOC_CAP = 20
NOC_THRESHOLDS = (0.85, 0.90)
MIOU_KS = (1, 2, 3, 4, 5)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def evaluated(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that were evaluated (not skipped), sorted by index."""
    return sorted((r for r in rows if not r.get("skipped")), key=lambda r: r["index"])


def carry(values: Sequence[float], k: int) -> float:
    """The value after action ``k`` (1-based), carried forward past the last action; 0.0 when
    there was no action."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not values:
        return 0.0
    return float(values[min(k, len(values)) - 1])


def group_means(rows: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """{group: {"n", "dice", "iou"}} over evaluated rows grouped by ``row[key]``, sorted by
    group name."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in evaluated(rows):
        groups.setdefault(str(r.get(key, "")), []).append(r)
    return {
        g: {
            "n": len(rs),
            "dice": _mean([r["dice"] for r in rs]),
            "iou": _mean([r["iou"] for r in rs]),
        }
        for g, rs in sorted(groups.items())
    }


def macro(groups: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Unweighted mean of the group means."""
    return {
        "dice": _mean([g["dice"] for g in groups.values()]),
        "iou": _mean([g["iou"] for g in groups.values()]),
    }


def round_curves(rows: Sequence[dict[str, Any]], rounds: int) -> dict[str, list[float] | list[int]]:
    """Mean Dice / IoU after rounds 1..``rounds`` with carry-forward, and how many episodes were
    still acting at each round ("active")."""
    ev = evaluated(rows)
    out: dict[str, Any] = {"dice": [], "iou": [], "active": []}
    if not ev:
        return out
    for k in range(1, rounds + 1):
        out["dice"].append(_mean([carry(r["round_dice"], k) for r in ev]))
        out["iou"].append(_mean([carry(r["round_iou"], k) for r in ev]))
        out["active"].append(sum(len(r["round_iou"]) >= k for r in ev))
    return out


def noc(ious: Sequence[float], threshold: float, cap: int = NOC_CAP) -> int:
    """Clicks needed to reach IoU >= ``threshold`` (1-based), ``cap`` when never reached within
    the first ``cap`` clicks."""
    for k, v in enumerate(ious[:cap], start=1):
        if v >= threshold:
            return k
    return cap


def click_metrics(
    rows: Sequence[dict[str, Any]],
    thresholds: Sequence[float] = NOC_THRESHOLDS,
    cap: int = NOC_CAP,
    ks: Sequence[int] = MIOU_KS,
) -> dict[str, Any]:
    """NoC@t (mean), NoF@t (samples never reaching t) and mIoU@k over evaluated rows."""
    ev = evaluated(rows)
    out: dict[str, Any] = {"cap": cap, "noc": {}, "nof": {}, "miou_at_k": {}}
    for t in thresholds:
        name = f"{round(t * 100):d}"
        counts = [noc(r["round_iou"], t, cap) for r in ev]
        out["noc"][name] = _mean([float(c) for c in counts])
        out["nof"][name] = sum(not any(v >= t for v in r["round_iou"][:cap]) for r in ev)
    for k in ks:
        out["miou_at_k"][str(k)] = _mean([carry(r["round_iou"], k) for r in ev])
    return out


def is_click_policy(rows: Sequence[dict[str, Any]]) -> bool:
    """True when no evaluated episode used a box and at least one clicked."""
    ev = evaluated(rows)
    labels = [a for r in ev for a in r.get("actions", [])]
    return bool(labels) and "box" not in labels


def action_stats(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Histogram of executed actions per episode ({"0": n, ...} up to the maximum seen), their
    mean, and counts per action type."""
    ev = evaluated(rows)
    n_actions = [len(r.get("actions", [])) for r in ev]
    hist = {str(k): 0 for k in range(max(n_actions, default=0) + 1)}
    types: dict[str, int] = {}
    for r in ev:
        hist[str(len(r.get("actions", [])))] += 1
        for a in r.get("actions", []):
            types[a] = types.get(a, 0) + 1
    return {
        "histogram": hist,
        "mean": _mean([float(n) for n in n_actions]),
        "types": dict(sorted(types.items())),
    }


def counts(rows: Iterable[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        v = r.get(key)
        if v is not None:
            out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def summarise(
    rows: Sequence[dict[str, Any]],
    rounds: int,
    *,
    cap: int = NOC_CAP,
    thresholds: Sequence[float] = NOC_THRESHOLDS,
    ks: Sequence[int] = MIOU_KS,
    click_policy: bool | None = None,
) -> dict[str, Any]:
    """Every aggregate of ``rows`` (see the module docstring); ``rounds``: the turn budget;
    click_policy: compute the click metrics (None: when ``is_click_policy(rows)``)."""
    ev = evaluated(rows)
    per = {k: group_means(rows, k) for k in ("target", "dataset", "modality")}
    by_mod: dict[str, list[dict[str, Any]]] = {}
    for r in ev:
        by_mod.setdefault(r["modality"], []).append(r)
    click = is_click_policy(rows) if click_policy is None else bool(click_policy)
    return {
        "n_samples": len(rows),
        "n_evaluated": len(ev),
        "skipped": counts(rows, "skipped"),
        "mean": {
            "dice": _mean([r["dice"] for r in ev]),
            "iou": _mean([r["iou"] for r in ev]),
        },
        "macro": {
            "class": macro(per["target"]),
            **{k: macro(per[k]) for k in ("dataset", "modality")},
        },
        "per_class": per["target"],
        "per_dataset": per["dataset"],
        "per_modality": per["modality"],
        "rounds": round_curves(ev, rounds),
        "rounds_per_modality": {m: round_curves(rs, rounds) for m, rs in sorted(by_mod.items())},
        "actions": action_stats(ev),
        "end_reasons": counts(ev, "end_reason"),
        "click_policy": click,
        "click": click_metrics(ev, thresholds, cap, ks) if click else None,
    }


def timing(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Wall seconds per episode (and its encoder part): mean, median, p90, max, total."""
    ev = evaluated(rows)
    out = {}
    for key in ("episode", "encode", "policy", "tool"):
        vals = sorted(float(r.get("seconds", {}).get(key, 0.0)) for r in ev)
        if not vals:
            out[key] = None
            continue
        out[key] = {
            "mean": math.fsum(vals) / len(vals),
            "median": _quantile(vals, 0.5),
            "p90": _quantile(vals, 0.9),
            "max": vals[-1],
            "total": math.fsum(vals),
        }
    return out


def _quantile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (NumPy's default) of sorted values."""
    pos = q * (len(sorted_vals) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)
