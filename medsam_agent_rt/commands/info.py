"""``medsam-agent info``: what was built (extension, CUDA, archs, compiler) and what is visible."""

from __future__ import annotations

import argparse
import json

NAME = "info"
HELP = (
    "Show the build (extension, CUDA version and architectures, compiler), devices, CPU "
    "features, the model runtimes installed and what the default segmenter runs on."
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    from medsam_agent_rt import build_info

    info = {**build_info(), **runtime_info()}
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {_text(value)}")
    return 0


def runtime_info() -> dict:
    """CPU features (/proc/cpuinfo), usable CPUs and the thread policy, the segmenter backends
    installed, and the backend + precision the default segmenter (``DEFAULT_SEGMENTER``, CPU) runs."""
    from medsam_agent_rt.cpu import available_cpus, cpu_features, thread_policy
    from medsam_agent_rt.segmenters.registry import (
        DEFAULT_SEGMENTER,
        available_backends,
        default_choice,
    )

    policy = thread_policy()
    return {
        "cpu_features": cpu_features(),
        "cpu_usable": available_cpus(),
        "thread_policy": policy.reason,
        "backends": available_backends(),
        "default_segmenter": f"{DEFAULT_SEGMENTER}: {default_choice(DEFAULT_SEGMENTER, 'cpu')}",
    }


def _text(value) -> str:
    """One line for a value: a feature dict as its present names (+ absent ones), a backend dict
    as "name version [providers]"."""
    if isinstance(value, dict) and all(isinstance(v, bool) for v in value.values()):
        have = [k for k, v in value.items() if v]
        lack = [k for k, v in value.items() if not v]
        return " ".join(have) + (f" (not: {' '.join(lack)})" if lack else "")
    if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
        parts = []
        for name, facts in value.items():
            extra = f" [{', '.join(facts['providers'])}]" if facts.get("providers") else ""
            parts.append(f"{name} {facts.get('version') or '-'}{extra}")
        return ", ".join(parts)
    return str(value)
