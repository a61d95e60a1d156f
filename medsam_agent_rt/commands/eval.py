"""``medsam-agent eval``: evaluate a policy + segmenter on a dataset; merge shards.

medsam-agent eval --dataset PATH|demo|phantoms:... --policy SPEC [--segmenter SPEC]
                  [--backend torch|auto|onnx|openvino|trt] [--limit N] [--workers W] [--max-turns N] --out DIR
medsam-agent eval merge DIR... [--out DIR]
medsam-agent eval table [LABEL=]DIR... [--metric dice|iou]   (one table comparing runs)

Under torchrun (RANK / WORLD_SIZE set) each rank writes its shard to DIR; merge them afterwards.
"""

from __future__ import annotations

import argparse
import sys

from medsam_agent_rt.commands import _exit
from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER

NAME = "eval"
HELP = "Evaluate a policy with a segmenter on a dataset (results.json, results.md, plots)."


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def configure(p: argparse.ArgumentParser) -> None:
    from medsam_agent_rt.segmenters.registry import BACKENDS

    p.epilog = _exit.EPILOG
    p.description = (
        "Evaluate a policy driving a segmenter on every sample of a dataset and write "
        "OUT/results.json (per-sample, per-class, per-dataset, per-modality Dice/IoU, per-round "
        "curves, actions, end reasons, NoC/mIoU@k for click policies, timings, config), "
        "results.md and plots. 'eval merge DIR...' merges the shards of a multi-rank run."
    )
    p.add_argument(
        "merge",
        nargs="*",
        metavar="merge|table DIR",
        help="'merge DIR...': merge the shards under DIR...; 'table [LABEL=]DIR...': compare the "
        "results.json of several runs in one Markdown table (per modality)",
    )
    p.add_argument("--metric", default="dice", choices=("dice", "iou"), help="for 'table'")
    p.add_argument("--dataset", help="dataset folder, 'demo' or 'phantoms:n=8,size=256,...'")
    p.add_argument(
        "--policy",
        help="policy spec: oracle-box, clicker:K, expert[:k=v,...], a model dir, an http URL",
    )
    p.add_argument(
        "--segmenter",
        default=DEFAULT_SEGMENTER,
        help=f"segmenter spec (default {DEFAULT_SEGMENTER})",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="default torch (the reference the recorded evaluations used); auto: the runtime's "
        "default (`medsam-agent info`)",
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda (cuda:LOCAL_RANK under torchrun)")
    p.add_argument("--strategy", default=None, help="prompt carrying strategy (default: family's)")
    p.add_argument("--max-turns", type=int, default=5, help="executed actions per episode (5)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    p.add_argument("--splits", type=_names, default=None, help="comma-separated splits to keep")
    p.add_argument("--datasets", type=_names, default=None, help="comma-separated datasets")
    p.add_argument("--modalities", type=_names, default=None, help="comma-separated modalities")
    p.add_argument("--workers", type=int, default=1, help="processes for this rank (default 1)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per process (default 1: no oversubscription; 0: torch default)",
    )
    p.add_argument("--rank", type=int, default=None, help="shard rank (default $RANK or 0)")
    p.add_argument("--world-size", type=int, default=None, help="shards (default $WORLD_SIZE)")
    p.add_argument("--out", help="output folder (results, shards); for merge: default first DIR")
    p.add_argument("--overwrite", action="store_true", help="discard this rank's earlier shard")
    p.add_argument("--no-records", action="store_true", help="do not store episode records")
    p.add_argument("--gallery", type=int, default=3, help="best/worst strips to draw (3; 0: none)")
    p.add_argument("--no-report", action="store_true", help="results.json only (no md, no plots)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--volume-mode",
        choices=("propagate", "slices"),
        default="propagate",
        help="volume datasets (a 'data sequences' folder, 'sequences:n=2,...'): the agent on the "
        "largest-GT slice + propagation (default), or one episode per GT slice",
    )


def _print_summary(results: dict, out: str) -> None:
    m = results["metrics"]
    print(
        f"{m['n_evaluated']} samples evaluated ({sum(m['skipped'].values())} skipped): "
        f"mean Dice {m['mean']['dice']:.4f}, IoU {m['mean']['iou']:.4f}, "
        f"mean actions {m['actions']['mean']:.2f}"
    )
    for name, g in m["per_modality"].items():
        print(f"  {name:<14} n={g['n']:<4} Dice {g['dice']:.4f}  IoU {g['iou']:.4f}")
    if m.get("click"):
        c = m["click"]
        print("  " + ", ".join(f"NoC@{k} {v:.2f}" for k, v in c["noc"].items()))
    print(f"results: {out}/results.json")


def _table(dirs: list[str], metric: str) -> int:
    import json
    from pathlib import Path

    from medsam_agent_rt.evaluation.report import comparison_markdown

    runs = []
    for arg in dirs:
        label, sep, d = arg.partition("=")
        if not sep or Path(arg).exists():  # LABEL=DIR names the column
            label, d = "", arg
        path = Path(d) / "results.json"
        if not path.is_file():
            print(
                f"eval table: {path} not found (run or merge the evaluation first)", file=sys.stderr
            )
            return _exit.USAGE
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"eval table: {path}: unreadable results ({exc})", file=sys.stderr)
            return _exit.USAGE
        runs.append((label or f"`{results['config']['policy']}`", results))
    print(comparison_markdown(runs, metric), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    from medsam_agent_rt.evaluation import EvalConfig, evaluate, merge

    words = list(args.merge)
    if words and words[0] == "table" and len(words) > 1:
        return _table(words[1:], args.metric)
    if words:
        if words[0] != "merge" or len(words) < 2:
            print(
                "usage: medsam-agent eval merge DIR... [--out DIR] | eval table DIR...",
                file=sys.stderr,
            )
            return _exit.USAGE
        try:
            results = merge(
                words[1:], args.out, report=not args.no_report, gallery=max(0, args.gallery)
            )
        except (ValueError, OSError, KeyError) as exc:
            print(f"eval merge: {exc}", file=sys.stderr)
            return _exit.USAGE
        _print_summary(results, args.out or words[1])
        return _failures(results)
    missing = [f"--{n}" for n in ("dataset", "policy", "out") if not getattr(args, n)]
    if missing:
        print(f"eval: {', '.join(missing)} required", file=sys.stderr)
        return _exit.USAGE
    from medsam_agent_rt.evaluation.volumes import is_volume_dataset

    if is_volume_dataset(args.dataset):
        return _volumes(args)
    try:
        config = EvalConfig(
            dataset=args.dataset,
            policy=args.policy,
            segmenter=args.segmenter,
            backend=args.backend,
            device=args.device,
            strategy=args.strategy,
            max_turns=args.max_turns,
            limit=args.limit,
            splits=args.splits,
            datasets=args.datasets,
            modalities=args.modalities,
            keep_records=not args.no_records,
        )
        results = evaluate(
            config,
            args.out,
            workers=args.workers,
            threads=args.threads,
            rank=args.rank,
            world_size=args.world_size,
            overwrite=args.overwrite,
            show_progress=not args.no_progress,
            report=not args.no_report,
            gallery=max(0, args.gallery),
        )
    except (ValueError, OSError, NotImplementedError) as exc:  # bad spec, dataset, --out
        print(f"eval: error: {exc}", file=sys.stderr)
        return _exit.USAGE
    except Exception as exc:  # noqa: BLE001 - e.g. a model that fails to load: no traceback
        print(f"eval: error: the evaluation failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return _exit.FAILED
    if results is None:
        print(f"shard written under {args.out}/shards; merge with: medsam-agent eval merge DIR...")
        return _exit.OK
    _print_summary(results, args.out)
    return _failures(results)


def _failures(results: dict) -> int:
    """FAILED (with one stderr line) when some samples' episodes raised, else OK."""
    from medsam_agent_rt.evaluation.shards import FAILED

    failed = [s for s in results.get("samples", []) if s.get("skipped") == FAILED]
    if not failed:
        return _exit.OK
    print(
        f"eval: {len(failed)} sample(s) failed and were recorded with their error (first: "
        f"index {failed[0].get('index')}: {str(failed[0].get('error'))[:300]}); re-run the same "
        "command to retry them",
        file=sys.stderr,
    )
    return _exit.FAILED


def _volumes(args: argparse.Namespace) -> int:
    """3-D evaluation of a volume dataset (``evaluation.volumes``): results.json, results.md."""
    from pathlib import Path

    from medsam_agent_rt.evaluation.shards import write_json_atomic
    from medsam_agent_rt.evaluation.volumes import evaluate_volumes, results_markdown
    from medsam_agent_rt.io import atomic_write_bytes
    from medsam_agent_rt.policies import build_policy
    from medsam_agent_rt.segmenters import build_segmenter
    from medsam_agent_rt.session_config import SessionConfig

    def show(row: dict) -> None:
        if row.get("skipped"):
            print(f"  {row['volume']} {row['target']}: skipped ({row['skipped']})")
        else:
            nsd = "-" if row["nsd"] is None else f"{row['nsd']:.4f}"
            print(
                f"  {row['volume']} {row['target']}: 3-D Dice {row['dice_3d']:.4f}, NSD {nsd}, "
                f"{row['episodes']} episode(s), {row['seconds']:.2f} s"
            )

    try:
        config = SessionConfig(max_actions=args.max_turns, strategy=args.strategy)
        segmenter = build_segmenter(args.segmenter, backend=args.backend, device=args.device)
        policy = build_policy(args.policy)
        results = evaluate_volumes(
            args.dataset, segmenter, policy, config, args.volume_mode, args.limit, on_row=show
        )
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "results.json", results)
        atomic_write_bytes(out / "results.md", results_markdown(results).encode())
    except (ValueError, OSError, ImportError) as exc:  # bad spec, dataset, --out
        print(f"eval: error: {exc}", file=sys.stderr)
        return _exit.USAGE
    m = results["metrics"]
    mean = m["mean"]
    print(
        f"{m['n_evaluated']} volume(s) evaluated ({m['n_skipped']} skipped), mode "
        f"{args.volume_mode}: mean 3-D Dice {mean['dice_3d'] or 0:.4f}, NSD@"
        f"{m['nsd_tolerance_mm']:g}mm {mean['nsd'] or 0:.4f}, {mean['seconds'] or 0:.2f} s per volume"
    )
    print(f"results: {args.out}/results.json")
    return _exit.OK
