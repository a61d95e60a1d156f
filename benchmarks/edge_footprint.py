"""Footprint of the torch-free edge install beside the torch install (measurements, not tests).

    python -m benchmarks.edge_footprint [--repeats R] [--work DIR] [--json PATH]

Two fresh virtual environments hold this checkout's wheel (benchmarks/edge_env.py): ``edge``
(extra ``edge``: ONNX Runtime + llama-cpp-python, offline from the ``.whl/edge`` wheelhouse) and
``torch`` (CPU ``torch==2.13.0`` + extras ``torch,hf``, from the configured index). Each runs
``medsam-agent segment`` on the embedded defaults of its install (edge: LiteMedSAM on ONNX
Runtime + the policy's GGUF on llama.cpp; torch: ``--backend torch`` + the hf policy) on the
held-out phantoms of ``edge_env.CASES``, ``R`` rounds alternating the installs. Figures: bytes
of site-packages (the largest distributions named), and per whole ``segment`` process (start,
model loads, episode, writing outputs): wall time and peak RSS (``wait4``), medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import edge_env

INSTALLS = ("edge", "torch")
TORCH_PIN = "torch==2.13.0"


def largest(site: Path, n: int = 6) -> list[tuple[str, int]]:
    """The ``n`` largest top-level entries of a site-packages folder, (name, bytes)."""
    sizes = []
    for p in site.iterdir():
        size = edge_env.tree_bytes(p) if p.is_dir() else p.stat().st_size
        sizes.append((p.name, size))
    return sorted(sizes, key=lambda x: -x[1])[:n]


def build(work: Path) -> dict[str, Path]:
    """The two venvs under ``work``: {install: venv folder}."""
    wheel = edge_env.build_wheel(work / "wheel", work / "build")
    venvs = {name: work / f"venv-{name}" for name in INSTALLS}
    edge_env.create_venv(venvs["edge"], wheel, "edge")
    edge_env.create_venv(
        venvs["torch"], wheel, "torch,hf", find_links=(), offline=False, first=[TORCH_PIN]
    )
    return venvs


# the embedded defaults of each install; the torch one names its backend (a torch install with
# onnxruntime would otherwise pick ONNX Runtime too)
EPISODE_ARGS = {"edge": [], "torch": ["--backend", "torch"]}


def measure(venvs: dict[str, Path], work: Path, repeats: int) -> dict[str, Any]:
    images = edge_env.make_phantoms(work / "phantoms")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in venvs}
    for _ in range(repeats):
        for install, venv in venvs.items():  # alternating: both see the load of the moment
            for name, target in edge_env.CASES:
                out = work / "out" / install / Path(name).stem
                cmd = [str(venv / "bin" / "medsam-agent"), "segment", str(images / name)]
                cmd += ["--target", target, "--out", str(out), "--overwrite", "--json"]
                load = os.getloadavg()[0]
                run = edge_env.run_measured(cmd + EPISODE_ARGS[install], cwd=work)
                if run.returncode != 0:
                    raise RuntimeError(f"{install}: {' '.join(cmd)} failed:\n{run.stderr}")
                summary = json.loads(run.stdout)
                runs[install].append(
                    {
                        "case": name,
                        "target": target,
                        "wall_s": run.seconds,
                        "peak_rss_mib": run.peak_rss_mib,
                        "load_average": load,
                        "policy": summary["policy"],
                        "backend": summary["backend"],
                        "actions": summary["actions"],
                        "seconds": summary["seconds"],
                    }
                )
    rows = []
    for install, venv in venvs.items():
        site = edge_env.site_packages(venv)
        r = runs[install]
        torch_import = edge_env.run_measured(  # cwd without a torch/ folder (a namespace package)
            [str(venv / "bin" / "python"), "-c", "import torch; torch.__file__.endswith('.py')"],
            cwd=images,
        )
        rows.append(
            {
                "install": install,
                "site_packages_bytes": edge_env.tree_bytes(site),
                "largest": largest(site),
                "torch_importable": torch_import.returncode == 0,
                "policy": r[0]["policy"].replace(str(venv), "<venv>"),
                "backend": r[0]["backend"],
                "episodes": len(r),
                "wall_s_median": statistics.median(x["wall_s"] for x in r),
                "peak_rss_mib_median": statistics.median(x["peak_rss_mib"] for x in r),
                "peak_rss_mib_max": max(x["peak_rss_mib"] for x in r),
                "runs": r,
            }
        )
    return {"rows": rows}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| install | torch importable | site-packages | largest parts | segmenter / policy "
        "| `segment` wall (median) | peak RSS (median / max) |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for r in rows:
        parts = ", ".join(f"{n} {b / 2**20:.0f}" for n, b in r["largest"][:4])
        policy = "gguf (llama.cpp)" if r["policy"].startswith("gguf:") else "hf (transformers)"
        lines.append(
            f"| {r['install']} | {'yes' if r['torch_importable'] else 'no'} "
            f"| {r['site_packages_bytes'] / 2**20:.0f} MiB | {parts} MiB "
            f"| {r['backend']} / {policy} | {r['wall_s_median']:.2f} s "
            f"| {r['peak_rss_mib_median']:.0f} / {r['peak_rss_mib_max']:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="rounds over the installs (default 3)")
    ap.add_argument("--work", help="working folder (default: a temporary one, removed)")
    ap.add_argument("--json", default="", help="write the results as JSON here")
    args = ap.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="msrt-footprint-"))
    load0 = os.getloadavg()[0]
    try:
        venvs = build(work)
        result = measure(venvs, work, args.repeats)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f}\n")
    print(table(result["rows"]))
    if args.json:
        payload = {
            "benchmark": "edge_footprint",
            "version": 1,
            "config": {"repeats": args.repeats, "cases": edge_env.CASES, "torch": TORCH_PIN},
            "load_average": [load0, os.getloadavg()[0]],
            **result,
        }
        from benchmarks._timing import write_json

        write_json(args.json, payload)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
