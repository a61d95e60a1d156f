"""Policy latency per turn k = 1..5 (measurements, not tests): our GGUF policy (KV cache kept),
llama-cpp-python's multimodal chat handler on the same GGUF (re-evaluates every image on every
call) and the hf policy (transformers, re-encodes the whole conversation every call).

    python -m benchmarks.policy_latency [--gguf DIR] [--hf DIR] [--episodes N] [--threads T]
        [--repeats R] [--json PATH]

Defaults: the embedded policy (HF directory and its F16 GGUF export). Each policy runs in its
own subprocess (so peak RSS is its own) over the same scripted conversations: on held-out
phantoms, turn k shows k views (the 512 view, then the view with a mask overlay) and k-1
assistant answers (fixed valid tool calls), so every policy answers the same k questions.
Turn 1 is cold for every policy: the warm-up call shows a phantom no measured conversation
shows, and the GGUF policy's KV cache is cleared before each conversation. ``--repeats R``
runs R rounds over the kinds (alternating, so they share the machine's load) and takes the
medians over every round.
Figures per turn k: median wall time of the policy call, time to first token (GGUF: prefill +
first sample; handler: first streamed chunk; hf: not exposed, left empty), decode tokens/s;
per policy: peak RSS. ``benchmarks.latency --policy-turns`` runs this too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TURNS = 5
KINDS = ("gguf", "handler", "hf")


def conversations(episodes: int, offset: int = 0) -> list[list[list[dict[str, Any]]]]:
    """[episode][k-1] -> messages of turn k (k views, ending with a user turn), on the targets
    of ``episodes`` test-split phantoms from the ``offset``-th."""
    import numpy as np
    from medsam_agent_rt.training.phantom_data import phantom_samples
    from medsam_agent_rt.training.presets import get_preset

    from medsam_agent_rt.protocol import PHRASE_BOX, PHRASE_REFINE, assistant_text, build_messages
    from medsam_agent_rt.protocol.view import render_observation, render_view, view_geometry

    out = []
    spec = get_preset("phantom-tiny").phantoms
    for s in phantom_samples(spec, "test", episodes, offset=offset):
        image, gt = s.load()
        geo = view_geometry(image.shape[:2])
        view = render_view(image, geo)
        views = [view] + [  # a different overlay each turn (the GT mask shifted a little)
            render_observation(view, np.roll(gt, 4 * k, axis=1), geo) for k in range(TURNS - 1)
        ]
        answers = [assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [120, 140, 700, 720]})]
        answers += [
            assistant_text(
                PHRASE_REFINE, "add_point", {"point_2d": [400 + k, 500], "point_type": "positive"}
            )
            for k in range(TURNS - 2)
        ]
        out.append(
            [
                build_messages(s.description, views[:k], answers[: k - 1])
                for k in range(1, TURNS + 1)
            ]
        )
    return out


def _data_url(image: Any) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        parts = []
        for p in m["content"]:
            if p["type"] == "image":
                parts.append({"type": "image_url", "image_url": {"url": _data_url(p["image"])}})
            else:
                parts.append({"type": "text", "text": p["text"]})
        out.append({"role": m["role"], "content": parts})
    return out


def run_one(kind: str, gguf_dir: str, hf_dir: str, episodes: int, threads: int) -> dict[str, Any]:
    """Per-turn timings of one policy kind in this process: ``samples`` (every call) and
    ``turns`` (their medians). Every conversation starts cold: the warm-up asks about a phantom
    no measured conversation shows, and the GGUF policy's KV cache is cleared before each
    conversation, so turn 1 evaluates its whole prompt (the handler and hf always do)."""
    convs = conversations(episodes)
    warmup = conversations(1, offset=episodes)[0]  # a phantom no measured conversation shows
    samples: dict[int, dict[str, list[float]]] = {
        k: {"wall": [], "ttft": [], "tok_s": []} for k in range(1, TURNS + 1)
    }
    fresh = lambda: None  # noqa: E731 - the handler and hf keep nothing between calls
    if kind == "gguf":
        from medsam_agent_rt.policies.gguf import GGUFPolicy

        pol = GGUFPolicy(gguf_dir, n_threads=threads)
        call, fresh = _gguf_call(pol), pol.clear_cache
    elif kind == "handler":
        call = _handler_call(gguf_dir, threads)
    else:
        import torch

        from medsam_agent_rt.policies.hf import HFPolicy

        torch.set_num_threads(threads)
        pol = HFPolicy(hf_dir)
        call = _hf_call(pol)
    call(warmup[0])  # warm-up (loads, first allocations) on an image not measured
    for conv in convs:
        fresh()
        for k, msgs in enumerate(conv, start=1):
            wall, ttft, n_gen, gen_s = call(msgs)
            samples[k]["wall"].append(wall)
            if ttft is not None:
                samples[k]["ttft"].append(ttft)
            if n_gen and gen_s:
                samples[k]["tok_s"].append(n_gen / gen_s)
            info = getattr(call, "info", None)
            if info is not None:  # GGUF: share of the prompt evaluated (1.0 = cold)
                share = info["evaluated_tokens"] / info["prompt_tokens"]
                samples[k].setdefault("evaluated_share", []).append(share)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    row = {"kind": kind, "samples": samples, "peak_rss_mib": rss, "episodes": episodes}
    return {**row, "turns": medians(samples)}


def medians(samples: dict[int, dict[str, list[float]]]) -> dict[int, dict[str, float | None]]:
    return {
        k: {name: (statistics.median(v) if v else None) for name, v in d.items()}
        for k, d in samples.items()
    }


def merge_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of one kind from several rounds -> one row: medians over every sample, the
    largest peak RSS, the round count."""
    samples = {
        k: {n: [x for r in rows for x in r["samples"][k][n]] for n in rows[0]["samples"][k]}
        for k in rows[0]["samples"]
    }
    return {
        "kind": rows[0]["kind"],
        "samples": samples,
        "turns": medians(samples),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
        "episodes": sum(r["episodes"] for r in rows),
        "rounds": len(rows),
    }


