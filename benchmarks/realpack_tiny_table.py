"""Per-split and overall tables of held-out evaluation rows (``pipeline_side_eval`` JSONL), as in
the README's realpack-tiny section:

    python benchmarks/realpack_tiny_table.py ROWS.jsonl [ROWS.jsonl ...] OUT.json

OUT.json: ``per_split`` {split: {policy: summary}}, ``all`` and ``realpack_only`` {policy:
summary} (``training.evaluate.summarize``); the two Markdown tables go to stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.evaluate import summarize  # noqa: E402
from training.pipeline import split_name  # noqa: E402

ORDER = ("sft", "grpo", "phantom-tiny", "oracle-box", "expert", "clicker:3")
SPLITS = ("acdc val", "hc18 val", "kvasir-seg val", "lgg val", "phantoms")


def split_of(row: dict) -> str:
    """The pipeline's row group ('phantoms' or '<dataset> <split>') of an evaluation row."""
    return split_name(SimpleNamespace(dataset=row["dataset"], split=row["split"]))


def tables(rows: list[dict]) -> dict:
    res: dict = {"per_split": {s: {} for s in SPLITS}, "all": {}, "realpack_only": {}}
    for p in ORDER:
        mine = [r for r in rows if r["policy"] == p]
        if not mine:  # a partial run (e.g. the policies alone): no empty rows
            continue
        res["all"][p] = summarize(mine)
        res["realpack_only"][p] = summarize([r for r in mine if split_of(r) != "phantoms"])
        for s in SPLITS:
            res["per_split"][s][p] = summarize([r for r in mine if split_of(r) == s])
    return res


def main(argv: list[str]) -> int:
    *inputs, out = argv
    rows = [
        json.loads(line)
        for f in inputs
        for line in Path(f).read_text().splitlines()
        if line.strip()
    ]
    res = tables(rows)
    Path(out).write_text(json.dumps(res, indent=1))
    for p in res["all"]:
        cells = " | ".join(
            f"{res['per_split'][s][p].get('dice', float('nan')):.3f}" for s in SPLITS
        )
        print(f"| {p} | {cells} | {res['all'][p]['dice']:.3f} |")
    print()
    for p in res["all"]:
        a = res["all"][p]
        d = a["dice_change_after_first"]
        change = "-" if d is None else f"{d:+.3f}"
        print(
            f"| {p} | {a['dice']:.3f} | {a['actions']:.2f} | {a['refine_rate']:.0%} | "
            f"{change} ({a['later_turns']}) | {a['invalid_rate']:.0%} | {a['reward']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
