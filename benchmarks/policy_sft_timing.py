"""Time one SFT step of tiny Qwen3-VL policies of a few sizes / vision patch sizes / view
resolutions on this CPU, on the same conversations (how the realpack-tiny size was chosen).

    python -m benchmarks.policy_sft_timing --data runs/realpack-tiny/data/openings.jsonl \\
        runs/realpack-tiny/data/episodes.jsonl --steps 4 --out benchmarks/results/policy_sft_timing.json

Every configuration runs ``training.sft.train_sft`` (the pipeline's code path) from a freshly
built random model for ``--steps`` optimizer steps of ``--batch`` conversations, 1 torch thread;
the reported figure is the median wall time of the steps after the first (the first includes
warm-up allocations). "view" caps the pixels the image processor keeps of the 512 protocol view
(longest_edge = view^2), i.e. a coarser view for the policy without changing the protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

CONFIGS = {
    # name: (size overrides, vision patch, view side in pixels)
    "phantom-tiny size, patch 32, view 512": ({}, 32, 512),
    "phantom-tiny size, patch 16, view 512": ({}, 16, 512),
    "phantom-tiny size, patch 16, view 256": ({}, 16, 256),
    "2x (text 6 x 192, vision 4 x 128), patch 32, view 512": (
        dict(
            text_layers=6,
            text_hidden=192,
            text_heads=6,
            text_kv_heads=2,
            text_intermediate=384,
            vision_layers=4,
            vision_hidden=128,
            vision_heads=2,
            vision_intermediate=256,
        ),
        32,
        512,
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="conversation JSONL files")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default=None, help="JSON result file")
    parser.add_argument("--only", nargs="*", default=None, help="config names (substring)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from medsam_agent_rt.training.sft import SFTConfig, train_sft
    from medsam_agent_rt.training.tiny_qwen import PHANTOM_TINY_SIZE, build_tiny_qwen

    results = []
    for name, (over, patch, view) in CONFIGS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            size = replace(PHANTOM_TINY_SIZE, vision_patch=patch, **over)
            model = build_tiny_qwen(Path(tmp) / "base", "qwen3_vl", seed=0, size=size)
            pp = model / "preprocessor_config.json"
            cfg_pp = json.loads(pp.read_text())
            cfg_pp["size"]["longest_edge"] = min(cfg_pp["size"]["longest_edge"], view * view)
            cfg_pp["size"]["shortest_edge"] = min(cfg_pp["size"]["shortest_edge"], view * view)
            pp.write_text(json.dumps(cfg_pp, indent=2))
            n_params = sum(
                p.numel()
                for p in __import__("safetensors.torch", fromlist=["load_file"])
                .load_file(str(model / "model.safetensors"))
                .values()
            )
            cfg = SFTConfig(
                model=str(model),
                data=args.data,
                out=str(Path(tmp) / "sft"),
                max_steps=args.steps,
                batch_size=args.batch,
                lr=1e-3,
                warmup_steps=1,
                save_every=10**6,
                device="cpu",
            )
            t0 = time.perf_counter()
            train_sft(cfg, None, resume=False)
            wall = time.perf_counter() - t0
            log = [
                json.loads(line)
                for line in (Path(tmp) / "sft" / "log.jsonl").read_text().splitlines()
                if line.strip()
            ]
            secs = [r["seconds"] for r in log if "seconds" in r]
            tokens = [r["tokens"] for r in log if "tokens" in r]
        row = {
            "config": name,
            "params": n_params,
            "vision_patch": patch,
            "view": view,
            "step_seconds_median": statistics.median(secs[1:] or secs),
            "step_seconds": secs,
            "assistant_tokens_per_step": tokens,
            "wall_seconds": wall,
            "load_average_1min": os.getloadavg()[0],
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(
            json.dumps({"batch": args.batch, "steps": args.steps, "rows": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