def _gguf_call(pol: Any):
    from types import SimpleNamespace

    def call(msgs):
        t0 = time.perf_counter()
        out = pol.act(SimpleNamespace(messages=msgs, retry=None))
        i = call.info = out.info  # the prefill counts: how much of the prompt was evaluated
        return time.perf_counter() - t0, i["ttft_s"], len(i["token_ids"]), i["generate_s"]

    return call


def _hf_call(pol: Any):
    from types import SimpleNamespace

    def call(msgs):
        t0 = time.perf_counter()
        out = pol.act(SimpleNamespace(messages=msgs, retry=None))
        return time.perf_counter() - t0, None, len(out.info["token_ids"]), out.info["generate_s"]

    return call


def _handler_call(gguf_dir: str, threads: int):
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler
    from medsam_agent_rt.export.gguf_manifest import load_manifest

    m = load_manifest(gguf_dir)
    d = Path(gguf_dir)
    handler = MTMDChatHandler(clip_model_path=str(d / m["files"]["mmproj"]["name"]), verbose=False)
    llm = Llama(
        str(d / m["files"]["model"]["name"]),
        chat_handler=handler,
        n_ctx=4096,
        n_threads=threads,
        verbose=False,
    )

    def call(msgs):
        t0 = time.perf_counter()
        ttft, n = None, 0
        for chunk in llm.create_chat_completion(
            messages=_openai_messages(msgs), max_tokens=128, temperature=0.0, stream=True
        ):
            if ttft is None:
                ttft = time.perf_counter() - t0
            n += bool(chunk["choices"][0]["delta"].get("content"))
        wall = time.perf_counter() - t0
        return wall, ttft, n, (wall - (ttft or 0.0)) or None

    return call


