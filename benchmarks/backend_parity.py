"""Backend parity on the whole demo set (a measurement, not a test).

    python -m benchmarks.backend_parity [--export DIR] [--json PATH] [--clicks 2]
    python -m benchmarks.backend_parity --segmenter litemedsam-click --shipped [--limit N]

For every one of the 71 masks of the BiomedParse demo set: the oracle box, then ``--clicks``
corrective clicks (``ops.next_click`` on the torch mask), run on LiteMedSAM with torch and
replayed with the SAME prompts on ONNX Runtime FP32 and FP16 (family default carrying strategy,
``segmenters.PromptChain``). Reported per backend: mask IoU against torch (min / mean over all masks
and turns, how many turns give identical masks) and the max abs difference of the low-res logits.

``--shipped``: the embedded ``--segmenter``'s graphs shipped in the wheel (``assets/onnx``) on the
CPU runtimes instead (ONNX Runtime fp32 / int8, OpenVINO fp32 / bf16 when installed), with
the mask flip rate (pixels that differ, over all turns) and the IoU head's max abs difference
added. For ``litemedsam-click`` the family strategy ``box+all_clicks+prev_logits`` feeds every
turn after the first the previous turn's low-res logits (each backend its own), so the decoder
graph's mask-input path is measured too.
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


def replay_parity(
    ref, others: dict, samples, clicks: int = 2, limit_masks: int = 0
) -> tuple[int, dict[str, dict]]:
    """(masks, {backend name: summary}) of the prompts of a torch episode (``ref``: oracle box,
    then ``clicks`` corrective clicks) replayed on every segmenter of ``others``."""
    keys = ("iou", "flip", "logits", "score")
    stats = {
        name: {k: [] for k in keys} | {"identical": 0, "mask_input_turns": 0} for name in others
    }
    dice: dict[str, list[list[float]]] = {name: [] for name in ("torch", *others)}  # per turn
    masks = 0
    for sample in samples:
        image = sample["image"]
        for gt in sample["masks"].values():
            if limit_masks and masks >= limit_masks:
                break
            masks += 1
            ep = PromptChain(ref, image)
            replay = {name: PromptChain(seg, image) for name, seg in others.items()}
            box = gt_box(gt)
            steps = [("box", box, None)]
            out = ep.add_box(box)
            turns = [out]
            exclude: list[tuple[int, int]] = []
            for _ in range(clicks):
                click = ops.next_click(
                    out.mask, gt, np.asarray(exclude).reshape(-1, 2) if exclude else None
                )
                if click is None:
                    break
                exclude.append((click.x, click.y))
                steps.append(("point", (float(click.x), float(click.y)), click.positive))
                out = ep.add_point((float(click.x), float(click.y)), click.positive)
                turns.append(out)
            _add_dice(dice["torch"], [ops.dice(t.mask, gt) for t in turns])
            for name, other in replay.items():
                got_dice = []
                for (kind, arg, positive), want in zip(steps, turns):
                    got = other.add_box(arg) if kind == "box" else other.add_point(arg, positive)
                    got_dice.append(ops.dice(got.mask, gt))
                    assert got.prompts.used_mask_input == want.prompts.used_mask_input
                    s = stats[name]
                    s["iou"].append(_iou(got.mask, want.mask))
                    s["flip"].append(float((got.mask != want.mask).mean()))
                    s["identical"] += int(np.array_equal(got.mask, want.mask))
                    s["mask_input_turns"] += int(got.prompts.used_mask_input)
                    s["logits"].append(
                        float(np.abs(got.low_res_logits - want.low_res_logits).max())
                    )
                    s["score"].append(abs(got.score - want.score))
                _add_dice(dice[name], got_dice)
    summary = {}
    for name, s in stats.items():
        iou = np.asarray(s["iou"])
        summary[name] = {
            "turns": int(iou.size),
            "iou_min": float(iou.min()),
            "iou_mean": float(iou.mean()),
            "identical": int(s["identical"]),
            "logits_max_abs": float(max(s["logits"])),
            "mask_flip_rate_mean": float(np.mean(s["flip"])),
            "mask_flip_rate_max": float(max(s["flip"])),
            "iou_head_max_abs": float(max(s["score"])),
            "mask_input_turns": int(s["mask_input_turns"]),
            "dice_per_turn": _mean_dice(dice[name]),
        }
    if others:
        summary["torch"] = {"dice_per_turn": _mean_dice(dice["torch"])}
    return masks, summary


def _add_dice(per_turn: list[list[float]], values) -> None:
    """Append one episode's Dice per turn (turn 0: the box) to the per-turn lists."""
    for i, v in enumerate(values):
        if len(per_turn) <= i:
            per_turn.append([])
        per_turn[i].append(float(v))


