"""Backend parity on the whole demo set (a measurement, not a test).

    python -m benchmarks.backend_parity [--export DIR] [--json PATH] [--clicks 2]

For every one of the 71 masks of the BiomedParse demo set: the oracle box, then ``--clicks``
corrective clicks (``ops.next_click`` on the torch mask), run on LiteMedSAM with torch and
replayed with the SAME prompts on ONNX Runtime FP32 and FP16 (family default carrying strategy,
``segmenters.PromptChain``). Reported per backend: mask IoU against torch (min / mean over all masks
and turns, how many turns give identical masks) and the max abs difference of the low-res logits.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from benchmarks._demo import demo_root
from benchmarks._timing import write_json
from benchmarks.accuracy import gt_box, load_demo
from benchmarks.segmenter import _export_dir
from medsam_agent_rt import ops
from medsam_agent_rt.segmenters import PromptChain, build_segmenter

REPO = Path(__file__).resolve().parents[1]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export", default=str(REPO / "out" / "segmenter-export"))
    p.add_argument("--data", default=None, help="demo folder (default: the shared demo set)")
    p.add_argument("--clicks", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    args.data = demo_root(args.data, "backend_parity")
    import torch

    torch.set_num_threads(args.threads)
    export = _export_dir(Path(args.export))
    ref = build_segmenter("litemedsam", backend="torch", cache_size=1)  # the reference
    others = {
        f"onnx {prec}": build_segmenter(
            str(export), backend="onnx", precision=prec, cache_size=1, intra_op_threads=args.threads
        )
        for prec in ("fp32", "fp16")
    }
    stats = {name: {"iou": [], "identical": 0, "logits_max_abs": 0.0} for name in others}
    masks = 0
    for sample in load_demo(Path(args.data)):
        image = sample["image"]
        for gt in sample["masks"].values():
            masks += 1
            ep = PromptChain(ref, image)
            replay = {name: PromptChain(seg, image) for name, seg in others.items()}
            box = gt_box(gt)
            steps = [("box", box, None)]
            out = ep.add_box(box)
            turns = [out]
            exclude: list[tuple[int, int]] = []
            for _ in range(args.clicks):
                click = ops.next_click(
                    out.mask, gt, np.asarray(exclude).reshape(-1, 2) if exclude else None
                )
                if click is None:
                    break
                exclude.append((click.x, click.y))
                steps.append(("point", (float(click.x), float(click.y)), click.positive))
                out = ep.add_point((float(click.x), float(click.y)), click.positive)
                turns.append(out)
            for name, other in replay.items():
                for (kind, arg, positive), want in zip(steps, turns):
                    got = other.add_box(arg) if kind == "box" else other.add_point(arg, positive)
                    iou = _iou(got.mask, want.mask)
                    s = stats[name]
                    s["iou"].append(iou)
                    s["identical"] += int(np.array_equal(got.mask, want.mask))
                    diff = float(np.abs(got.low_res_logits - want.low_res_logits).max())
                    s["logits_max_abs"] = max(s["logits_max_abs"], diff)
    print(f"LiteMedSAM, {masks} demo masks, oracle box + {args.clicks} clicks, vs torch FP32")
    print("| backend | turns | mask IoU min | mask IoU mean | identical masks | logits max abs |")
    print("|---|---:|---:|---:|---:|---:|")
    summary = {}
    for name, s in stats.items():
        iou = np.asarray(s["iou"])
        summary[name] = {
            "turns": int(iou.size),
            "iou_min": float(iou.min()),
            "iou_mean": float(iou.mean()),
            "identical": int(s["identical"]),
            "logits_max_abs": s["logits_max_abs"],
        }
        r = summary[name]
        print(
            f"| {name} | {r['turns']} | {r['iou_min']:.5f} | {r['iou_mean']:.6f} | "
            f"{r['identical']}/{r['turns']} | {r['logits_max_abs']:.2e} |"
        )
    if args.json:
        write_json(args.json, {"benchmark": "backend_parity", "masks": masks, "results": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
