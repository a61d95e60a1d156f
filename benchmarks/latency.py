"""Latency of whole agent episodes, stage by stage (measurements, not tests).

    python -m benchmarks.latency [--data DIR] [--limit N] [--repeats R] [--warmup W]
        [--backend auto [torch onnx openvino trt ...]] [--policy expert [default clicker:3 ...]]
        [--segmenter litemedsam-click] [--device cpu] [--max-turns 5] [--json PATH]
    python -m benchmarks.latency --propagation [-- --frames 200 ...]   (benchmarks.propagation)

With no arguments it runs the embedded defaults: LiteMedSAM on the default backend ("auto": the
shipped graphs on OpenVINO / ONNX Runtime on a CPU, ``build_segmenter``) driven by
the expert policy, one episode per image of the shared demo set (its first target, images
loaded beforehand), and prints per-stage medians. The demo set is --data DIR, or
$MSRT_SHARED_DATA/biomedparse-demo, or shared/data/biomedparse-demo beside the checkout.

Stages (seconds; the JSON also has p90 and counts):
  load_first   the first build_segmenter of the run (model + weights + imports)
  load         build_segmenter again (model construction + weights), median of --load-repeats
  encode       the image encoder, once per episode (the embedding cache is off)
  policy       one policy call, minus the segmenter calls a GT-driven policy makes inside it
  tool         the segmenter calls of one turn (the expert's previews included): prompt
               encoding + mask decoder, without post-processing
  postprocess  ops.postprocess_masks of those calls (low-res logits -> full-size mask)
  render       the green overlay for the next observation (executed actions only)
  stats        mask area, components and Dice/IoU of an executed action
  tool_call / postprocess_call   the same for one single segmenter call
  episode      one whole episode as the Episode measures it (encode + all turns + clean-up)
policy / tool / postprocess are per policy call ("turn"), stop turns included.

Host <-> device bytes per turn (``medsam_agent_rt.transfers.METER``: every explicit copy between
host memory and a GPU, image upload included, divided by the policy calls): 0 on a CPU tool; on
a CUDA tool the 512 view per executed turn, the recorded masks and the final mask.

Each configuration (segmenter, backend, policy, device) is one row: --backend torch onnx gives
two rows, --policy expert clicker:3 two more. A backend that is not available yields a row with
its error instead of numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import _timing
from benchmarks._demo import demo_root
from benchmarks._probes import Clock, TimedPolicy, TimedSegmenter, timed_postprocess, turn_stages
from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER

REPO = Path(__file__).resolve().parents[1]
TURN_STAGES = ("policy", "tool", "postprocess", "render", "stats")
STAGES = ("load_first", "load", "encode", *TURN_STAGES, "tool_call", "postprocess_call", "episode")


@dataclass(frozen=True)
class Config:
    """One row of the benchmark."""

    segmenter: str = DEFAULT_SEGMENTER
    backend: str = "auto"
    policy: str = "expert"
    device: str = "cpu"

    @property
    def name(self) -> str:
        return f"{self.segmenter} / {self.backend} / {self.device} / {self.policy}"


# ----------------------------------------------------------------------------- data
def load_samples(root: Path, limit: int | None) -> list[tuple[str, str, Any, Any]]:
    """[(image id, target description, RGB uint8, GT bool)]: the first target of each image."""
    from medsam_agent_rt.data import read_demo

    first: dict[str, Any] = {}
    for s in read_demo(root):
        first.setdefault(s.image_id, s)
    chosen = list(first.values())[:limit] if limit else list(first.values())
    return [(s.image_id, s.description, *s.load()) for s in chosen]


# ----------------------------------------------------------------------------- measuring
def summarize(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "p90": None, "n": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"median": statistics.median(ordered), "p90": p90, "n": len(ordered)}


class Tally:
    """The samples of one row: per-stage durations, episode counts, final Dice values."""

    def __init__(self, loads: list[float]) -> None:
        self.stages: dict[str, list[float]] = {k: [] for k in STAGES}
        self.stages["load_first"], self.stages["load"] = loads[:1], loads[1:] or loads[:1]
        self.counts: dict[str, Any] = {
            "episodes": 0, "turns": 0, "actions": 0, "tool_calls": 0, "end_reasons": {},
            "h2d_bytes": 0, "d2h_bytes": 0,
        }  # fmt: skip
        self.dice: list[float] = []

    def add(
        self,
        rec: Any,
        policy: TimedPolicy,
        clock: Clock,
        marks: dict[str, int],
        moved: tuple[int, int] = (0, 0),
    ) -> None:
        """One finished episode; ``marks``: len(clock.each[stage]) when it started; ``moved``:
        the (host -> device, device -> host) bytes it copied."""
        for turn in turn_stages(policy, clock, rec):
            for stage in TURN_STAGES:
                if turn[stage] is not None:
                    self.stages[stage].append(turn[stage])
        new = {k: clock.each[k][n:] for k, n in marks.items()}
        self.stages["encode"] += new["encode"]
        self.stages["postprocess_call"] += new["postprocess"]
        if len(new["postprocess"]) == len(new["predict"]):
            pairs = zip(new["predict"], new["postprocess"])
            self.stages["tool_call"] += [p - q for p, q in pairs]
        self.stages["episode"].append(rec.totals["seconds"]["episode"])
        c = self.counts
        c["episodes"] += 1
        c["turns"] += len(rec.turns)
        c["actions"] += rec.totals["actions"]
        c["tool_calls"] += len(new["predict"])
        c["h2d_bytes"] += moved[0]
        c["d2h_bytes"] += moved[1]
        c["end_reasons"][rec.end_reason] = c["end_reasons"].get(rec.end_reason, 0) + 1
        if rec.final.get("dice") is not None:
            self.dice.append(rec.final["dice"])


def measure(cfg: Config, samples: list, args: argparse.Namespace) -> dict[str, Any]:
    """Run one configuration; returns its row (stages, counts) or its error."""
    from tqdm import tqdm

    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.policies import build_policy
    from medsam_agent_rt.segmenters import build_segmenter
    from medsam_agent_rt.session_config import SessionConfig
    from medsam_agent_rt.transfers import METER

    row: dict[str, Any] = {"name": cfg.name, "config": asdict(cfg), "status": "ok"}
    loads = []
    try:
        for _ in range(max(1, args.load_repeats)):
            t0 = time.perf_counter()
            seg = build_segmenter(cfg.segmenter, cfg.backend, cfg.device, cache_size=0)
            loads.append(time.perf_counter() - t0)
        inner = build_policy(cfg.policy)  # built once; reset() starts each episode
    except Exception as exc:  # noqa: BLE001 - a backend / policy not available is a row too
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
        return row
    clock = Clock()
    seg = TimedSegmenter(seg, clock)
    session_cfg = SessionConfig(max_actions=args.max_turns)
    tally = Tally(loads)
    runs = [samples[0]] * args.warmup + samples * args.repeats
    try:
        with timed_postprocess(clock):
            for i, (image_id, target, image, gt) in enumerate(
                tqdm(runs, desc=cfg.name, file=sys.stderr, disable=args.quiet)
            ):
                policy = TimedPolicy(inner, clock)
                marks = {s: len(clock.each[s]) for s in ("encode", "predict", "postprocess")}
                before = METER.snapshot()
                _, rec = Episode(seg, policy, session_cfg).run(image, target, gt, image_id)
                after = METER.snapshot()
                if i >= args.warmup:
                    moved = (after[0] - before[0], after[1] - before[1])
                    tally.add(rec, policy, clock, marks, moved)
    except Exception as exc:  # noqa: BLE001 - e.g. a policy server went down: report, go on
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
        return row
    if tally.counts["tool_calls"] and not tally.stages["postprocess_call"]:
        row["note"] = "post-processing is not separable for this backend (inside 'tool')"
        tally.stages["postprocess"] = []
    row["stages"] = {k: summarize(v) for k, v in tally.stages.items()}
    row["counts"] = tally.counts
    row["mean_final_dice"] = statistics.fmean(tally.dice) if tally.dice else None
    return row


# ----------------------------------------------------------------------------- report
def stage_table(row: dict[str, Any]) -> str:
    lines = [f"### {row['name']}", "", "| stage | median | p90 | n |", "|---|---:|---:|---:|"]
    for stage in STAGES:
        s = row["stages"][stage]
        med, p90 = s["median"], s["p90"]
        fmt = _timing.fmt_seconds
        lines.append(
            f"| {stage} | {'-' if med is None else fmt(med)} | "
            f"{'-' if p90 is None else fmt(p90)} | {s['n']} |"
        )
    c = row["counts"]
    per = c["turns"] / max(c["episodes"], 1)
    lines.append("")
    lines.append(
        f"{c['episodes']} episodes, {per:.1f} policy calls and "
        f"{c['tool_calls'] / max(c['episodes'], 1):.1f} segmenter calls per episode, "
        f"{c['actions']} actions; end reasons {c['end_reasons']}"
        + (f"; mean final Dice {row['mean_final_dice']:.3f}" if row["mean_final_dice"] else "")
    )
    h2d, d2h = bytes_per_turn(row)
    lines.append(f"host <-> device bytes per turn: {h2d:,.0f} to the device, {d2h:,.0f} back")
    if row.get("note"):
        lines.append(f"note: {row['note']}")
    return "\n".join(lines)


def bytes_per_turn(row: dict[str, Any]) -> tuple[float, float]:
    """(host -> device, device -> host) bytes per policy call of a row (0 on a CPU tool)."""
    c = row["counts"]
    turns = max(c["turns"], 1)
    return c["h2d_bytes"] / turns, c["d2h_bytes"] / turns


def comparison_table(rows: list[dict[str, Any]]) -> str:
    cols = ("load", "encode", "policy", "tool", "postprocess", "render", "episode")
    lines = [
        "| configuration | " + " | ".join(cols) + " | host<->device bytes / turn |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['name']} | not available: {row['error']} |")
            continue
        cells = []
        for c in cols:
            med = row["stages"][c]["median"]
            cells.append("-" if med is None else _timing.fmt_seconds(med))
        h2d, d2h = bytes_per_turn(row)
        cells.append(f"{h2d + d2h:,.0f}")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    from medsam_agent_rt import build_info

    env: dict[str, Any] = {"build": build_info(), "load_average": list(os.getloadavg())}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        env["cpu_model"] = names[0] if names else None
    except OSError:
        env["cpu_model"] = None
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")
    try:
        import torch

        env["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads()}
    except ImportError:
        env["torch"] = None
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", help="demo folder (demo/ + demo_mask/); default: the shared copy")
    ap.add_argument("--limit", type=int, default=None, help="first N images (default: all)")
    ap.add_argument("--repeats", type=int, default=1, help="passes over the images (default 1)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed episodes first (default 1)")
    ap.add_argument("--load-repeats", type=int, default=3, help="segmenter builds (default 3)")
    ap.add_argument("--backend", nargs="+", default=["auto"], help="one row per backend")
    ap.add_argument("--policy", nargs="+", default=["expert"], help="one row per policy spec")
    ap.add_argument(
        "--segmenter",
        default=DEFAULT_SEGMENTER,
        help=f"default: the package's ({DEFAULT_SEGMENTER})",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-turns", type=int, default=5, help="actions per episode (default 5)")
    ap.add_argument("--json", default="", help="also write the results as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument(
        "--policy-turns",
        action="store_true",
        help="instead: policy latency per turn k=1..5, GGUF (KV cache kept) vs llama-cpp-python's "
        "chat handler vs hf (benchmarks.policy_latency; its options follow --)",
    )
    ap.add_argument(
        "--propagation",
        action="store_true",
        help="instead: per-frame propagation latency and memory over a 200-frame stream per "
        "family and backend, and 3-D Dice / time per volume, propagation vs slice-by-slice "
        "(benchmarks.propagation; its options follow --)",
    )
    args, rest = ap.parse_known_args(argv)
    if args.propagation:
        from benchmarks import propagation

        return propagation.main(
            [a for a in rest if a != "--"] + (["--json", args.json] if args.json else [])
        )
    if args.policy_turns:
        from benchmarks import policy_latency

        forwarded = ["--repeats", str(args.repeats)]  # rounds over the policies there
        forwarded += ["--json", args.json] if args.json else []
        return policy_latency.main([a for a in rest if a != "--"] + forwarded)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.repeats < 1 or args.warmup < 0 or args.max_turns < 1 or (args.limit or 1) < 1:
        ap.error("--repeats, --max-turns and --limit must be >= 1 and --warmup >= 0")

    root = demo_root(args.data, "latency")
    samples = load_samples(root, args.limit)
    if not samples:
        raise SystemExit(f"latency: no image with a mask in {root}")
    configs = [
        Config(args.segmenter, backend, policy, args.device)
        for backend in args.backend
        for policy in args.policy
    ]
    env_start = environment()
    rows = [measure(cfg, samples, args) for cfg in configs]
    load_end = list(os.getloadavg())

    print(
        f"latency: {len(samples)} demo images x {args.repeats} repeat(s) from {root}; "
        f"load average {env_start['load_average'][0]:.2f} at start, {load_end[0]:.2f} at end "
        f"({os.cpu_count()} CPUs, torch threads {(env_start['torch'] or {}).get('threads')})\n"
    )
    for row in rows:
        if row["status"] == "ok":
            print(stage_table(row) + "\n")
    print(comparison_table(rows))
    if args.json:
        payload = {
            "benchmark": "latency",
            "version": 1,
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "data": {"root": str(root), "images": [s[0] for s in samples]},
            "stages": list(STAGES),
            "environment": {**env_start, "load_average_end": load_end},
            "rows": rows,
        }
        _timing.write_json(args.json, payload)
        print(f"\nwrote {args.json}")
    return 0 if any(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
