"""argparse ``type=`` callables shared by the commands (values checked where they are parsed)."""

from __future__ import annotations

import argparse


def strategy(value: str) -> str:
    """A carrying strategy, optionally with ``+zoom`` (``segmenters.prompt_chain``)."""
    from medsam_agent_rt.segmenters.prompt_chain import parse_strategy

    try:
        parse_strategy(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value
