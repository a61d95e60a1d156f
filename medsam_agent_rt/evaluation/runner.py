"""``evaluate``: run a policy + segmenter over a dataset, shard by shard, and ``merge`` shards
into results.json / results.md / plots.

Sharding: rank R of world size W (torchrun's RANK / WORLD_SIZE environment variables, or
explicit arguments) evaluates the samples with index % W == R and appends their rows to its
shard (``evaluation.shards``); inside a rank, ``workers`` spawned processes share the work
image by image. A run with W = 1 merges its own shard at the end; with W > 1 every rank writes
its shard and ``merge(dirs)`` (``medsam-agent eval merge DIR...``) combines them. Rows depend
only on the sample (GT-driven policies seed per image + GT), and aggregates are computed from
rows sorted by index, so sharded and unsharded runs give identical results (timings aside).
Re-running with the same config resumes: samples already in the shard are skipped.
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medsam_agent_rt.evaluation.datasets import (
    SampleRef,
    dataset_digest,
    resolve_run_samples,
    shard_of,
)
from medsam_agent_rt.evaluation.metrics import summarise, timing
from medsam_agent_rt.evaluation.rows import EpisodeRunner
from medsam_agent_rt.evaluation.shards import (
    FAILED,
    append_jsonl,
    discard_if_empty,
    load_shards,
    open_shard,
    write_json_atomic,
)
from medsam_agent_rt.evaluation.workers import group_by_image, map_groups
from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER

RESULTS_FORMAT = "medsam-agent-eval/1"


@dataclass(frozen=True)
class EvalConfig:
    """What defines an evaluation run (recorded in results.json; shards must agree on it).

    dataset: a dataset spec (``evaluation.datasets``); policy: a ``build_policy`` spec;
    segmenter / backend / device: ``build_segmenter`` arguments; strategy: prompt carrying
    (None: the family default); max_turns: executed-action budget per episode; limit: the first
    N samples; splits / datasets / modalities: filters (None: all); keep_records: store each
    episode record (with RLE masks) in the shard (needed for the gallery)."""

    dataset: str
    policy: str
    segmenter: str = DEFAULT_SEGMENTER
    backend: str = "torch"
    device: str = "cpu"
    strategy: str | None = None
    max_turns: int = 5
    limit: int | None = None
    splits: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    modalities: tuple[str, ...] | None = None
    keep_records: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_turns, bool) or not isinstance(self.max_turns, int):
            raise ValueError(f"max_turns must be an integer >= 1, got {self.max_turns!r}")
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be an integer >= 1, got {self.max_turns!r}")
        from medsam_agent_rt.session_config import SessionConfig

        SessionConfig(max_actions=self.max_turns)  # the one turn-budget check (its ceiling)
        for name in ("splits", "datasets", "modalities"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, str) or not all(isinstance(x, str) for x in v)):
                raise ValueError(f"{name} must be a tuple of names or None, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def versions() -> dict[str, Any]:
    """Versions that can change results: package, Python, NumPy, torch, kernel backend."""
    from importlib import metadata

    import numpy as np

    import medsam_agent_rt

    def ver(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    info = medsam_agent_rt.build_info()
    return {
        "medsam_agent_rt": medsam_agent_rt.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": ver("torch"),
        "onnxruntime": ver("onnxruntime"),
        "ops_backend": info.get("ops_backend"),
        "cuda": info.get("cuda"),
    }


def rank_from_env(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments, else torchrun's RANK / WORLD_SIZE, else (0, 1)."""

    def env_int(name: str) -> int | None:
        v = os.environ.get(name)
        if v is None or v == "":
            return None
        try:
            return int(v)
        except ValueError:
            raise ValueError(f"environment variable {name} must be an integer, got {v!r}") from None

    r = rank if rank is not None else env_int("RANK")
    w = world_size if world_size is not None else env_int("WORLD_SIZE")
    r, w = (0 if r is None else r), (1 if w is None else w)
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"rank must be in 0..world_size-1, got rank {r} of world size {w}")
    return r, w


def _device_for_rank(device: str) -> str:
    local = os.environ.get("LOCAL_RANK")
    if device == "cuda" and local not in (None, ""):
        return f"cuda:{int(local)}"
    return device


