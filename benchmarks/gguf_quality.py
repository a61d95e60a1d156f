"""GGUF quantisation vs the HF policy on whole episodes (measurements, not tests).

    python -m benchmarks.gguf_quality [--src DIR] [--quants f16 q8_0 q4_k_m] [--n 12]
        [--threads 2] [--json PATH]

Exports ``--src`` (default: the embedded policy) at each quant, then runs greedy episodes with
the embedded LiteMedSAM on ``--n`` held-out (test-split) phantoms with the hf policy (float32,
the reference) and with each GGUF policy. Per quant: the share of episodes whose every turn's
text equals the reference's, the share of turns equal, the share of final masks identical, the
mean final Dice and its difference from the reference's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def episodes(policy: Any, segmenter: Any, samples: list[tuple]) -> list[dict[str, Any]]:
    from medsam_agent_rt.episode import Episode

    out = []
    for image, gt, target in samples:
        mask, rec = Episode(segmenter, policy).run(image, target, gt)
        inter = np.logical_and(mask, gt).sum()
        dice = 2 * inter / max(mask.sum() + gt.sum(), 1)
        out.append({"texts": [t.text for t in rec.turns], "mask": mask, "dice": float(dice)})
    return out


def compare(ref: list[dict[str, Any]], got: list[dict[str, Any]]) -> dict[str, Any]:
    turns = sum(len(r["texts"]) for r in ref)
    same_turns = sum(sum(a == b for a, b in zip(r["texts"], g["texts"])) for r, g in zip(ref, got))
    return {
        "episodes_identical": float(np.mean([r["texts"] == g["texts"] for r, g in zip(ref, got)])),
        "turns_identical": same_turns / max(turns, 1),
        "masks_identical": float(
            np.mean([np.array_equal(r["mask"], g["mask"]) for r, g in zip(ref, got)])
        ),
        "mean_dice": float(np.mean([g["dice"] for g in got])),
        "dice_delta_vs_hf": float(np.mean([g["dice"] - r["dice"] for r, g in zip(ref, got)])),
    }


def main(argv: list[str] | None = None) -> int:
    from medsam_agent_rt.export.gguf_export import export_policy
    from medsam_agent_rt.training.phantom_data import phantom_samples
    from medsam_agent_rt.training.presets import get_preset

    from medsam_agent_rt.assets import ASSETS_DIR
    from medsam_agent_rt.policies.gguf import GGUFPolicy
    from medsam_agent_rt.policies.hf import HFPolicy
    from medsam_agent_rt.policies.registry import EMBEDDED_POLICY
    from medsam_agent_rt.segmenters import build_segmenter

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--src", default=str(ASSETS_DIR / "policies" / EMBEDDED_POLICY))
    ap.add_argument("--quants", nargs="+", default=["f16", "q8_0", "q4_k_m"])
    ap.add_argument("--n", type=int, default=12, help="held-out phantoms (default 12)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    samples = [
        (*s.load(), s.description)
        for s in phantom_samples(get_preset("phantom-tiny").phantoms, "test", args.n)
    ]
    seg = build_segmenter("litemedsam")
    ref = episodes(HFPolicy(args.src), seg, samples)
    rows: dict[str, Any] = {
        "hf": {"mean_dice": float(np.mean([r["dice"] for r in ref])), "episodes": len(ref)}
    }
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quants:
            out = Path(tmp) / quant
            exp = export_policy(args.src, out, quant, progress=False, parity=False)
            size = sum(f["bytes"] for f in exp.manifest["files"].values())
            with GGUFPolicy(out, n_threads=args.threads) as pol:
                rows[quant] = {**compare(ref, episodes(pol, seg, samples)), "bytes": size}
    print(f"GGUF vs HF on {args.n} held-out phantoms (load {os.getloadavg()[0]:.1f})")
    print(
        "| policy | episodes identical | turns identical | masks identical | mean Dice | "
        "Dice delta vs HF | files |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| hf (float32) | - | - | - | {rows['hf']['mean_dice']:.3f} | - | - |")
    for q in args.quants:
        r = rows[q]
        print(
            f"| gguf {q} | {r['episodes_identical']:.0%} | {r['turns_identical']:.0%} | "
            f"{r['masks_identical']:.0%} | {r['mean_dice']:.3f} | {r['dice_delta_vs_hf']:+.4f} | "
            f"{r['bytes'] / 1e6:.1f} MB |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"benchmark": "gguf_quality", "n": args.n, "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
