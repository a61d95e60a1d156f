"""Expert trajectories for SFT: hybrid prompting with the real segmenter in the loop.

Algorithm (PROTOCOL.md, "Expert trajectories"), per sample and per episode k < ``per_sample``:

1. Run one episode of ``episode.Episode`` with ``policies.expert.ExpertPolicy`` (seed
   ``seed + k``) over the real segmenter: the opening is a jittered GT box (box-to-point,
   probability ``box_prob``) or a click at the GT pixel farthest from its boundary
   (sequential-click); every correction is the click simulator's candidate, previewed on the
   episode's chained tool state and accepted when it raises IoU by >= ``tau``, else resampled
   among near-maximum pixels of the error region up to ``retries`` times; when the retries run
   out (or the mask equals the GT) the expert emits ``stop_action``. At most ``max_actions``
   executed actions (then the episode ends without a stop, as at inference).
2. Keep the episode when its final IoU >= ``min_final_iou``; write it as one conversation in the
   protocol format (system, user turns with the 512 view and the overlays, assistant turns with
   phrase + tool call) with ``training.conversations.ConversationWriter``.

Outputs under OUT: ``conversations.jsonl`` + ``images/`` (kept conversations; meta holds the
final IoU, the turns with their IoU gains and a digest of each tool mask), ``episodes.jsonl``
(one line per episode, kept or not, with timings: the resume ledger), ``stats.json`` (acceptance
rate, turns histogram, final-IoU distribution, kept / filtered counts) and ``config.json``.
Resumable (finished episodes are skipped; a torn last line is cut off), multi-process (spawned
workers, each building its segmenter once) and deterministic: conversations.jsonl and the
images are byte-identical for a seed whatever the worker count.

Measured with the embedded LiteMedSAM (trained on boxes only) on the 71 demo masks, defaults:
18 of 71 episodes kept, all 18 from the 28 box openings (mean final IoU 0.73) and none from
the 43 click openings (0.19): with this segmenter raise ``box_prob`` for more data, or keep
0.5 to train the click opening anyway.

    python -m medsam_agent_rt.training.trajectories --dataset demo --out runs/traj
    python -m medsam_agent_rt.training.trajectories --dataset phantoms:n=500,size=512 \\
        --out runs/traj-phantoms --workers 8 --per-sample 2 --box-prob 0.7
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from medsam_agent_rt.training.conversations import ConversationWriter, iter_conversations
from medsam_agent_rt.training.trajectory_stats import trajectory_stats, turn_summaries

from medsam_agent_rt.evaluation.datasets import SampleRef, dataset_digest, resolve_run_samples
from medsam_agent_rt.evaluation.shards import append_jsonl, read_jsonl, repair_tail
from medsam_agent_rt.evaluation.workers import group_by_image, map_groups

CONVERSATIONS = "conversations.jsonl"
LEDGER = "episodes.jsonl"


def _h(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrajectoryConfig:
    """Every parameter of a generation run (defaults: PROTOCOL.md's suggestions; the paper
    publishes none)."""

    dataset: str = field(metadata=_h("dataset folder, 'demo' or 'phantoms:n=N,size=S,...'"))
    segmenter: str = field(default="litemedsam", metadata=_h("segmenter spec"))
    backend: str = field(default="torch", metadata=_h("segmenter backend: torch | onnx | trt"))
    device: str = field(default="cpu", metadata=_h("torch device of the segmenter"))
    strategy: str | None = field(default=None, metadata=_h("prompt carrying (family default)"))
    seed: int = field(default=0, metadata=_h("expert seed; episode k of a sample uses seed + k"))
    per_sample: int = field(default=1, metadata=_h("episodes per sample (different draws)"))
    box_prob: float = field(default=0.5, metadata=_h("share of box-to-point openings"))
    jitter_min: float = field(default=0.05, metadata=_h("box edge jitter, min fraction of side"))
    jitter_max: float = field(default=0.10, metadata=_h("box edge jitter, max fraction of side"))
    tau: float = field(default=0.01, metadata=_h("minimum IoU gain to accept a correction"))
    retries: int = field(default=3, metadata=_h("resamples after a rejected click, then stop"))
    near_max: float = field(default=0.8, metadata=_h("resampling pool: dist >= near_max * max"))
    max_actions: int = field(default=5, metadata=_h("executed actions per episode"))
    min_final_iou: float = field(default=0.75, metadata=_h("keep episodes with final IoU >= it"))
    limit: int | None = field(default=None, metadata=_h("use the first N samples only"))
    splits: tuple[str, ...] | None = field(default=None, metadata=_h("splits to use (all)"))
    datasets: tuple[str, ...] | None = field(default=None, metadata=_h("datasets to use (all)"))
    modalities: tuple[str, ...] | None = field(default=None, metadata=_h("modalities (all)"))

    def __post_init__(self) -> None:
        for name, lo in (("per_sample", 1), ("max_actions", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not 0.0 <= self.min_final_iou <= 1.0:
            raise ValueError(f"min_final_iou must be in [0, 1], got {self.min_final_iou}")
        self.expert_config(0)  # validates box_prob, jitter, tau, retries, near_max

    def expert_config(self, k: int) -> Any:
        from medsam_agent_rt.policies.expert import ExpertConfig

        return ExpertConfig(
            seed=self.seed + k,
            box_prob=self.box_prob,
            jitter_min=self.jitter_min,
            jitter_max=self.jitter_max,
            tau=self.tau,
            retries=self.retries,
            near_max=self.near_max,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------- one episode


@dataclass
class TrajectoryRunner:
    """Runs the ``per_sample`` expert episodes of one sample (picklable before ``setup``)."""

    config: TrajectoryConfig
    segmenter: Any = None  # a ready Segmenter (in-process only); None: build from the config
    _seg: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        if self.segmenter is not None:
            raise TypeError("worker processes build their own segmenter: pass segmenter=None")
        return {**self.__dict__, "_seg": None}

    def setup(self) -> None:
        if self._seg is None:
            from medsam_agent_rt.segmenters import build_segmenter

            c = self.config
            self._seg = self.segmenter or build_segmenter(c.segmenter, c.backend, c.device)

    def run(self, ref: SampleRef) -> list[dict[str, Any]]:
        """[{"ledger": row, "messages": [...] or None}] for k in 0..per_sample-1."""
        from medsam_agent_rt.episode import Episode
        from medsam_agent_rt.policies.expert import ExpertPolicy
        from medsam_agent_rt.session_config import SessionConfig

        self.setup()
        c = self.config
        ids = [f"{ref.sample_id}#{k}" for k in range(c.per_sample)]
        base = {k: v for k, v in ref.info().items() if k != "source"}
        try:
            image, gt = ref.load()
        except (OSError, ValueError) as exc:
            err = f"{type(exc).__name__}: {exc}"
            return [_skip(i, k, base, "load_error", err) for k, i in enumerate(ids)]
        if not gt.any():
            return [_skip(i, k, base, "empty_gt") for k, i in enumerate(ids)]
        out = []
        for k, conv_id in enumerate(ids):
            cfg = SessionConfig(max_actions=c.max_actions, strategy=c.strategy)
            episode = Episode(
                self._seg, ExpertPolicy(c.expert_config(k)), cfg, tool_spec=c.segmenter
            )
            _, rec = episode.run(image, ref.description, gt, ref.sample_id)
            turns = turn_summaries(rec)
            final_iou = rec.final["iou"]
            reason = None
            if rec.end_reason not in ("stop", "budget"):
                reason = rec.end_reason
            elif final_iou < c.min_final_iou:
                reason = "low_iou"
            opening = (rec.turns[0].info.get("opening") if rec.turns else None) or None
            ledger = {
                "id": conv_id,
                "k": k,
                **base,
                "kept": reason is None,
                "reason": reason,
                "final_iou": final_iou,
                "final_dice": rec.final["dice"],
                "num_actions": len(rec.executed()),
                "opening": opening,
                "end_reason": rec.end_reason,
                "error": rec.error,
                "strategy": rec.strategy,
                "seed": c.seed + k,
                "turns": turns,
                "seconds": rec.totals.get("seconds", {}).get("episode"),
            }
            messages = rec.conversation(image) if reason is None else None
            out.append({"ledger": ledger, "messages": messages})
        return out


def _skip(conv_id: str, k: int, base: dict[str, Any], reason: str, error: str | None = None):
    row = {"id": conv_id, "k": k, **base, "kept": False, "reason": reason, "error": error}
    return {"ledger": {**row, "final_iou": None, "num_actions": 0, "turns": []}, "messages": None}


# ----------------------------------------------------------------------------- the run


_META_KEYS = (
    "index", "image_id", "site", "k", "seed", "final_iou", "final_dice", "num_actions",
    "opening", "end_reason", "strategy", "turns",
)  # fmt: skip


def _conversation_meta(ledger: dict[str, Any], config: TrajectoryConfig) -> dict[str, Any]:
    """The conversation's meta: the episode facts (no timings: the file stays deterministic)."""
    meta = {k: ledger[k] for k in _META_KEYS}
    meta["target_name"] = ledger["target"]
    meta["segmenter"] = config.segmenter
    meta["expert"] = asdict(config.expert_config(ledger["k"]))
    return meta