def table(rows: list[dict[str, Any]]) -> str:
    head = "| policy | " + " | ".join(f"turn {k}" for k in range(1, TURNS + 1))
    head += " | turn 5 / turn 1 | TTFT t1 / t5 | tokens/s | peak RSS |"
    lines = [head, "|---|" + "---:|" * (TURNS + 4)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['kind']} | error: {r['error']} |")
            continue
        t = r["turns"]
        walls = [t[k]["wall"] for k in range(1, TURNS + 1)]
        ttft = [t[k]["ttft"] for k in (1, TURNS)]
        tok = [t[k]["tok_s"] for k in range(1, TURNS + 1) if t[k]["tok_s"]]
        cells = [f"{w * 1000:.0f} ms" for w in walls]
        cells.append(f"{walls[-1] / walls[0]:.2f}")
        cells.append("-" if ttft[0] is None else f"{ttft[0] * 1000:.0f} / {ttft[1] * 1000:.0f} ms")
        cells.append(f"{statistics.median(tok):.0f}" if tok else "-")
        cells.append(f"{r['peak_rss_mib']:.0f} MiB")
        lines.append(f"| {r['kind']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_paths() -> tuple[str, str]:
    from medsam_agent_rt.assets import ASSETS_DIR
    from medsam_agent_rt.policies.registry import EMBEDDED_GGUF, EMBEDDED_POLICY

    return str(ASSETS_DIR / "policies" / EMBEDDED_GGUF), str(
        ASSETS_DIR / "policies" / EMBEDDED_POLICY
    )


def load_row(text: str) -> dict[str, Any]:
    """A row written by ``--one`` (JSON turns back to int keys)."""
    row = json.loads(text)
    for key in ("turns", "samples"):
        if key in row:
            row[key] = {int(k): v for k, v in row[key].items()}
    return row


def measure(
    gguf_dir: str, hf_dir: str, episodes: int, threads: int, kinds=KINDS, repeats: int = 1
) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """``repeats`` rounds of one subprocess per policy kind (the kinds alternate, so each round
    sees the machine's load of its moment); rows in ``kinds`` order, merged over the rounds, and
    the load averages (1 min) at the start of every run."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    loads: list[list[float]] = []
    for _ in range(repeats):
        loads.append([])
        for kind in kinds:
            loads[-1].append(round(os.getloadavg()[0], 2))
            runs[kind].append(_run_subprocess(kind, gguf_dir, hf_dir, episodes, threads))
    rows = []
    for kind in kinds:
        errors = [r for r in runs[kind] if "error" in r]
        rows.append(errors[0] if errors else merge_rows(runs[kind]))
    return rows, loads


def _run_subprocess(kind: str, gguf_dir: str, hf_dir: str, episodes: int, threads: int):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, "-m", "benchmarks.policy_latency", "--one", kind]
        cmd += ["--gguf", gguf_dir, "--hf", hf_dir, "--episodes", str(episodes)]
        cmd += ["--threads", str(threads), "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1])
        if proc.returncode != 0 or not out.is_file():
            return {"kind": kind, "error": proc.stderr.strip().splitlines()[-1:]}
        return load_row(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    gguf_default, hf_default = default_paths()
    ap.add_argument("--gguf", default=gguf_default, help="GGUF export directory")
    ap.add_argument("--hf", default=hf_default, help="HF checkpoint directory (same weights)")
    ap.add_argument("--episodes", type=int, default=3, help="conversations (phantoms), default 3")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per policy (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds over the kinds (medians)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--json", default="", help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.one:
        row = run_one(args.one, args.gguf, args.hf, args.episodes, args.threads)
        Path(args.json).write_text(json.dumps(row))
        return 0
    load0 = os.getloadavg()[0]
    rows, loads = measure(args.gguf, args.hf, args.episodes, args.threads, args.kinds, args.repeats)
    print(
        f"policy latency per turn: {args.repeats} round(s) x {args.episodes} conversations x "
        f"{TURNS} turns, {args.threads} threads, cold turn 1, load average {load0:.2f} -> "
        f"{os.getloadavg()[0]:.2f}\n"
    )
    print(table(rows))
    if args.json:
        payload = {
            "benchmark": "policy_latency",
            "version": 2,
            "config": {k: v for k, v in vars(args).items() if k not in ("json", "one")},
            "load_average": [load0, os.getloadavg()[0]],
            "load_average_per_run": loads,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