def evaluate(
    config: EvalConfig,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    threads: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    segmenter: Any = None,
    policy: Any = None,
    report: bool = True,
    gallery: int = 3,
) -> dict[str, Any] | None:
    """Evaluate this rank's shard of ``config.dataset`` into ``out``; returns the merged results
    when the world size is 1 (else None: merge the shards with ``merge``).

    workers: processes for this rank (1: in-process); threads: CPU threads per process
    (None: leave torch's default; 1 is fastest on a busy machine, see ``workers``);
    segmenter / policy: ready objects to use in-process instead of building them from the
    config's specs (their specs still name them in the results); report: write results.md and
    plots when merging; gallery: best and worst cases drawn as overlay strips (0: none)."""
    from medsam_agent_rt.data._progress import progress

    r, w = rank_from_env(rank, world_size)
    out = Path(out)
    refs = resolve_run_samples(config)
    device = _device_for_rank(config.device)
    meta = {
        "config": config.to_dict(),
        "rank": r,
        "world_size": w,
        "n_samples": len(refs),
        "dataset_digest": dataset_digest(refs),
        "versions": versions(),
        "host": socket.gethostname(),
        "device": device,
        "workers": workers,
    }
    rows_path, done = open_shard(out, meta, overwrite=overwrite)
    mine = shard_of(refs, r, w)
    todo = [ref for ref in mine if ref.index not in done]
    runner = GuardedRunner(
        EpisodeRunner(
            policy=policy if policy is not None else config.policy,
            segmenter=segmenter if segmenter is not None else config.segmenter,
            backend=config.backend,
            device=device,
            strategy=config.strategy,
            max_turns=config.max_turns,
            keep_records=config.keep_records,
        )
    )
    bar = progress(len(mine), f"eval {config.policy} [{r}/{w}]", show_progress)
    bar.update(len(mine) - len(todo))
    try:
        for rows in map_groups(runner, group_by_image(todo), workers, threads):
            for row in rows:
                append_jsonl(rows_path, row)
            bar.update(len(rows))
    except BaseException:
        discard_if_empty(rows_path)  # e.g. a bad segmenter / policy spec: leave nothing behind
        raise
    finally:
        bar.close()
    if w > 1:
        return None
    return merge([out], out, report=report, gallery=gallery)


class GuardedRunner:
    """One sample never ends the evaluation: an exception raised while running it (the policy's
    server answering HTTP 500, a corrupt image a decoder chokes on, a tool bug) becomes a row
    with ``skipped = "failed"`` and ``error`` = the exception, and the run goes on. ``setup``
    errors (a bad policy / segmenter spec) still stop the run: every sample would fail alike.
    Picklable like the runner it wraps (worker processes)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def setup(self) -> None:
        self.inner.setup()

    def run(self, ref: SampleRef) -> dict[str, Any]:
        try:
            return self.inner.run(ref)
        except Exception as exc:  # noqa: BLE001 - recorded in the row, see the class docstring
            return failed_row(ref, exc)


def failed_row(ref: SampleRef, exc: BaseException) -> dict[str, Any]:
    """The row of a sample whose episode raised: not evaluated, the error kept (<= 2000 chars)."""
    return {**ref.info(), "skipped": FAILED, "error": f"{type(exc).__name__}: {exc}"[:2000]}


def click_policy_of(spec: str) -> bool | None:
    """Whether the policy ``spec`` is a click policy (NoC / mIoU@k apply): clicker yes,
    oracle-box no, expert only with box_prob=0; None (decide from the episodes) otherwise."""
    name, _, arg = str(spec).partition(":")
    if name == "clicker":
        return True
    if spec == "oracle-box":
        return False
    if name == "expert":
        from medsam_agent_rt.policies.expert import ExpertConfig

        return ExpertConfig.from_spec(arg).box_prob == 0.0
    return None


def _sample_entry(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "record"}


def merge(
    dirs: list[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    report: bool = True,
    gallery: int = 3,
) -> dict[str, Any]:
    """Merge the shards found under ``dirs`` into ``out`` (default: the first dir):
    results.json, and with ``report`` results.md, the Dice-versus-turn plot and the gallery."""
    metas, rows = load_shards(dirs)
    out = Path(out if out is not None else dirs[0])
    cfg = dict(metas[0]["config"])
    vers = []
    for m in metas:
        if m.get("versions") not in vers:
            vers.append(m.get("versions"))
    strategies = sorted({r.get("strategy") for r in rows if r.get("strategy")})
    results = {
        "format": RESULTS_FORMAT,
        "config": {
            **cfg,
            "strategy_used": strategies[0] if len(strategies) == 1 else strategies,
            "n_samples": metas[0]["n_samples"],
            "dataset_digest": metas[0]["dataset_digest"],
            "versions": vers[0] if len(vers) == 1 else vers,
        },
        "metrics": summarise(rows, cfg["max_turns"], click_policy=click_policy_of(cfg["policy"])),
        "timing": timing(rows),
        "samples": [_sample_entry(r) for r in rows],
        "run": {
            "world_size": metas[0]["world_size"],
            "shards": [
                {k: m.get(k) for k in ("rank", "host", "device", "workers", "_path")}
                for m in sorted(metas, key=lambda m: m["rank"])
            ],
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    if report:
        from medsam_agent_rt.evaluation.report import write_report

        write_report(results, rows, out, gallery=gallery)
    return results


def load_ref(row: dict[str, Any]) -> SampleRef:
    """The sample of a result row (to reload its pixels)."""
    return SampleRef.from_info(row)
