"""Summary of the litemedsam-click demo runs (``scripts/eval_litemedsam_click.sh``), with
LiteMedSAM's numbers on exactly the same masks (``benchmarks/results/accuracy.json``).

    python -m benchmarks.click_summary runs/click_eval [--out benchmarks/results/litemedsam_click_demo.json]

Reads the eval shards (finished samples only, so a partial run is summarised on the masks it
finished, and says how many). Box-only Dice = the expert's first turn (the tight GT box, the
same box as oracle-box); clicker:K = the K-th round of the clicker run (the click rule does not
depend on K); NoC@t = clicks until IoU >= t, 20 when not reached within the clicks run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def rows(run: Path) -> list[dict]:
    out = []
    for f in sorted((run / "shards").glob("*.jsonl")):
        out += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return [r for r in out if not r.get("skipped")]


def key(r: dict) -> tuple[str, str]:
    stem = Path(r["source"]["mask_path"]).stem
    image = Path(r["source"]["image_path"]).stem
    return image, stem[len(image) + 1 :]


def noc(ious, t, cap=20):
    for k, v in enumerate(ious[:cap], 1):
        if v >= t:
            return k
    return cap


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/litemedsam_click_demo.json"
    )
    args = ap.parse_args(argv)
    base = json.loads((REPO / "benchmarks/results/accuracy.json").read_text())["per_mask"]
    base = {(m["image"], m["target"]): m for m in base}
    res = {}
    ex = rows(args.runs / "expert")
    if ex:
        box = np.array([r["round_dice"][0] for r in ex])
        fin = np.array([r["dice"] for r in ex])
        ref = np.array([base[key(r)]["box_single_dice"] for r in ex])
        ref_ex = np.array([base[key(r)]["box+all_clicks|expert"]["dice"][-1] for r in ex])
        res["expert"] = {
            "n": len(ex),
            "box_only_dice": float(box.mean()),
            "expert_dice": float(fin.mean()),
            "gain": float(fin.mean() - box.mean()),
            "actions": float(np.mean([len(r["round_dice"]) for r in ex])),
            "litemedsam_box_only_same_masks": float(ref.mean()),
            "litemedsam_expert_same_masks (accuracy.json, 4 clicks)": float(ref_ex.mean()),
        }
    for name in ("clicker-5", "clicker-10", "clicker-20"):
        cl = rows(args.runs / name)
        if not cl:
            continue
        k = max(len(r["round_dice"]) for r in cl)
        curve = np.array(
            [r["round_dice"] + [r["round_dice"][-1]] * (k - len(r["round_dice"])) for r in cl]
        )
        ious = [r["round_iou"] for r in cl]
        first = np.array([base[key(r)]["click_single_dice"] for r in cl])
        res[name] = {
            "n": len(cl),
            "dice_per_click": curve.mean(0).tolist(),
            "noc85": float(np.mean([noc(i, 0.85) for i in ious])),
            "noc90": float(np.mean([noc(i, 0.90) for i in ious])),
            "litemedsam_first_click_same_masks": float(first.mean()),
        }
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
