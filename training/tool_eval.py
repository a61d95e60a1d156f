"""Model selection for ``tool_finetune``: deterministic episodes on the cached val split.

In the 256 x 256 model frame (the full-resolution, full-pipeline measurement is
``benchmarks.accuracy`` / ``medsam-agent eval``), for each val (image, target):

- ``box``: Dice of the tight GT box alone;
- ``click{K}|<strategy>``: click-only episodes (the ``clicker`` policy's rule: ``ops.next_click``
  on the current mask, first click on the empty mask) — Dice after K clicks;
- ``box+{K-1}|<strategy>``: the GT box, then K - 1 such clicks, every click kept — final Dice;
- ``box~jitter{J}`` / ``box~grow{G}`` (``loose``, opt-in): box-only Dice of the loose and
  misplaced boxes a policy draws — each side of the GT box moved by U(-J, J) x its side, or
  pushed outward by U(0, G) x its side — mean over ``LOOSE_DRAWS`` boxes per target, drawn from a
  seed of (entry, target, draw), so every checkpoint and every subset sees the same boxes.

Strategies: "box+all_clicks+prev_logits" (``prev``) and "box+all_clicks" (``noprev``).
"""

from __future__ import annotations

import copy
import re

import numpy as np
from medsam_agent_rt.training import tool_sim

LOOSE_DRAWS = 4
_LOOSE = re.compile(r"^(jitter|grow)(\d+(?:\.\d+)?)$")