def _ledger_from_conversation(conv: dict[str, Any]) -> dict[str, Any]:
    """The ledger line of a written conversation (when a crash lost it)."""
    m = conv["meta"]
    return {
        "id": conv["id"],
        **{k: m.get(k) for k in _META_KEYS},
        "sample_id": conv.get("sample_id"),
        "dataset": conv.get("dataset"),
        "split": conv.get("split"),
        "target": m.get("target_name"),
        "description": conv.get("target"),
        "modality": conv.get("modality"),
        "kept": True,
        "reason": None,
        "error": None,
        "seconds": None,
    }


def _check_config(out: Path, config: dict[str, Any], overwrite: bool) -> None:
    path = out / "config.json"
    if path.is_file() and not overwrite:
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise ValueError(
                f"{out} holds trajectories generated with other parameters ({', '.join(diff)}); "
                "use another --out or --overwrite"
            )
    if overwrite:
        import shutil

        for name in (CONVERSATIONS, LEDGER, "stats.json", "config.json"):
            if (out / name).exists():
                (out / name).unlink()
        if (out / "images").is_dir():
            shutil.rmtree(out / "images")
    out.mkdir(parents=True, exist_ok=True)
    from medsam_agent_rt.evaluation.shards import write_json_atomic

    write_json_atomic(path, config)


