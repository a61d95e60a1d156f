"""Propagation benchmarks (measurements, not tests); also ``python -m benchmarks.latency
--propagation -- ARGS``.

    python -m benchmarks.propagation [--frames 200] [--window 50] [--stream box-torch ...]
        [--volumes 2] [--depth 16] [--size 96] [--threads 1] [--json PATH]

1. Streams: per-frame latency of ``tracker.step`` over a --frames stream (a phantom video,
   ``data.sequences.phantom_video`` at --image-px, looped), per family and backend:
   ``box-torch`` / ``box-onnx`` (embedded LiteMedSAM, real weights, box from the previous mask;
   onnx: the export made once into --export), ``sam2-torch`` (SAM2's memory tracker, RANDOM
   Hiera-T weights at 512 px: timing only). Rows: mean / p50 / p90 ms over the first and the last
   --window frames, their ratio, and the process RSS after the first window, at the end and
   its peak (MB): flat means ratios near 1. SAM2's memory tracker has no ONNX graph (only the
   image encoder and the mask decoder are exported), so there is no ``sam2-onnx`` row.
2. Volumes: 3-D Dice, NSD at 2 mm and seconds per volume on --volumes phantom volumes
   (``evaluation.volumes``, target "organ", oracle-box policy, embedded LiteMedSAM): the agent
   on the largest-GT slice + propagation vs one agent episode per GT slice.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STREAMS = ("box-torch", "box-onnx", "sam2-torch")
_STATS = {"mean": np.mean, "p50": np.median, "p90": lambda a: np.percentile(a, 90)}


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _export_dir(path: Path) -> Path:
    """The LiteMedSAM ONNX export (fp32), made once."""
    from medsam_agent_rt.segmenters.exported import is_export_dir

    if not is_export_dir(path):
        from medsam_agent_rt.export.sam_onnx import export_sam

        from medsam_agent_rt.segmenters.checkpoints import load_embedded_litemedsam

        path.parent.mkdir(parents=True, exist_ok=True)
        export_sam(load_embedded_litemedsam(), "litemedsam", path, ("fp32",), overwrite=True)
    return path


def make_tracker(stream: str, export: Path, threads: int):
    from medsam_agent_rt.propagation import BoxTracker
    from medsam_agent_rt.segmenters import build_segmenter

    if stream == "box-torch":
        return BoxTracker(build_segmenter("litemedsam", cache_size=2))
    if stream == "box-onnx":
        seg = build_segmenter(
            str(_export_dir(export)), backend="onnx", intra_op_threads=threads, cache_size=2
        )
        return BoxTracker(seg)
    from medsam_agent_rt.segmenters.sam2.config import preset
    from medsam_agent_rt.segmenters.sam2.model import Sam2Model
    from medsam_agent_rt.segmenters.sam2.tracking import Sam2Tracker

    return Sam2Tracker(Sam2Model(preset("medsam2_512")))


def stream_row(stream: str, frames: int, window: int, image_px: int, export: Path, threads: int):
    """One stream row (module docstring)."""
    from medsam_agent_rt.data.sequences import phantom_video

    vid = phantom_video(0, 16, image_px)
    t0 = time.perf_counter()
    tracker = make_tracker(stream, export, threads)
    build_s = time.perf_counter() - t0
    tracker.start(vid.frames[0], vid.masks["polyp"][0])
    window = max(1, min(window, frames // 2))
    lat, rss_first = [], None
    for i in range(frames):
        t = time.perf_counter()
        tracker.step(vid.frames[1 + i % 15])
        lat.append((time.perf_counter() - t) * 1e3)
        if i == window - 1:
            rss_first = _rss_mb()
    first, last = np.array(lat[:window]), np.array(lat[-window:])
    return {
        "kind": "stream",
        "stream": stream,
        "frames": frames,
        "window": window,
        "image_px": image_px,
        "build_s": round(build_s, 2),
        "first_ms": {k: round(float(f(first)), 1) for k, f in _STATS.items()},
        "last_ms": {k: round(float(f(last)), 1) for k, f in _STATS.items()},
        "ratio_last_first_p50": round(float(np.median(last) / np.median(first)), 3),
        "rss_mb_after_first_window": round(rss_first, 1),
        "rss_mb_end": round(_rss_mb(), 1),
        "rss_mb_peak": round(_peak_rss_mb(), 1),
        "ms_per_frame": [round(v, 1) for v in lat],
    }


def volume_rows(n: int, depth: int, size: int, max_turns: int) -> list[dict]:
    """Propagation vs slice-by-slice agent episodes (module docstring)."""
    from medsam_agent_rt.evaluation.volumes import evaluate_volumes
    from medsam_agent_rt.policies import build_policy
    from medsam_agent_rt.segmenters import build_segmenter
    from medsam_agent_rt.session_config import SessionConfig

    seg = build_segmenter("litemedsam", cache_size=2)
    spec = f"sequences:n={n},depth={depth},size={size},targets=organ"
    rows = []
    for mode in ("propagate", "slices"):
        res = evaluate_volumes(
            spec, seg, build_policy("oracle-box"), SessionConfig(max_actions=max_turns), mode
        )
        rows.append(
            {"kind": "volume", "dataset": spec, "mode": mode, **res["metrics"], "rows": res["rows"]}
        )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown tables of the stream and volume rows."""
    out = []
    streams = [r for r in rows if r["kind"] == "stream"]
    if streams:
        out += [
            "| stream | frames | first window ms (mean / p50) | last window ms (mean / p50) | "
            "p50 last/first | RSS MB after 1st window -> end (peak) |",
            "|---|---|---|---|---|---|",
        ]
        for r in streams:
            f, la = r["first_ms"], r["last_ms"]
            out.append(
                f"| {r['stream']} | {r['frames']} (windows of {r['window']}) | "
                f"{f['mean']:,.0f} / {f['p50']:,.0f} | {la['mean']:,.0f} / {la['p50']:,.0f} | "
                f"{r['ratio_last_first_p50']:.2f} | {r['rss_mb_after_first_window']:,.0f} -> "
                f"{r['rss_mb_end']:,.0f} ({r['rss_mb_peak']:,.0f}) |"
            )
    vols = [r for r in rows if r["kind"] == "volume"]
    if vols:
        out += [
            "",
            "| volumes | mode | 3-D Dice | NSD@2mm | agent episodes / volume | s / volume |",
            "|---|---|---|---|---|---|",
        ]
        for r in vols:
            m = r["mean"]
            out.append(
                f"| {r['n_evaluated']} x {r['dataset']} | {r['mode']} | {m['dice_3d']:.4f} | "
                f"{m['nsd']:.4f} | {m['episodes']:.1f} | {m['seconds']:.1f} |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=200, help="stream length (default 200)")
    p.add_argument("--window", type=int, default=50, help="first/last frames compared (50)")
    p.add_argument("--stream", nargs="*", choices=STREAMS, default=list(STREAMS))
    p.add_argument("--frames-sam2", type=int, default=None, help="stream length for sam2-torch")
    p.add_argument("--image-px", type=int, default=128)
    p.add_argument("--export", default=str(REPO / "out" / "propagation-export"))
    p.add_argument("--volumes", type=int, default=2, help="phantom volumes (0: no volume rows)")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--max-turns", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch / ORT threads (default 1)")
    p.add_argument("--json", default="", help="write the rows here (JSON)")
    args = p.parse_args(argv)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    rows = []

    def save() -> None:
        if args.json:
            payload = {
                "benchmark": "propagation",
                "config": vars(args),
                "rows": rows,
                "load_average": list(os.getloadavg()),
            }
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")

    for stream in args.stream:
        frames = args.frames_sam2 if stream == "sam2-torch" and args.frames_sam2 else args.frames
        window = min(args.window, frames // 2)
        row = stream_row(stream, frames, window, args.image_px, Path(args.export), args.threads)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "ms_per_frame"}), flush=True)
        save()
    if args.volumes > 0:
        for row in volume_rows(args.volumes, args.depth, args.size, args.max_turns):
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "rows"}), flush=True)
            save()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
