"""Batch evaluation of a policy + segmenter on a dataset (``medsam-agent eval``).

``evaluate(EvalConfig(dataset, policy, ...), out)`` runs one rank's shard (torchrun-style
RANK / WORLD_SIZE) with ``workers`` processes and, for a single rank, merges it into
``out/results.json`` (+ results.md, dice_vs_turn.png, gallery/); ``merge(dirs)`` merges the
shards of a multi-rank run. ``summarise(rows, rounds)`` is the aggregation alone (per sample,
class, dataset and modality means; per-round curves; action histogram; end reasons; NoC@85/90
and mIoU@k for click policies). Imports need NumPy only.
"""

from medsam_agent_rt.evaluation.datasets import SampleRef, find_demo, resolve_dataset, shard_of
from medsam_agent_rt.evaluation.metrics import (
    NOC_CAP,
    carry,
    click_metrics,
    group_means,
    noc,
    round_curves,
    summarise,
)
from medsam_agent_rt.evaluation.rows import EpisodeRunner
from medsam_agent_rt.evaluation.runner import EvalConfig, evaluate, merge, rank_from_env

__all__ = [
    "NOC_CAP",
    "EpisodeRunner",
    "EvalConfig",
    "SampleRef",
    "carry",
    "click_metrics",
    "evaluate",
    "find_demo",
    "group_means",
    "merge",
    "noc",
    "rank_from_env",
    "resolve_dataset",
    "round_curves",
    "shard_of",
    "summarise",
]
