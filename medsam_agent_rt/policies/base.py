"""The Policy protocol: what drives the tool, one turn at a time.

Per episode the episode (``medsam_agent_rt.episode``) calls ``reset(task)`` once, then ``act(observation)`` per turn. A policy
returns the assistant text exactly as a model would emit it (phrase + ``<tool_call>`` block);
the episode parses it (protocol.actions), so every policy — trained model, server, scripted or
GT-driven — goes through the same parser and the same record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medsam_agent_rt.protocol import Action, ViewGeometry
from medsam_agent_rt.protocol.messages import Message


@dataclass(frozen=True)
class Task:
    """One episode's task. image: (H, W, 3) uint8 RGB; geometry: its 512-view geometry;
    target: the description ("left kidney in abdomen CT"); gt_mask: (H, W) bool, given only to
    GT-driven policies (``requires_gt``); image_id: a name for records and seeding."""

    image: np.ndarray
    geometry: ViewGeometry
    target: str
    gt_mask: np.ndarray | None = None
    image_id: str = ""


@dataclass(frozen=True)
class Observation:
    """What the policy sees at one call.

    messages: the protocol conversation so far (system, user/assistant turns, all images);
    turn: 0-based index of this call in the episode (retries included); step: actions executed
    so far; retry: None, or why the previous question is asked again ("invalid_output" after an
    unparsable answer, "refused_stop" after a first-turn stop) — the messages are then the same as
    at the previous call, so a deterministic policy may want to vary its answer; previous: what
    became of this policy's previous answer — "executed" (it ran on the tool and is now the last
    assistant turn of ``messages``), "refused_stop", "invalid_output" (dropped from the
    conversation), or None on the first call.
    GT-driven policies only: mask, the current (H, W) bool mask (all False before the first
    action), and preview(action) -> (H, W) bool, the mask the action WOULD give on the episode's
    chained tool state, without committing it.
    """

    messages: list[Message]
    turn: int
    step: int
    retry: str | None = None
    previous: str | None = None
    mask: np.ndarray | None = None
    preview: Callable[[Action], np.ndarray] | None = None


@dataclass
class PolicyTurn:
    """text: the assistant text (phrase + tool call); info: JSON-friendly extras for the record
    (token ids, log-probs, sampling settings, the policy's own reasoning about the choice)."""

    text: str
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """name: the spec it was built from (recorded); requires_gt: True for GT-driven policies."""

    name: str
    requires_gt: bool

    def reset(self, task: Task) -> None:
        """Start an episode."""
        ...

    def act(self, observation: Observation) -> PolicyTurn:
        """One assistant turn."""
        ...