def batch_dice(pred: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """(N,) Dice of (N, H, W) bool predictions against (N, H, W) bool GT (0 when both empty)."""
    inter = (pred & gts).sum((1, 2))
    return 2 * inter / np.maximum(pred.sum((1, 2)) + gts.sum((1, 2)), 1)


def parse_loose(spec: str) -> list[tuple[str, float]]:
    """Parse "jitter0.3,grow0.5" into [("jitter", 0.3), ("grow", 0.5)]; jitter < 0.5, grow <= 2."""
    out = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        m = _LOOSE.match(item)
        if not m:
            raise ValueError(
                f"loose box measure {item!r}: expected jitterJ or growG, e.g. jitter0.3"
            )
        kind, amount = m.group(1), float(m.group(2))
        if not (0 < amount < 0.5 if kind == "jitter" else 0 < amount <= 2):
            raise ValueError(
                f"loose box measure {item!r}: jitter must be in (0, 0.5), grow in (0, 2]"
            )
        out.append((kind, amount))
    return out


def loose_box(gt: np.ndarray, kind: str, amount: float, seed: tuple[int, ...]) -> np.ndarray:
    """The (4,) frame-px box of measure (kind, amount) for one target and draw."""
    rng = np.random.default_rng(list(seed))
    if kind == "jitter":
        return tool_sim.jittered_box(gt, rng, amount)
    return tool_sim.grown_box(gt, rng, amount)


def loose_box_dice(model, embs, gts, valids, keys, kind: str, amount: float) -> np.ndarray:
    """(N,) box-only Dice, each the mean over ``LOOSE_DRAWS`` loose boxes; keys: N (entry,
    target) ints seeding the draws. Shapes as :func:`run_episodes`."""
    import torch

    n = len(gts)
    emb_t = torch.from_numpy(np.asarray(embs, np.float32))
    prev, has = torch.zeros(n, 1, *model.mask_input_size), torch.zeros(n)
    total = np.zeros(n)
    for d in range(LOOSE_DRAWS):
        toks = [
            tool_sim.prompt_tokens([], loose_box(g, kind, amount, (*k, d)))
            for g, k in zip(gts, keys)
        ]
        coords = torch.from_numpy(np.stack([c for c, _ in toks]))
        labels = torch.from_numpy(np.stack([lab for _, lab in toks]))
        with torch.inference_mode():
            low, _ = model.decode(
                emb_t, model.prompt_encoder.embed_tokens(coords, labels), prev, has
            )
        pred = (low[:, 0] > 0).numpy() & valids
        total += batch_dice(pred, gts)
    return total / LOOSE_DRAWS


def run_episodes(model, embs, gts, valids, opening: str, clicks: int, use_logits: bool):
    """Dice curves (N, clicks + 1) of deterministic episodes (no gradients).

    embs (N, 256, 64, 64) float32, gts / valids (N, 256, 256) bool; opening "box" | "click"
    (the click opening's first click is curve entry 0)."""
    import torch

    n = len(gts)
    boxes = [tool_sim.jittered_box(g, None, 0.0) if opening == "box" else None for g in gts]
    rng = np.random.default_rng(0)  # unused by the deterministic rule
    clicks_so_far = [[] if opening == "box" else [tool_sim.first_click(g, rng, True)] for g in gts]
    emb_t = torch.from_numpy(np.asarray(embs, np.float32))
    prev = torch.zeros(n, 1, *model.mask_input_size)
    has = torch.zeros(n)
    curve = np.zeros((n, clicks + 1))
    for it in range(clicks + 1):
        toks = [tool_sim.prompt_tokens(c, b) for c, b in zip(clicks_so_far, boxes)]
        coords = torch.from_numpy(np.stack([c for c, _ in toks]))
        labels = torch.from_numpy(np.stack([lab for _, lab in toks]))
        with torch.inference_mode():
            sparse = model.prompt_encoder.embed_tokens(coords, labels)
            low, _ = model.decode(emb_t, sparse, prev, has)
        logits = low[:, 0]
        pred = (logits > 0).numpy() & valids
        curve[:, it] = batch_dice(pred, gts)
        if it == clicks:
            break
        for b in range(n):
            done = [(x, y) for x, y, _ in clicks_so_far[b]]
            clicks_so_far[b].append(tool_sim.corrective_click(pred[b], gts[b], done, rng, True))
        if use_logits:
            prev, has = logits.clone()[:, None], torch.ones(n)
    return curve


def val_pairs(pool, limit: int) -> list[tuple[int, int]]:
    """Every (entry, target) pair, interleaved across datasets; the first ``limit`` (0: all)."""
    per = {
        ds: [(i, t) for i in idx for t in range(len(pool.entries[i].targets))]
        for ds, idx in pool.by_dataset.items()
    }
    out = []
    for k in range(max(len(v) for v in per.values())):
        out += [v[k] for _, v in sorted(per.items()) if k < len(v)]
    return out[:limit] if limit else out


def evaluate_pool(
    model,
    pool,
    limit: int = 0,
    clicks: int = 5,
    chunk: int = 16,
    carry: str = "prev,noprev",
    loose: str = "",
) -> dict:
    """Mean Dice per measurement (see the module docstring) over the pool's val pairs; carry:
    the comma-separated strategies to score ("prev", "noprev"); loose: the loose-box measures
    to add ("jitter0.3,grow0.5"; empty: none)."""
    names = [c for c in carry.split(",") if c]
    measures = parse_loose(loose)
    if not (names or measures) or set(names) - {"prev", "noprev"}:
        raise ValueError(
            f"carry must list prev and/or noprev (or be empty with loose); got {carry!r}"
        )
    pairs = val_pairs(pool, limit)
    sums: dict[str, float] = {}
    for s in range(0, len(pairs), chunk):
        part = pairs[s : s + chunk]
        embs, gts, valids = pool.batch(part)
        res = {}
        for kind, amount in measures:
            res[f"box~{kind}{amount:g}"] = loose_box_dice(
                model, embs, gts, valids, part, kind, amount
            )
        for name in names:
            use = name == "prev"
            c = run_episodes(model, embs, gts, valids, "click", clicks - 1, use)
            res[f"click1|{name}"] = c[:, 0]
            res[f"click{clicks}|{name}"] = c[:, -1]
            b = run_episodes(model, embs, gts, valids, "box", clicks - 1, use)
            res["box"] = b[:, 0]
            res[f"box+{clicks - 1}|{name}"] = b[:, -1]
        for k, v in res.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
    return {k: v / len(pairs) for k, v in sums.items()}


def evaluate_by_dataset(
    model, pool, clicks: int = 5, carry: str = "prev,noprev", loose: str = ""
) -> dict[str, dict]:
    """``evaluate_pool`` per dataset of the pool (every val pair) plus the number of pairs."""
    out = {}
    for ds, idx in sorted(pool.by_dataset.items()):
        sub = copy.copy(pool)
        sub.by_dataset = {ds: idx}
        n = sum(len(pool.entries[i].targets) for i in idx)
        out[ds] = {"pairs": n, **evaluate_pool(model, sub, 0, clicks, carry=carry, loose=loose)}
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    import torch
    from medsam_agent_rt.training.tool_finetune import Pool, build_model, load_tool_weights

    ap = argparse.ArgumentParser(description="Val-cache table of a tool checkpoint, per dataset")
    ap.add_argument("--cache", type=Path, default=Path("runs/emb"))
    ap.add_argument(
        "--checkpoint", type=Path, default=None, help="step-N.pt / .safetensors (none: LiteMedSAM)"
    )
    ap.add_argument("--out", type=Path, required=True, help="JSON file")
    ap.add_argument(
        "--carry", default="prev,noprev", help="strategies scored: prev, noprev (empty: none)"
    )
    ap.add_argument(
        "--loose",
        default="",
        help="loose-box measures to add, e.g. jitter0.3,grow0.5 (box only; see the module doc)",
    )
    args = ap.parse_args(argv)
    try:
        parse_loose(args.loose)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(1)
    model = build_model().eval()
    if args.checkpoint is not None:
        load_tool_weights(model, args.checkpoint)
    res = evaluate_by_dataset(model, Pool(args.cache, "val"), carry=args.carry, loose=args.loose)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
