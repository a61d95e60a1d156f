"""Timing and reporting helpers shared by every benchmark: medians of repeated runs, a ratio
table against a named baseline measured in the same run, and JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def median_time(
    fn: Callable[[], Any], repeats: int = 7, warmup: int = 2, min_time: float = 0.0
) -> tuple[float, list[float]]:
    """Median wall time (s) of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    Each run calls fn enough times to last at least ``min_time`` seconds (per-call time reported).
    """
    for _ in range(warmup):
        fn()
    inner = 1
    if min_time > 0:
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-9)
        inner = max(1, int(min_time / once))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples), samples


@dataclass
class Row:
    """One measurement: ``name`` of what ran, ``impl`` which implementation, median seconds."""

    case: str
    impl: str
    seconds: float
    samples: list[float] = field(default_factory=list)
    note: str = ""


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def ratio_table(rows: Sequence[Row], baseline_of: Callable[[str], str | None]) -> str:
    """Markdown table: one line per row with its time and speed-up over the case's baseline."""
    base: dict[str, float] = {}
    for r in rows:
        if baseline_of(r.case) == r.impl:
            base[r.case] = r.seconds
    lines = ["| case | implementation | median | speed-up vs baseline |", "|---|---|---:|---:|"]
    for r in rows:
        b = base.get(r.case)
        ratio = f"{b / r.seconds:.2f}x" if b and r.seconds > 0 else "-"
        lines.append(f"| {r.case} | {r.impl} | {fmt_seconds(r.seconds)} | {ratio} |")
    return "\n".join(lines)


def fmt_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "machine": machine()}
    rows = payload.get("rows")
    if rows and isinstance(rows[0], Row):
        payload["rows"] = [asdict(r) for r in rows]
    Path(path).write_text(json.dumps(payload, indent=2))
