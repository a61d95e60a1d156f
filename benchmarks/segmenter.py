"""Segmenter speed per backend (a measurement, not a test).

    python -m benchmarks.segmenter [--json PATH] [--export DIR] [--threads N] [--repeats N]

Rows: every backend that can run here — torch FP32, ONNX Runtime FP32 and FP16 (CPU provider),
TensorRT FP32 / FP16 where TensorRT and a GPU exist. Adding a backend is one more entry in
:data:`BACKENDS`. Per row, medians of repeated runs on a real demo image (LiteMedSAM):

- ``encoder``: ``set_image`` of an image not in the cache (preprocessing + image encoder);
- ``decoder``: one ``predict`` turn (box + 2 clicks + previous logits: fusion, decoder,
  post-processing to 1024 x 1024);
- ``episode cached``: a 5-turn episode (box, then 4 clicks, ``segmenters.PromptChain``) with the
  embedding computed once — what this runtime does;
- ``episode re-encode``: the same 5 turns re-encoding the image before every turn — what the
  MedSAM-Agent authors' RL server did; ``speed-up`` = re-encode / cached.

The ONNX export of LiteMedSAM is made once into ``--export`` (default out/segmenter-export) and
reused. Threads: torch and ONNX Runtime both get ``--threads`` (default: all cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._demo import demo_root
from benchmarks._timing import fmt_seconds, write_json
from medsam_agent_rt.segmenters import PromptChain, build_segmenter

REPO = Path(__file__).resolve().parents[1]
DEMO_IMAGE = "06_CT_abdomen"
BOX = np.array([400.0, 500.0, 600.0, 640.0])
CLICKS = [
    ((500.0, 560.0), True),
    ((430.0, 520.0), False),
    ((560.0, 600.0), True),
    ((450.0, 610.0), False),
]


def _export_dir(path: Path) -> Path:
    from medsam_agent_rt.segmenters.exported import is_export_dir

    if not is_export_dir(path):
        from medsam_agent_rt.export.sam_onnx import export_sam

        from medsam_agent_rt.segmenters.checkpoints import load_embedded_litemedsam

        path.parent.mkdir(parents=True, exist_ok=True)
        export_sam(load_embedded_litemedsam(), "litemedsam", path, ("fp32", "fp16"), overwrite=True)
    return path


def _trt(export: Path, precision: str, threads: int):
    import tensorrt  # noqa: F401  (ImportError: row skipped)
    import torch

    if not torch.cuda.is_available():
        raise ImportError("no CUDA GPU")
    return build_segmenter(str(export), backend="trt", precision=precision, cache_size=1)


def _torch(export: Path, precision: str, threads: int):
    import torch

    torch.set_num_threads(threads)
    return build_segmenter("litemedsam", cache_size=1)


def _onnx(export: Path, precision: str, threads: int):
    return build_segmenter(
        str(export), backend="onnx", precision=precision, intra_op_threads=threads, cache_size=1
    )


# (row name, factory(export_dir, precision, threads) -> Segmenter, precision)
BACKENDS: list[tuple[str, Callable, str]] = [
    ("torch fp32", _torch, "fp32"),
    ("onnx fp32", _onnx, "fp32"),
    ("onnx fp16", _onnx, "fp16"),
    ("trt fp32", _trt, "fp32"),
    ("trt fp16", _trt, "fp16"),
]


def _median(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _episode(seg, image, re_encode: bool) -> None:
    if re_encode:
        seg.clear_cache()
    ep = PromptChain(seg, image, strategy="box+all_clicks+prev_logits")
    ep.add_box(BOX)
    for xy, positive in CLICKS:
        if re_encode:
            seg.clear_cache()
            seg.set_image(image)  # what a stateless tool server does on every call
        ep.add_point(xy, positive)


def measure(seg, image: np.ndarray, repeats: int) -> dict[str, float]:
    """Medians (s) of the four quantities of the module docstring for one segmenter."""
    variants = [image, image[:, ::-1].copy()]  # alternate so every set_image misses the cache
    state = {"i": 0}

    def encode():
        state["i"] += 1
        seg.clear_cache()
        seg.set_image(variants[state["i"] % 2])

    encode()  # warm-up (first-run allocations, ORT arena)
    seg.set_image(image)
    first = seg.predict(box=BOX, multimask_output=False)
    pts = np.array([c[0] for c in CLICKS[:2]])
    labels = np.array([int(c[1]) for c in CLICKS[:2]])

    def decode():
        seg.predict(pts, labels, BOX, first.low_res_logits, multimask_output=False)

    decode()
    out = {"encoder": _median(encode, repeats), "decoder": _median(decode, 4 * repeats)}
    seg.set_image(image)
    out["episode_cached"] = _median(lambda: _episode(seg, image, False), repeats)
    out["episode_reencode"] = _median(lambda: _episode(seg, image, True), max(3, repeats // 2))
    out["speedup"] = out["episode_reencode"] / out["episode_cached"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--export", default=str(REPO / "out" / "segmenter-export"))
    p.add_argument("--data", default=None, help="demo folder (default: the shared demo set)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--only", nargs="*", help="row names to run (default: all available)")
    args = p.parse_args(argv)
    args.data = demo_root(args.data, "segmenter")
    from PIL import Image

    image = np.asarray(Image.open(Path(args.data) / "demo" / f"{DEMO_IMAGE}.png").convert("RGB"))
    export = _export_dir(Path(args.export))
    rows, skipped = [], {}
    for name, factory, precision in BACKENDS:
        if args.only and name not in args.only:
            continue
        try:
            seg = factory(export, precision, args.threads)
        except (ImportError, RuntimeError, ValueError) as e:
            skipped[name] = f"{type(e).__name__}: {e}"[:160]
            continue
        rows.append({"backend": name, **measure(seg, image, args.repeats)})
        del seg
    lines = [
        f"LiteMedSAM, {DEMO_IMAGE} (1024 x 1024), {args.threads} threads, medians",
        "| backend | encoder | decoder / turn | 5-turn episode, cached | 5-turn, re-encode | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {fmt_seconds(r['encoder'])} | {fmt_seconds(r['decoder'])} | "
            f"{fmt_seconds(r['episode_cached'])} | {fmt_seconds(r['episode_reencode'])} | "
            f"{r['speedup']:.1f}x |"
        )
    for name, why in skipped.items():
        lines.append(f"(skipped {name}: {why})")
    print("\n".join(lines))
    if args.json:
        write_json(
            args.json,
            {"benchmark": "segmenter", "threads": args.threads, "rows": rows, "skipped": skipped},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
