"""Per-split and overall tables of realpack-tiny's held-out rows (re-measured with the v3 tool)."""
import json, sys
from pathlib import Path
from training.evaluate import summarize
rows = [json.loads(l) for f in sys.argv[1:-1] for l in Path(f).read_text().splitlines() if l.strip()]
order = ["sft", "grpo", "phantom-tiny", "oracle-box", "expert", "clicker:3"]
def split_of(r): return "phantoms" if r["dataset"].startswith("phantom") else f'{r["dataset"]} val'
splits = ["acdc val", "hc18 val", "kvasir-seg val", "lgg val", "phantoms"]
res = {"per_split": {}, "all": {}, "realpack_only": {}}
for p in order:
    pr = [r for r in rows if r["policy"] == p]
    res["all"][p] = summarize(pr)
    res["realpack_only"][p] = summarize([r for r in pr if not r["dataset"].startswith("phantom")])
    for s in splits:
        res["per_split"].setdefault(s, {})[p] = summarize([r for r in pr if split_of(r) == s])
Path(sys.argv[-1]).write_text(json.dumps(res, indent=1))
for p in order:
    print(f"| {p} | " + " | ".join(f'{res["per_split"][s][p].get("dice", float("nan")):.3f}' for s in splits) + f' | {res["all"][p]["dice"]:.3f} |')
print()
for p in order:
    a = res["all"][p]; d = a["dice_change_after_first"]
    print(f'| {p} | {a["dice"]:.3f} | {a["actions"]:.2f} | {a["refine_rate"]:.0%} | {"-" if d is None else f"{d:+.3f}"} ({a["later_turns"]}) | {a["invalid_rate"]:.0%} | {a["reward"]:.3f} | n={a["n"]} real-only {res["realpack_only"][p]["dice"]:.3f}')
