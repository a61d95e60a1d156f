"""``medsam-agent info``: what was built (extension, CUDA, archs, compiler) and what is visible."""

from __future__ import annotations

import argparse
import json

NAME = "info"
HELP = "Show the build (extension, CUDA version and architectures, compiler) and devices."


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    from medsam_agent_rt import build_info

    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0
