"""Per-frame propagation latency and memory over a long stream (must stay flat with length).

    python -m benchmarks.propagation --frames 200 [--tracker box|sam2] [--out rows.jsonl]

box: the embedded LiteMedSAM with box-from-previous-mask propagation (real weights);
sam2: the SAM2 memory tracker with RANDOM Hiera-T weights at --size (512 or 1024; timing only,
no real checkpoint here). The stream is a phantom video (``data.sequences.phantom_video``)
looped to --frames. One JSON row per tracker: per-frame latency (ms) mean / p50 / p90 over the
first and the last quarter, and the process RSS (MB) after the first and the last quarter; flat
means last/first ratios near 1.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(tracker_name: str, frames: int, size: int, image_px: int) -> dict:
    from medsam_agent_rt.data.sequences import phantom_video

    vid = phantom_video(0, 16, image_px)
    if tracker_name == "box":
        from medsam_agent_rt.propagation import BoxTracker
        from medsam_agent_rt.segmenters import build_segmenter

        tracker = BoxTracker(build_segmenter("litemedsam", cache_size=2))
    else:
        from medsam_agent_rt.segmenters.sam2.config import preset
        from medsam_agent_rt.segmenters.sam2.model import Sam2Model
        from medsam_agent_rt.segmenters.sam2.tracking import Sam2Tracker

        name = "medsam2_512" if size == 512 else "sam2.1_hiera_tiny"
        tracker = Sam2Tracker(Sam2Model(preset(name)))
    tracker.start(vid.frames[0], vid.masks["polyp"][0])
    q = max(frames // 4, 1)
    lat, rss = [], []
    for i in range(frames):
        t = time.perf_counter()
        tracker.step(vid.frames[1 + i % 15])
        lat.append((time.perf_counter() - t) * 1e3)
        if i in (q - 1, frames - 1):
            rss.append(_rss_mb())
    first, last = np.array(lat[:q]), np.array(lat[-q:])
    return {
        "tracker": tracker_name,
        "frames": frames,
        "image_px": image_px,
        "model_size": size if tracker_name == "sam2" else 256,
        "first_quarter_ms": {k: round(float(f(first)), 1) for k, f in _STATS.items()},
        "last_quarter_ms": {k: round(float(f(last)), 1) for k, f in _STATS.items()},
        "latency_ratio_last_first": round(float(last.mean() / first.mean()), 3),
        "rss_mb_first_quarter": round(rss[0], 1),
        "rss_mb_end": round(rss[-1], 1),
    }


_STATS = {"mean": np.mean, "p50": np.median, "p90": lambda a: np.percentile(a, 90)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--tracker", choices=("box", "sam2"), action="append")
    p.add_argument("--size", type=int, default=512, help="SAM2 input size (512 or 1024)")
    p.add_argument("--image-px", type=int, default=128)
    p.add_argument("--out", default=None, help="append JSON rows to this file")
    args = p.parse_args(argv)
    for name in args.tracker or ["box", "sam2"]:
        row = run(name, args.frames, args.size, args.image_px)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
