"""The server under concurrent clients vs the same episodes in-process (measurements, not tests).

    python -m benchmarks.server [--data DIR] [--images 8] [--episodes 16] [--clients 1 4 16]
        [--policy expert] [--segmenter SPEC] [--json benchmarks/results/server_cpu.json]

Starts ``medsam-agent serve`` (--segmenter, default the package's; rate limit off) in a subprocess
on a free 127.0.0.1 port, and for each client count runs a bounded number of episodes
(--episodes per level) from that many concurrent HTTP clients (httpx, real loopback sockets).
One episode, as a clinician's page would drive it: upload the image (POST /api/sessions with the
target), upload its GT mask (the expert policy is GT-driven), agent turns one ``POST /step`` at a
time until the agent is done, ``accept``, download mask.png, delete the session. The same
episodes run in-process (``Episode`` on the same segmenter in this process: read_image, steps, accept,
mask PNG; segmenter built on the main thread, episodes on one worker thread, as in the
server) give the baseline, measured before and after the server levels (the ratio column
uses their mean: on a shared machine the load drifts during the run).

Both sides first encode every image once (the server's embedding store and the in-process
segmenter's keep them), so the figures measure turns, HTTP and scheduling, not the image
encoder (``benchmarks.latency`` has that). Reported per level: sessions (episodes) per second,
turn latency p50 / p95 (one agent ``step`` request, queueing on the single model worker
included), turns per episode. The server runs every model call on ONE worker thread, so
throughput stays flat with more clients while turn latency grows with the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _timing
from benchmarks._demo import demo_root
from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER, default_choice

REPO = Path(__file__).resolve().parents[1]


def _pairs(root: Path, n: int) -> list[tuple[Path, Path]]:
    out = []
    for img in sorted((root / "demo").glob("*.png")):
        masks = sorted((root / "demo_mask").glob(img.stem.split("_")[0] + "_*.png"))
        if masks:
            out.append((img, masks[0]))
    step = max(1, len(out) // n)
    return out[::step][:n]


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _summary(
    mode: str, clients: int, wall: float, turns: list[float], episodes: int
) -> dict[str, Any]:
    return {
        "mode": mode,
        "clients": clients,
        "episodes": episodes,
        "wall_s": wall,
        "sessions_per_s": episodes / wall if wall > 0 else None,
        "turn_p50_s": _percentile(turns, 0.5),
        "turn_p95_s": _percentile(turns, 0.95),
        "turns_per_episode": len(turns) / episodes if episodes else None,
    }


# ----------------------------------------------------------------------------- server side
def _start_server(policy: str, segmenter: str, log: Path) -> tuple[subprocess.Popen, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cmd = [sys.executable, "-m", "medsam_agent_rt.cli", "serve", "--port", str(port),
           "--policy", policy, "--segmenter", segmenter, "--rate", "0",
           "--max-sessions", "64"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"), cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"benchmarks.server: the server exited ({log})")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("benchmarks.server: the server did not start in 120 s")


async def _served_episode(c, image: Path, gt: Path, target: str, turns: list[float]) -> None:
    r = await c.post("/api/sessions", params={"filename": image.name, "target": target},
                     content=image.read_bytes())  # fmt: skip
    r.raise_for_status()
    sid = r.json()["id"]
    (
        await c.put(
            f"/api/sessions/{sid}/gt", params={"filename": gt.name}, content=gt.read_bytes()
        )
    ).raise_for_status()
    while True:
        t0 = time.perf_counter()
        r = await c.post(f"/api/sessions/{sid}/step")
        turns.append(time.perf_counter() - t0)
        r.raise_for_status()
        st = r.json()["state"]
        if st["done"] or st["agent_done"]:
            break
    (await c.post(f"/api/sessions/{sid}/actions", json={"type": "accept"})).raise_for_status()
    (await c.get(f"/api/sessions/{sid}/files/mask.png")).raise_for_status()
    (await c.delete(f"/api/sessions/{sid}")).raise_for_status()


async def _served_level(url: str, work: list, clients: int) -> tuple[float, list[float]]:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    turns: list[float] = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=600.0) as c:
            while not queue.empty():
                image, gt = queue.get_nowait()
                await _served_episode(c, image, gt, "the lesion", turns)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, turns


# ----------------------------------------------------------------------------- in-process
def _inprocess(work: list, policy: str, segmenter: str) -> tuple[float, list[float]]:
    """The episodes in this process arranged as in the server: the segmenter built on the main
    thread, the episodes run on one worker thread. (On this loaded 2-core machine the thread
    that built the model ran them several times slower than a worker thread.)"""
    from concurrent.futures import ThreadPoolExecutor

    from medsam_agent_rt.segmenters import build_segmenter

    with build_segmenter(segmenter, cache_size=64) as seg, ThreadPoolExecutor(1) as pool:
        return pool.submit(_episodes_timed, seg, work, policy, segmenter).result()


def _episodes_timed(seg: Any, work: list, policy: str, segmenter: str) -> tuple[float, list[float]]:
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.io import read_image, read_mask
    from medsam_agent_rt.io.writers import encode_mask_png
    from medsam_agent_rt.policies import build_policy
    from medsam_agent_rt.session_config import SessionConfig

    config = SessionConfig(agent_ends_episode=False)

    def episodes(items: list, turns: list[float]) -> None:
        for image, gt_path in items:
            loaded = read_image(image)
            gt = read_mask(gt_path, loaded)
            ep = Episode(seg, build_policy(policy), config, tool_spec=segmenter)
            ep.start(loaded.rgb, "the lesion", gt, image_id=image.name)
            while not (ep.done or ep.agent_done):
                t1 = time.perf_counter()
                ep.step()
                turns.append(time.perf_counter() - t1)
            ep.apply("accept")
            encode_mask_png(ep.result().mask)

    episodes(list({w[0]: w for w in work}.values()), [])  # warm: each image once, untimed
    turns: list[float] = []
    t0 = time.perf_counter()
    episodes(work, turns)
    return time.perf_counter() - t0, turns


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.server", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data", help="demo folder (default: the shared BiomedParse demo set)")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--episodes", type=int, default=16, help="episodes per client level")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--policy", default="expert")
    p.add_argument(
        "--segmenter", default=DEFAULT_SEGMENTER, help="both sides (default: the package's)"
    )
    p.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "server_cpu.json"))
    args = p.parse_args(argv)
    pairs = _pairs(demo_root(args.data, "benchmarks.server"), args.images)
    work = [pairs[k % len(pairs)] for k in range(args.episodes)]
    load_start = os.getloadavg()
    rows = []
    wall, turns = _inprocess(work, args.policy, args.segmenter)  # before the server runs ...
    rows.append(_summary("in-process (before)", 1, wall, turns, len(work)))
    print(f"in-process: {rows[-1]}", file=sys.stderr)
    log = Path(args.json).with_suffix(".server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    proc, url = _start_server(args.policy, args.segmenter, log)
    try:
        asyncio.run(_served_level(url, pairs, 1))  # warm: every image encoded once
        for n in args.clients:
            wall, turns = asyncio.run(_served_level(url, work, n))
            rows.append(_summary("server", n, wall, turns, len(work)))
            print(f"server x{n}: {rows[-1]}", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
        log.unlink(missing_ok=True)
    # ... and after: the machine's load drifts
    wall, turns = _inprocess(work, args.policy, args.segmenter)
    rows.append(_summary("in-process (after)", 1, wall, turns, len(work)))
    base = statistics.mean(r["sessions_per_s"] for r in rows if r["mode"].startswith("in-process"))
    for r in rows:
        r["throughput_vs_inprocess"] = r["sessions_per_s"] / base if base else None
    payload = {
        "benchmark": "server",
        "policy": args.policy,
        "segmenter": f"{args.segmenter} ({default_choice(args.segmenter, 'cpu')})",
        "images": [a.name for a, _ in pairs],
        "episodes_per_level": len(work),
        "embeddings": "warm (every image encoded once before timing, on both sides)",
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "rows": rows,
    }
    _timing.write_json(args.json, payload)
    print(table(rows))
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    fmt = _timing.fmt_seconds
    lines = ["| mode | clients | episodes | sessions/s | vs in-process | turn p50 | turn p95 | turns/episode |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['clients']} | {r['episodes']} | {r['sessions_per_s']:.2f} | "
            f"{r['throughput_vs_inprocess']:.2f}x | {fmt(r['turn_p50_s'])} | {fmt(r['turn_p95_s'])} | "
            f"{r['turns_per_episode']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
