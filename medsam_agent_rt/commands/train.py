"""``medsam-agent train pipeline|sft|grpo|tool-cache|tool ...``: the training scripts behind one
command (tool-cache + tool: the click fine-tuning of LiteMedSAM, ``litemedsam-click``).

Everything after the stage name goes to that script unchanged (``medsam-agent train sft --help``
lists the SFT options); under torchrun use the modules directly
(``torchrun ... -m medsam_agent_rt.training.sft``).
"""

from __future__ import annotations

import argparse

NAME = "train"
HELP = (
    "Train a policy: the whole recipe (pipeline --preset ...), or one stage (sft, grpo); "
    "or the click-aware tool (tool-cache, then tool)."
)

STAGES = {
    "pipeline": "medsam_agent_rt.training.pipeline",
    "sft": "medsam_agent_rt.training.sft",
    "grpo": "medsam_agent_rt.training.grpo",
    "tool-cache": "medsam_agent_rt.training.tool_data",
    "tool": "medsam_agent_rt.training.tool_finetune",
}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "stage", choices=sorted(STAGES), help="pipeline (all stages), sft, grpo; tool-cache, tool"
    )
    p.add_argument(
        "args", nargs=argparse.REMAINDER, help="options of that stage (see STAGE --help)"
    )


def run(args: argparse.Namespace) -> int:
    import importlib

    try:
        module = importlib.import_module(STAGES[args.stage])
    except ImportError as exc:
        raise SystemExit(
            f"training needs the torch, hf and train extras: pip install "
            f"'medsam-agent-rt[torch,hf,train]' ({exc})"
        ) from exc
    return int(module.main(list(args.args)) or 0)
