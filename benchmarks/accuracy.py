"""Accuracy of an embedded segmenter on the shared BiomedParse demo set (measurements, not tests).

    python -m benchmarks.accuracy [--data DIR] [--out benchmarks/results/accuracy.json]
    python -m benchmarks.accuracy --segmenter litemedsam-click --out .../accuracy_click.json
    python -m benchmarks.accuracy --data ../shared/data/realpack --split acdc/val --limit 20

1. Oracle box: every mask's GT bounding box given once (single mask, and multimask keeping the
   best-scoring mask); Dice at GT resolution per modality and overall. Also the first-click
   opening (a click at the GT pixel farthest from its boundary), single vs multimask.
2. Carrying strategies (segmenters.prompt_chain): GT box first, then ``--clicks`` simulator clicks
   (``ops.next_click``: the larger of the false-negative / false-positive regions, at its
   distance-transform maximum, never twice on one pixel); "every click kept" and the expert
   variant "a click is kept only if it raises IoU by >= tau, else stop". Per-turn Dice curves.

The click rule is ``ops.next_click``'s, evaluated with scipy.ndimage.distance_transform_edt when
scipy is installed (identical float32 distances and tie-breaking, checked against
``ops.next_click`` at start-up; the NumPy reference takes seconds per 1024^2 click), else with
``ops.next_click`` itself.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks._demo import demo_root
from medsam_agent_rt import ops
from medsam_agent_rt.commands._types import strategy as strategy_type
from medsam_agent_rt.segmenters import STRATEGIES, PromptChain, build_segmenter

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- data
def modality_of(stem: str) -> str:
    """'09_MRI-FLAIR_brain' -> 'MRI'; 'endoscope' -> 'endoscopy' (the README's 9 modalities)."""
    token = stem.split("_")[1]
    if token.startswith("MRI"):
        return "MRI"
    return {"endoscope": "endoscopy", "X-Ray": "X-ray"}.get(token, token)


def load_demo(root: Path) -> list[dict]:
    """[{name, modality, image (H, W, 3) uint8, masks {target: bool (H, W)}}] sorted by name."""
    from PIL import Image

    out = []
    for img_path in sorted((root / "demo").glob("*.png")):
        stem = img_path.stem
        masks = {
            p.stem[len(stem) + 1 :]: np.asarray(Image.open(p).convert("L")) > 0
            for p in sorted((root / "demo_mask").glob(f"{stem}_*.png"))
        }
        image = np.asarray(Image.open(img_path).convert("RGB"))
        out.append({"name": stem, "modality": modality_of(stem), "image": image, "masks": masks})
    return out


def load_split(root: Path, split: str, dataset: str, limit: int) -> list[dict]:
    """The same records as ``load_demo`` for one dataset split of a BiomedParse-layout root
    (e.g. realpack val): the first ``limit`` images (0: all) in id order."""
    from medsam_agent_rt.data import group_by_image, load_samples

    samples = load_samples(root, datasets=[dataset], splits=[split])
    out = []
    for image_id, group in sorted(group_by_image(samples).items()):
        image = group[0].load_image()
        masks = {s.target: s.load_mask() for s in group}
        out.append(
            {"name": image_id, "modality": group[0].modality, "image": image, "masks": masks}
        )
        if limit and len(out) >= limit:
            break
    return out


def gt_box(mask: np.ndarray) -> np.ndarray:
    """Tight (x_min, y_min, x_max, y_max) pixel indices of the mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


# ----------------------------------------------------------------------------- clicks
def _next_click_scipy(pred, gt, exclude):
    """ops.reference.next_click with scipy's exact EDT (same float32 values and argmax)."""
    from scipy import ndimage

    fn = np.pad(gt & ~pred, 1)
    fp = np.pad(pred & ~gt, 1)
    d_fn = ndimage.distance_transform_edt(fn).astype(np.float32)[1:-1, 1:-1]
    d_fp = ndimage.distance_transform_edt(fp).astype(np.float32)[1:-1, 1:-1]
    if exclude:
        ex = np.asarray(exclude, np.int64).reshape(-1, 2)
        d_fn[ex[:, 1], ex[:, 0]] = 0.0
        d_fp[ex[:, 1], ex[:, 0]] = 0.0
    fn_max, fp_max = float(d_fn.max(initial=0.0)), float(d_fp.max(initial=0.0))
    if fn_max == 0.0 and fp_max == 0.0:
        return None
    positive = fn_max > fp_max
    d = d_fn if positive else d_fp
    y, x = divmod(int(np.argmax(d)), d.shape[1])
    return ops.Click(int(x), int(y), bool(positive), float(d[y, x]))


def make_clicker():
    """next_click(pred, gt, exclude) -> ops.Click | None: scipy's EDT when scipy is installed
    (checked against ops.next_click first), else ops.next_click itself."""
    try:
        import scipy.ndimage  # noqa: F401
    except ImportError:
        return lambda p, g, ex: ops.next_click(p, g, np.asarray(ex).reshape(-1, 2) if ex else None)
    rng = np.random.default_rng(0)
    for _ in range(20):  # self-check against ops on small random masks
        g = rng.random((24, 31)) > 0.5
        p = rng.random((24, 31)) > 0.6
        ex = [(int(rng.integers(31)), int(rng.integers(24)))]
        a, b = ops.next_click(p, g, np.asarray(ex)), _next_click_scipy(p, g, ex)
        if a != b:
            raise RuntimeError(f"scipy click simulator disagrees with ops.next_click: {a} vs {b}")
    return _next_click_scipy


# ----------------------------------------------------------------------------- runs
def run_episode(seg, image, gt, strategy, clicks, tau, clicker):
    """Per-turn (Dice, IoU) of one episode: box, then up to ``clicks`` clicks; tau None = every
    click kept, else the expert rule (keep if ΔIoU >= tau, else stop). Curves are carried
    forward after a stop / a perfect mask, so every curve has 1 + clicks entries."""
    ep = PromptChain(seg, image, strategy=strategy)
    step = ep.add_box(gt_box(gt))
    m = ops.mask_metrics(step.mask, gt)
    dice, iou = [float(m.dice[0])], [float(m.iou[0])]
    done, kept, exclude = [], 0, []
    for _ in range(clicks):
        click = None if done else clicker(ep.mask, gt, exclude)
        if click is None:
            done.append(True)
            dice.append(dice[-1])
            iou.append(iou[-1])
            continue
        exclude.append((click.x, click.y))
        trial = ep.preview_point((click.x, click.y), click.positive)
        tm = ops.mask_metrics(trial.mask, gt)
        if tau is not None and float(tm.iou[0]) - iou[-1] < tau:
            done.append(True)
            dice.append(dice[-1])
            iou.append(iou[-1])
            continue
        ep.commit(trial)
        kept += 1
        dice.append(float(tm.dice[0]))
        iou.append(float(tm.iou[0]))
    return dice, iou, kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="LiteMedSAM accuracy on the demo set")
    ap.add_argument(
        "--data", default=None, help="demo folder (default: found like medsam-agent eval demo)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "accuracy.json")
    ap.add_argument("--clicks", type=int, default=4)
    ap.add_argument("--tau", type=float, default=0.01)
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--segmenter", default="litemedsam", help="segmenter spec (litemedsam-click)")
    ap.add_argument(
        "--split",
        default=None,
        help="DATASET/SPLIT of a BiomedParse-layout --data root (e.g. acdc/val) instead of demo",
    )
    ap.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        type=strategy_type,
        help="carrying strategies, each optionally with +zoom (segmenters.prompt_chain)",
    )
    ap.add_argument(
        "--backend",
        default="torch",
        help="segmenter backend (default torch: the reference other benchmarks compare with; "
        "'auto' is the runtime's default)",
    )
    args = ap.parse_args(argv)
    from tqdm import tqdm

    if args.split:
        if args.data is None:
            raise SystemExit("--split needs --data ROOT (a BiomedParse-layout root)")
        dataset, split = args.split.split("/")
        data = load_split(Path(args.data), split, dataset, args.limit)
    else:
        args.data = demo_root(args.data, "accuracy")
        data = load_demo(args.data)
        if args.limit:
            data = data[: args.limit]
    seg = build_segmenter(args.segmenter, backend=args.backend, cache_size=2)
    clicker = make_clicker()
    t0 = time.time()
    per_mask: list[dict] = []
    for item in tqdm(data, desc="images"):
        image = item["image"]
        seg.set_image(image)
        for target, gt in item["masks"].items():
            if not gt.any():
                continue
            rec = {"image": item["name"], "target": target, "modality": item["modality"]}
            box = gt_box(gt)
            single = seg.predict(box=box, multimask_output=False)
            multi = seg.predict(box=box, multimask_output=True)
            best = int(np.argmax(multi.scores))
            rec["box_single_dice"] = float(ops.dice(single.masks[0], gt))
            rec["box_multimask_dice"] = float(ops.dice(multi.masks[best], gt))
            first = clicker(np.zeros_like(gt), gt, [])
            pt = np.array([[first.x, first.y]], np.float64)
            c1 = seg.predict(point_coords=pt, point_labels=np.array([1]), multimask_output=False)
            cm = seg.predict(point_coords=pt, point_labels=np.array([1]), multimask_output=True)
            rec["click_single_dice"] = float(ops.dice(c1.masks[0], gt))
            rec["click_multimask_dice"] = float(ops.dice(cm.masks[int(np.argmax(cm.scores))], gt))
            for strategy in args.strategies:
                d, i, _ = run_episode(seg, image, gt, strategy, args.clicks, None, clicker)
                rec[f"{strategy}|every"] = {"dice": d, "iou": i}
                d, i, kept = run_episode(seg, image, gt, strategy, args.clicks, args.tau, clicker)
                rec[f"{strategy}|expert"] = {"dice": d, "iou": i, "kept": kept}
            per_mask.append(rec)
    seconds = time.time() - t0

    # ------------------------------------------------------------------ summaries
    by_mod = defaultdict(list)
    for r in per_mask:
        by_mod[r["modality"]].append(r)
    modality_table = {
        mod: {
            "masks": len(rs),
            "box_single_dice": float(np.mean([r["box_single_dice"] for r in rs])),
            "box_multimask_dice": float(np.mean([r["box_multimask_dice"] for r in rs])),
        }
        for mod, rs in sorted(by_mod.items())
    }
    overall = {
        k: float(np.mean([r[k] for r in per_mask]))
        for k in (
            "box_single_dice",
            "box_multimask_dice",
            "click_single_dice",
            "click_multimask_dice",
        )
    }
    strategy_table = {}
    for s in args.strategies:
        every = np.array([r[f"{s}|every"]["dice"] for r in per_mask])
        expert = np.array([r[f"{s}|expert"]["dice"] for r in per_mask])
        strategy_table[s] = {
            "every_click_curve": every.mean(0).tolist(),
            "expert_curve": expert.mean(0).tolist(),
            "expert_final": float(expert[:, -1].mean()),
            "expert_gain": float(expert[:, -1].mean() - expert[:, 0].mean()),
            "expert_clicks_kept": float(np.mean([r[f"{s}|expert"]["kept"] for r in per_mask])),
        }
    best = max(args.strategies, key=lambda s: strategy_table[s]["expert_final"])
    result = {
        "segmenter": f"{args.segmenter} (embedded, {seg.backend} "
        f"{getattr(seg, 'precision', 'fp32')}, cpu)",
        "data": str(args.data) + (f" [{args.split}]" if args.split else ""),
        "masks": len(per_mask),
        "clicks": args.clicks,
        "tau": args.tau,
        "click_simulator": "next_click rule with scipy EDT (checked against ops.next_click)",
        "seconds": seconds,
        "overall": overall,
        "per_modality": modality_table,
        "strategies": strategy_table,
        "best_strategy_expert": best,
        "per_mask": per_mask,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(markdown(result))
    print(f"\nwrote {args.out} ({len(per_mask)} masks, {seconds:.0f} s)")
    return 0


def markdown(result: dict) -> str:
    """The two README tables."""
    lines = [
        "| modality | masks | Dice, GT box (single mask) | Dice, GT box (best of 3) |",
        "|---|---|---|---|",
    ]
    for mod, row in result["per_modality"].items():
        lines.append(
            f"| {mod} | {row['masks']} | {row['box_single_dice']:.3f} | {row['box_multimask_dice']:.3f} |"
        )
    o = result["overall"]
    lines.append(
        f"| **all** | {result['masks']} | **{o['box_single_dice']:.3f}** | {o['box_multimask_dice']:.3f} |"
    )
    lines.append("")
    lines.append(
        f"First click at the GT's innermost pixel: Dice {o['click_single_dice']:.3f} (single mask), "
        f"{o['click_multimask_dice']:.3f} (best of 3)."
    )
    lines.append("")
    n = result["clicks"]
    head = " / ".join(["box"] + [f"+{k} click" for k in range(1, n + 1)])  # one cell, as the rows
    lines.append(
        f"| strategy | every click kept: {head} | expert (ΔIoU >= {result['tau']}) final | gain | clicks kept |"
    )
    lines.append("|---|---|---|---|---|")
    for s, row in result["strategies"].items():
        curve = " / ".join(f"{v:.3f}" for v in row["every_click_curve"])
        lines.append(
            f"| {s} | {curve} | {row['expert_final']:.3f} | {row['expert_gain']:+.3f} | {row['expert_clicks_kept']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
