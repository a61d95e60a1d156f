"""Kernel benchmark: every kernel against the strongest alternative on this machine, same run.

    python -m benchmarks.kernels [--sizes 1024 2048] [--repeats 7] [--json out/kernels.json]

Prints a markdown table of median times and speed-ups over each case's baseline.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil

from benchmarks import _timing, kernel_cases


def collect(sizes: list[int]) -> list[kernel_cases.Case]:
    cases: list[kernel_cases.Case] = []
    for mod in sorted(pkgutil.iter_modules(kernel_cases.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):  # shared helpers (_data, _cuda), not kernel families
            continue
        module = importlib.import_module(f"{kernel_cases.__name__}.{mod.name}")
        cases.extend(module.cases(sizes))
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", default="", help="substring filter on case names")
    ap.add_argument("--json", default="", help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    from medsam_agent_rt import build_info

    rows: list[_timing.Row] = []
    load_start = os.getloadavg()  # other processes on the machine skew every ratio: record them
    cases = [c for c in collect(args.sizes) if args.only in c.name]
    for case in cases:
        for impl, fn in case.impls.items():
            med, samples = _timing.median_time(fn, repeats=args.repeats, min_time=0.05)
            rows.append(_timing.Row(case.name, impl, med, samples))
    baselines = {c.name: c.baseline for c in cases}
    print(_timing.ratio_table(rows, baselines.get))
    for c in cases:
        if c.target or c.skipped:
            extra = f"; skipped: {', '.join(c.skipped)}" if c.skipped else ""
            print(f"- {c.name}: target {c.target or '-'}{extra}")
    if args.json:
        _timing.write_json(
            args.json,
            {
                "benchmark": "kernels",
                "build": build_info(),
                "targets": {c.name: c.target for c in cases},
                "load_average": {"start": load_start, "end": os.getloadavg()},
                "rows": rows,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
