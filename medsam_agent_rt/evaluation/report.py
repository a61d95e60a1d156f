"""results.md: the tables of results.json in Markdown (and the plots, via ``evaluation.plots``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _group_table(title: str, groups: dict[str, dict[str, Any]], label: str) -> list[str]:
    lines = [f"## {title}", "", f"| {label} | n | Dice | IoU |", "|---|---:|---:|---:|"]
    for name, g in groups.items():
        lines.append(f"| {name} | {g['n']} | {_f(g['dice'])} | {_f(g['iou'])} |")
    return [*lines, ""]


def results_markdown(results: dict[str, Any], extra: list[str] | None = None) -> str:
    """The Markdown report of ``results`` (results.json's content); ``extra``: lines appended
    (plot and gallery links)."""
    c, m, t = results["config"], results["metrics"], results["timing"]
    lines = [
        f"# Evaluation: `{c['policy']}` with `{c['segmenter']}` ({c['backend']}) on "
        f"`{c['dataset']}`",
        "",
        f"- samples: {m['n_samples']} ({m['n_evaluated']} evaluated"
        + "".join(f", {n} skipped: {k}" for k, n in m["skipped"].items())
        + ")",
        f"- strategy: `{c.get('strategy_used') or c.get('strategy') or 'family default'}`, "
        f"max turns {c['max_turns']}, device {c['device']}"
        + (f", limit {c['limit']}" if c.get("limit") else ""),
        "- Dice and IoU at ground-truth resolution; means over samples; round values are "
        "carried forward after the episode stopped.",
        "",
        "## Overall",
        "",
        "| mean | Dice | IoU |",
        "|---|---:|---:|",
        f"| per sample | {_f(m['mean']['dice'])} | {_f(m['mean']['iou'])} |",
    ]
    for k in ("class", "dataset", "modality"):
        lines.append(
            f"| per {k} (macro) | {_f(m['macro'][k]['dice'])} | {_f(m['macro'][k]['iou'])} |"
        )
    lines.append("")
    lines += _group_table("Per modality", m["per_modality"], "modality")
    if len(m["per_dataset"]) > 1:
        lines += _group_table("Per dataset", m["per_dataset"], "dataset")
    lines += _group_table("Per class (target)", m["per_class"], "target")
    rounds = m["rounds"]
    lines += ["## Per round", "", "| after action | Dice | IoU | still acting |"]
    lines.append("|---:|---:|---:|---:|")
    for k, (d, i, a) in enumerate(zip(rounds["dice"], rounds["iou"], rounds["active"]), 1):
        lines.append(f"| {k} | {_f(d)} | {_f(i)} | {a} |")
    mods = m["rounds_per_modality"]
    if mods:
        n_r = len(rounds["dice"])
        lines += ["", "Dice per round and modality:", ""]
        lines.append("| modality | " + " | ".join(str(k) for k in range(1, n_r + 1)) + " |")
        lines.append("|---|" + "---:|" * n_r)
        for name, cur in mods.items():
            lines.append(f"| {name} | " + " | ".join(_f(v) for v in cur["dice"]) + " |")
    a = m["actions"]
    lines += [
        "",
        "## Actions and end reasons",
        "",
        f"- mean executed actions: {_f(a['mean'], 2)}",
        "- executed actions per episode: "
        + ", ".join(f"{k}: {n}" for k, n in a["histogram"].items()),
        "- action types: " + (", ".join(f"{k}: {n}" for k, n in a["types"].items()) or "none"),
        "- end reasons: " + (", ".join(f"{k}: {n}" for k, n in m["end_reasons"].items()) or "-"),
        "",
    ]
    if m.get("click"):
        ck = m["click"]
        lines += [
            "## Click metrics",
            "",
            f"Clicks count up to the episode budget ({c['max_turns']} turns, and the policy's own"
            f" click count): a threshold not reached within them counts as {ck['cap']} (NoF).",
            "",
            "| metric | value |",
            "|---|---:|",
        ]
        for thr, v in ck["noc"].items():
            lines.append(f"| NoC@{thr} (cap {ck['cap']}) | {_f(v, 2)} |")
            lines.append(f"| NoF@{thr} (never reached) | {ck['nof'][thr]} |")
        for k, v in ck["miou_at_k"].items():
            lines.append(f"| mIoU@{k} | {_f(v)} |")
        lines.append("")
    if t.get("episode"):
        e = t["episode"]
        lines += [
            "## Wall time per episode (s)",
            "",
            f"mean {_f(e['mean'], 2)}, median {_f(e['median'], 2)}, p90 {_f(e['p90'], 2)}, "
            f"max {_f(e['max'], 2)}, total {_f(e['total'], 1)} (the encoder runs once per "
            "image and worker; later targets of an image reuse its embedding)",
            "",
        ]
    v = c.get("versions")
    if isinstance(v, dict):
        lines += ["Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), ""]
    return "\n".join(lines + (extra or [])) + "\n"


def comparison_markdown(runs: list[tuple[str, dict[str, Any]]], metric: str = "dice") -> str:
    """One table comparing runs (name, results) per modality and overall: mean ``metric``
    ("dice" or "iou"), with n, mean actions and, for click policies, NoC@85 / NoC@90."""
    if metric not in ("dice", "iou"):
        raise ValueError(f"metric must be 'dice' or 'iou', got {metric!r}")
    mods = sorted({m for _, r in runs for m in r["metrics"]["per_modality"]})
    head = (
        f"| {dict(dice='Dice', iou='IoU')[metric]} | n | "
        + " | ".join(name for name, _ in runs)
        + " |"
    )
    lines = [head, "|---|---:|" + "---:|" * len(runs)]
    for mod in mods:
        ns = {r["metrics"]["per_modality"].get(mod, {}).get("n") for _, r in runs} - {None}
        vals = [r["metrics"]["per_modality"].get(mod, {}).get(metric) for _, r in runs]
        n = ns.pop() if len(ns) == 1 else "/".join(str(x) for x in sorted(ns))
        lines.append(f"| {mod} | {n} | " + " | ".join(_f(v) for v in vals) + " |")
    n_all = {r["metrics"]["n_evaluated"] for _, r in runs}
    n = n_all.pop() if len(n_all) == 1 else "-"
    rows = [
        ("**all** (per sample)", n, [r["metrics"]["mean"][metric] for _, r in runs]),
        ("per modality (macro)", "", [r["metrics"]["macro"]["modality"][metric] for _, r in runs]),
    ]
    for label, count, vals in rows:
        lines.append(f"| {label} | {count} | " + " | ".join(_f(v) for v in vals) + " |")
    acts = [r["metrics"]["actions"]["mean"] for _, r in runs]
    lines.append("| mean actions | | " + " | ".join(_f(v, 2) for v in acts) + " |")
    for thr in ("85", "90"):
        vals = [(r["metrics"].get("click") or {}).get("noc", {}).get(thr) for _, r in runs]
        if any(v is not None for v in vals):
            lines.append(f"| NoC@{thr} | | " + " | ".join(_f(v, 2) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    results: dict[str, Any], rows: list[dict[str, Any]], out: Path, gallery: int = 3
) -> None:
    """results.md, dice_vs_turn.png and gallery/*.png under ``out``. Missing matplotlib or
    unreadable images skip that part with a note (the numbers are in results.json anyway)."""
    from medsam_agent_rt.evaluation import plots
    from medsam_agent_rt.io.atomic import atomic_write_bytes

    extra: list[str] = []
    try:
        plots.dice_vs_turn(results["metrics"], out / "dice_vs_turn.png")
        extra += ["## Plots", "", "![Dice versus turn](dice_vs_turn.png)", ""]
    except ImportError as exc:
        print(f"eval: no plot ({exc})", file=sys.stderr)
        extra += [f"(no plot: {exc})", ""]
    if gallery > 0:
        made, notes = plots.gallery(rows, out / "gallery", gallery)
        for n in notes:
            print(f"eval: gallery: {n}", file=sys.stderr)
        if made:
            extra += ["## Gallery (best and worst Dice)", ""]
            extra += [f"![{p.stem}](gallery/{p.name})" for p in made]
            extra.append("")
    atomic_write_bytes(out / "results.md", results_markdown(results, extra).encode("utf-8"))
