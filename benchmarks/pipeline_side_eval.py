"""Compute some policies' rows of a pipeline run's eval stage in a separate process, into a side
JSONL (the same held-out samples, segmenter, harness and HFPolicy settings as
``training.pipeline._finish``). Append the side files to OUT/eval/rows.jsonl before the eval
stage runs and it reuses those rows (evaluation rows resume by (policy, sample_id)); this is how
the realpack-tiny baselines and SFT rows were evaluated while SFT / GRPO were still training.

    python -m benchmarks.pipeline_side_eval --preset realpack-tiny --data-root ../shared/data/realpack \\
        --out runs/realpack-tiny --policies oracle-box expert clicker:3 phantom-tiny --rows runs/rt/rows_baselines.jsonl
    python -m benchmarks.pipeline_side_eval ... --policies sft --rows runs/rt/rows_sft.jsonl
    python -m benchmarks.pipeline_side_eval ... --policies grpo --rows runs/rt/rows_grpo.jsonl

"sft" is OUT/sft/model, "grpo" the packaged OUT/package, a shipped policy name its assets
directory, anything else a build_policy spec.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", required=True, help="the pipeline run directory")
    parser.add_argument("--policies", nargs="+", required=True)
    parser.add_argument("--rows", required=True, help="side JSONL of rows (resumable)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from medsam_agent_rt.training.evaluate import evaluate_policies
    from medsam_agent_rt.training.pipeline import eval_policy_sources, split_samples
    from medsam_agent_rt.training.presets import get_preset

    from medsam_agent_rt.segmenters import build_segmenter

    p = get_preset(args.preset)
    out = Path(args.out)
    samples = split_samples(p, args.data_root, out)

    res = evaluate_policies(
        eval_policy_sources(p, out, args.policies, device="cpu"),
        samples["test"],
        build_segmenter(p.segmenter, device="cpu"),
        rows_path=args.rows,
    )
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
