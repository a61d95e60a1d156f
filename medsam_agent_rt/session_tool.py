"""The tool side of a session: the per-episode chained segmenter state it drives.

The real implementation is ``segmenters.episode.Episode`` (one Segmenter, the image encoded
once, prompts carried per strategy); tests use geometric stand-ins with the same methods.
Coordinates are image pixels (the session maps the model's 0..999 grid before calling).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class ToolStep(Protocol):
    mask: np.ndarray  # (H, W) bool
    score: float


class ToolState(Protocol):
    """The per-episode chained segmenter state (``segmenters.episode``); pixel coordinates."""

    strategy: str

    def add_box(self, box_xyxy: Any) -> ToolStep: ...
    def add_point(self, xy: Any, positive: bool) -> ToolStep: ...
    def preview_box(self, box_xyxy: Any) -> ToolStep: ...
    def preview_point(self, xy: Any, positive: bool) -> ToolStep: ...

    # Optional: ``commit(step)`` adopts a previewed step as the new state. The session then
    # executes an action a GT policy has just previewed without running the decoder again.


ToolFactory = Callable[[np.ndarray], ToolState]  # RGB image -> a new episode state (encodes it)


class ToolError(RuntimeError):
    """The segmentation tool failed on a step; recorded, ends the episode with "tool_error"."""


def checked_step(step: Any, hw: tuple[int, int]) -> Any:
    """``step`` if it carries an (H, W) mask, else ValueError (a tool bug, recorded)."""
    mask = getattr(step, "mask", None)
    if mask is None or np.shape(mask) != hw:
        raise ValueError(f"tool returned a mask of shape {np.shape(mask)}, expected (H, W) = {hw}")
    return step


def segmenter_tool_factory(segmenter: Any, strategy: str | None = None) -> ToolFactory:
    """Wrap a ``segmenters.base.Segmenter`` into a factory of per-episode chained states
    (``segmenters.episode.Episode``: encodes the image once, carries prompts per ``strategy``)."""
    from medsam_agent_rt.segmenters.episode import Episode

    def factory(image: np.ndarray) -> ToolState:
        return Episode(segmenter, image, strategy=strategy)

    return factory