def generate(
    config: TrajectoryConfig,
    out: str | Path,
    *,
    workers: int = 1,
    threads: int | None = 1,
    segmenter: Any = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Generate (or resume) the trajectories of ``config`` under ``out``; returns the stats.

    workers: spawned processes (1: in this process, where ``segmenter`` may be a ready
    Segmenter); threads: CPU threads per process (None: leave torch's default)."""
    from medsam_agent_rt.data._progress import progress

    out = Path(out)
    refs = resolve_run_samples(config)
    run_cfg = {**config.to_dict(), "n_samples": len(refs), "dataset_digest": dataset_digest(refs)}
    _check_config(out, run_cfg, overwrite)
    ledger_path, conv_path = out / LEDGER, out / CONVERSATIONS
    for p in (ledger_path, conv_path):
        repair_tail(p)
    done = {r["id"] for r in read_jsonl(ledger_path)} if ledger_path.is_file() else set()
    if conv_path.is_file():  # written conversation, ledger line lost in a crash: restore it
        for conv in iter_conversations(conv_path):
            if conv["id"] not in done:
                append_jsonl(ledger_path, _ledger_from_conversation(conv))
                done.add(conv["id"])
    n_ep = config.per_sample
    todo = [r for r in refs if any(f"{r.sample_id}#{k}" not in done for k in range(n_ep))]
    writer = ConversationWriter(out, CONVERSATIONS)
    runner = TrajectoryRunner(config, segmenter)
    bar = progress(len(refs), "trajectories", show_progress)
    bar.update(len(refs) - len(todo))
    fresh = not ledger_path.is_file()
    try:
        for results in map_groups(runner, group_by_image(todo), workers, threads):
            for episodes in results:
                for ep in episodes:
                    led = ep["ledger"]
                    if led["id"] in done:
                        continue
                    if ep["messages"] is not None:
                        writer.write(
                            led["id"],
                            ep["messages"],
                            meta=_conversation_meta(led, config),
                            sample_id=led["sample_id"],
                            target=led["description"],
                            modality=led["modality"],
                            dataset=led["dataset"],
                            split=led["split"],
                        )
                    append_jsonl(ledger_path, led)
                bar.update(1)
    except BaseException:
        if fresh and not ledger_path.is_file() and not conv_path.is_file():  # nothing done
            (out / "config.json").unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    stats = trajectory_stats(read_jsonl(ledger_path), run_cfg)
    from medsam_agent_rt.evaluation.shards import write_json_atomic

    write_json_atomic(out / "stats.json", stats)
    return stats


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m medsam_agent_rt.training.trajectories",
        description=__doc__.split("\n\n")[0],
    )
    for f in fields(TrajectoryConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if "tuple" in kind:
            p.add_argument(flag, default=None, help=f.metadata["help"] + "; comma-separated")
        elif f.name == "dataset":
            p.add_argument(flag, required=True, help=f.metadata["help"])
        else:
            typ = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(flag, type=typ, default=f.default, help=f.metadata["help"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process (1)")
    p.add_argument("--overwrite", action="store_true", help="discard earlier output in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kw = {}
    for f in fields(TrajectoryConfig):
        v = getattr(args, f.name)
        if "tuple" in str(f.type) and v is not None:
            v = tuple(x.strip() for x in v.split(",") if x.strip())
        kw[f.name] = v
    try:
        stats = generate(
            TrajectoryConfig(**kw),
            args.out,
            workers=args.workers,
            threads=args.threads,
            overwrite=args.overwrite,
            show_progress=not args.no_progress,
        )
    except (ValueError, FileNotFoundError, NotImplementedError) as exc:
        print(f"trajectories: {exc}", file=sys.stderr)
        return 1
    e, a = stats["episodes"], stats["acceptance"]
    print(
        f"{e['kept']} of {e['total']} episodes kept ({e['filtered']}); acceptance "
        f"{a['rate'] if a['rate'] is None else round(a['rate'], 3)}; mean final IoU (kept) "
        f"{stats['final_iou']['kept']['mean']}; {args.out}/{CONVERSATIONS}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