def _mean_dice(per_turn: list[list[float]]) -> list[dict]:
    """[{turn, masks, dice}] (episodes stop early when a mask is perfect: masks per turn)."""
    return [{"turn": i, "masks": len(v), "dice": float(np.mean(v))} for i, v in enumerate(per_turn)]


def shipped_backends(spec: str, threads: int) -> dict:
    """{name: segmenter} over the shipped graphs of embedded ``spec`` on the CPU runtimes."""
    from medsam_agent_rt.segmenters.registry import importable

    rows = [("onnx", "fp32"), ("onnx", "int8")]
    if importable("openvino"):
        from medsam_agent_rt.segmenters.openvino_backend import has_bf16

        rows += [("openvino", "fp32")] + ([("openvino", "bf16")] if has_bf16() else [])
    out = {}
    for backend, prec in rows:
        opt = {"intra_op_threads": threads} if backend == "onnx" else {"threads": threads}
        out[f"{backend} {prec}"] = build_segmenter(
            spec, backend=backend, precision=prec, cache_size=1, **opt
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--export", default=str(REPO / "out" / "segmenter-export"))
    p.add_argument("--data", default=None, help="demo folder (default: the shared demo set)")
    p.add_argument("--clicks", type=int, default=2)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--segmenter", default="litemedsam", choices=("litemedsam", "litemedsam-click"))
    p.add_argument(
        "--shipped",
        action="store_true",
        help="the wheel's graphs of --segmenter on the CPU runtimes (not --export's fp32/fp16)",
    )
    p.add_argument("--limit", type=int, default=0, help="first N masks only (0: all)")
    args = p.parse_args(argv)
    args.data = demo_root(args.data, "backend_parity")
    import torch

    torch.set_num_threads(args.threads)
    ref = build_segmenter(args.segmenter, backend="torch", cache_size=1)  # the reference
    if args.shipped:
        others = shipped_backends(args.segmenter, args.threads)
    else:
        if args.segmenter != "litemedsam":
            raise SystemExit("--export compares LiteMedSAM; use --shipped for litemedsam-click")
        export = _export_dir(Path(args.export))
        others = {
            f"onnx {prec}": build_segmenter(
                str(export),
                backend="onnx",
                precision=prec,
                cache_size=1,
                intra_op_threads=args.threads,
            )
            for prec in ("fp32", "fp16")
        }
    masks, summary = replay_parity(ref, others, load_demo(Path(args.data)), args.clicks, args.limit)
    name = "LiteMedSAM" if args.segmenter == "litemedsam" else args.segmenter
    print(f"{name}, {masks} demo masks, oracle box + {args.clicks} clicks, vs torch FP32")
    if args.shipped:
        print(
            "| backend | turns | mask IoU min | mask IoU mean | identical masks | logits max abs "
            "| mask flip rate mean / max | IoU head max abs | turns with mask input |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print(
            "| backend | turns | mask IoU min | mask IoU mean | identical masks | logits max abs |"
        )
        print("|---|---:|---:|---:|---:|---:|")
    for backend, r in summary.items():
        if backend == "torch":
            continue
        line = (
            f"| {backend} | {r['turns']} | {r['iou_min']:.5f} | {r['iou_mean']:.6f} | "
            f"{r['identical']}/{r['turns']} | {r['logits_max_abs']:.2e} |"
        )
        if args.shipped:
            line += (
                f" {r['mask_flip_rate_mean']:.2e} / {r['mask_flip_rate_max']:.2e} | "
                f"{r['iou_head_max_abs']:.2e} | {r['mask_input_turns']} |"
            )
        print(line)
    if args.shipped:  # the Dice each backend's masks reach vs GT, turn by turn
        turns = summary["torch"]["dice_per_turn"]
        print("\n| mean Dice vs GT | " + " | ".join(f"turn {d['turn']}" for d in turns) + " |")
        print("|---|" + "---:|" * len(turns))
        for backend in ("torch", *others):
            row = " | ".join(f"{d['dice']:.4f}" for d in summary[backend]["dice_per_turn"])
            print(f"| {backend} | {row} |")
    if args.json:
        result = {"benchmark": "backend_parity", "masks": masks, "results": summary}
        if args.shipped:
            result |= {"segmenter": args.segmenter, "shipped": True, "clicks": args.clicks}
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
