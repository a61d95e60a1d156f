"""Statistics of an expert-trajectory run (stats.json), computed from its episode ledger, and
the per-episode turn summaries the ledger and the conversation meta hold.

acceptance: corrections the expert accepted / candidate clicks it previewed (ΔIoU >= tau), and
the share accepted on the first candidate; turns: histograms of executed actions and of
assistant turns per kept conversation; final IoU: mean, quantiles and a 20-bin histogram over
all generated episodes and over the kept ones; kept / filtered counts by reason; openings;
per-modality counts. Timings sit in their own section (the rest is deterministic).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

IOU_BINS = 20


def mask_digest(mask: np.ndarray) -> str:
    """SHA-1 (16 hex) of an (H, W) bool mask's shape and packed bits."""
    m = np.ascontiguousarray(mask, bool)
    return hashlib.sha1(f"{m.shape}".encode() + np.packbits(m).tobytes()).hexdigest()[:16]


def turn_summaries(record: Any) -> list[dict[str, Any]]:
    """Per policy call: action label, grid, IoU / Dice after it, the expert's gain / tries /
    reason, and the tool mask digest (executed actions)."""
    from medsam_agent_rt.io.strip import action_label
    from medsam_agent_rt.trajectory import rle_decode

    out = []
    for t in record.turns:
        a = t.action or {}
        pol = None if "positive" not in a else ("positive" if a["positive"] else "negative")
        out.append(
            {
                "action": action_label(a.get("name", "?"), pol),
                "grid": a.get("grid"),
                "outcome": t.outcome,
                "iou": t.iou,
                "dice": t.dice,
                "gain": t.info.get("gain"),
                "tried": t.info.get("tried"),
                "reason": t.info.get("reason"),
                "mask": None if t.mask is None else mask_digest(rle_decode(t.mask)),
            }
        )
    return out


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """mean, min, p10, median, p90, max and a histogram of ``values`` in [0, 1] with
    ``IOU_BINS`` equal bins (the last one closed)."""
    vals = sorted(float(v) for v in values)
    hist = [0] * IOU_BINS
    for v in vals:
        hist[min(int(v * IOU_BINS), IOU_BINS - 1)] += 1
    if not vals:
        return {"n": 0, "mean": None, "histogram": hist}

    def q(p: float) -> float:
        pos = p * (len(vals) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)

    return {
        "n": len(vals),
        "mean": math.fsum(vals) / len(vals),
        "min": vals[0],
        "p10": q(0.1),
        "median": q(0.5),
        "p90": q(0.9),
        "max": vals[-1],
        "histogram": hist,
        "bin_width": 1.0 / IOU_BINS,
    }


def _hist(values: Sequence[int]) -> dict[str, int]:
    out = {str(k): 0 for k in range(max(values, default=0) + 1)}
    for v in values:
        out[str(v)] += 1
    return out


def trajectory_stats(ledger: Sequence[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """stats.json of a run from its ledger lines (see the module docstring)."""
    rows = sorted(ledger, key=lambda r: (r.get("index", 0), r.get("k", 0)))
    ran = [r for r in rows if r.get("reason") not in ("empty_gt", "load_error")]
    kept = [r for r in rows if r.get("kept")]
    reasons: dict[str, int] = {}
    for r in rows:
        if not r.get("kept"):
            reasons[str(r.get("reason"))] = reasons.get(str(r.get("reason")), 0) + 1
    accepted = tried = first = 0
    for r in ran:
        for t in r.get("turns", []):
            if t.get("tried") is None:
                continue
            tried += int(t["tried"])
            if t.get("gain") is not None:  # an accepted correction
                accepted += 1
                first += int(t["tried"]) == 1
    openings: dict[str, int] = {}
    per_mod: dict[str, dict[str, Any]] = {}
    for r in ran:
        o = str(r.get("opening"))
        openings[o] = openings.get(o, 0) + 1
        pm = per_mod.setdefault(r["modality"], {"episodes": 0, "kept": 0, "_ious": []})
        pm["episodes"] += 1
        pm["kept"] += bool(r.get("kept"))
        pm["_ious"].append(r["final_iou"])
    for pm in per_mod.values():
        ious = pm.pop("_ious")
        pm["mean_final_iou"] = math.fsum(ious) / len(ious)
    ends: dict[str, int] = {}
    for r in ran:
        ends[str(r.get("end_reason"))] = ends.get(str(r.get("end_reason")), 0) + 1
    secs = [r["seconds"] for r in ran if r.get("seconds") is not None]
    return {
        "config": config,
        "samples": len({r["sample_id"] for r in rows}),
        "episodes": {
            "total": len(rows),
            "generated": len(ran),
            "kept": len(kept),
            "filtered": dict(sorted(reasons.items())),
        },
        "acceptance": {
            "accepted": accepted,
            "tried": tried,
            "rate": accepted / tried if tried else None,
            "first_try": first / accepted if accepted else None,
        },
        "openings": dict(sorted(openings.items())),
        "end_reasons": dict(sorted(ends.items())),
        "turns_histogram": {
            "actions": _hist([r["num_actions"] for r in kept]),
            "assistant_turns": _hist([len(r.get("turns", [])) for r in kept]),
            "mean_actions": (
                math.fsum(r["num_actions"] for r in kept) / len(kept) if kept else None
            ),
        },
        "final_iou": {
            "all": distribution([r["final_iou"] for r in ran]),
            "kept": distribution([r["final_iou"] for r in kept]),
        },
        "per_modality": dict(sorted(per_mod.items())),
        "timing": {
            "episodes_timed": len(secs),
            "mean_s": math.fsum(secs) / len(secs) if secs else None,
            "total_s": math.fsum(secs),
        },
    }
