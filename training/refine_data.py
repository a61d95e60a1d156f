"""Expert episodes for a refinement SFT, split by whether the expert corrected its box.

    python -m medsam_agent_rt.training.refine_data --data-root ../shared/data/realpack \\
        --per-dataset 100 --out runs/refine

An embedded policy trained on the pipeline's data mix opens with a box and stops: most of its
episodes are a box and a stop. This writes expert episodes (``expert:box_prob=1.0``: a jittered
GT box, then corrections through the given segmenter -- by default the shipped
``litemedsam-click`` -- accepted while IoU rises by >= 0.01) on ``--per-dataset`` train samples
of every dataset under the roots, and sorts them into

    OUT/corrections.jsonl  episodes with more than one action (box, then accepted clicks)
    OUT/single.jsonl       box, then stop
    OUT/episodes.jsonl     all kept episodes (resumable; rejected ids in episodes.rejected)
    OUT/counts.json        written / rejected / per-dataset action counts

so an SFT can read the correction episodes more often than the single ones (``medsam-agent
train sft --data openings.jsonl corrections.jsonl corrections.jsonl corrections.jsonl
single.jsonl``). Samples (image, target) are shuffled per dataset with ``--shuffle-seed`` and
taken round-robin across datasets. Demo roots are refused.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any


def refine_samples(data_root: Any, per_dataset: int, shuffle_seed: str = "refine") -> list[Any]:
    """``per_dataset`` train samples of every dataset under the roots (comma-separated), each
    dataset shuffled with ``random.Random(f"{shuffle_seed}:{dataset}")``, interleaved."""
    from medsam_agent_rt.training.pipeline import data_roots, interleave, training_datasets

    roots = data_roots(data_root)
    if not roots:
        raise ValueError("pass --data-root: a BiomedParse-style dataset folder")
    if per_dataset < 1:
        raise ValueError(f"--per-dataset must be >= 1 (got {per_dataset})")
    groups = []
    for dataset, rows in training_datasets(roots, ["train"]):
        random.Random(f"{shuffle_seed}:{dataset}").shuffle(rows)
        groups.append(rows[:per_dataset])
    if not groups:
        raise ValueError(f"no train samples under {data_root}")
    return interleave(groups)


def split_by_corrections(episodes: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``corrections.jsonl`` (more than one action) and ``single.jsonl`` from
    ``episodes.jsonl``; returns the counts (per dataset: {actions: episodes})."""
    per_dataset: dict[str, Counter] = {}
    n = {"corrections": 0, "single": 0}
    with (
        open(out_dir / "corrections.jsonl", "w") as corr,
        open(out_dir / "single.jsonl", "w") as single,
    ):
        for line in Path(episodes).read_text().splitlines():
            if not line.strip():
                continue
            conv = json.loads(line)
            actions = int(conv.get("meta", {}).get("actions") or 0)
            if actions < 1:
                raise ValueError(f"{episodes}: episode {conv.get('id')!r} has no action count")
            kind = "corrections" if actions > 1 else "single"
            (corr if kind == "corrections" else single).write(line + "\n")
            n[kind] += 1
            per_dataset.setdefault(conv.get("dataset", "?"), Counter())[actions] += 1
    return {
        **n,
        "actions_per_dataset": {d: dict(sorted(c.items())) for d, c in sorted(per_dataset.items())},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="expert episodes for a refinement SFT")
    ap.add_argument("--data-root", required=True, help="dataset root(s), comma-separated")
    ap.add_argument("--per-dataset", type=int, default=100, help="train samples per dataset")
    ap.add_argument("--shuffle-seed", default="refine", help="string seed of the sample order")
    ap.add_argument("--segmenter", default="litemedsam-click", help="the tool in the loop")
    ap.add_argument("--min-final-iou", type=float, default=0.5, help="keep episodes above")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from medsam_agent_rt.training.phantom_data import write_expert_episodes

    from medsam_agent_rt.segmenters import build_segmenter

    samples = refine_samples(args.data_root, args.per_dataset, args.shuffle_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    written = write_expert_episodes(
        samples,
        build_segmenter(args.segmenter),
        args.out,
        min_final_iou=args.min_final_iou,
        progress=not args.no_progress,
    )
    counts = {
        "samples": len(samples),
        **written,
        **split_by_corrections(args.out / "episodes.jsonl", args.out),
    }
    (args.out / "counts.json").write_text(json.dumps(counts, indent=1))
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
