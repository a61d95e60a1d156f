"""The tool side of an episode: the per-episode chained segmenter state it drives, the actions a
person may apply, and the final-mask clean-up.

The real tool state is ``segmenters.prompt_chain.PromptChain`` (one Segmenter shared by any
number of episodes, the image encoded once through its store, prompts carried per strategy);
tests use geometric stand-ins with the same methods. Coordinates are image pixels (the episode
maps the model's 0..999 grid before calling).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from medsam_agent_rt.protocol import (
    Action,
    PixelBox,
    PixelPoint,
    ViewGeometry,
    render_observation,
    to_grid,
    to_pixels,
)
from medsam_agent_rt.trajectory import TurnRecord, mask_stats, rle_encode
from medsam_agent_rt.transfers import METER, is_device_array, to_host


class ToolStep(Protocol):
    mask: np.ndarray  # (H, W) bool
    score: float


class ToolState(Protocol):
    """The per-episode chained segmenter state (``segmenters.prompt_chain``); pixel coordinates."""

    strategy: str

    def add_box(self, box_xyxy: Any) -> ToolStep: ...
    def add_point(self, xy: Any, positive: bool) -> ToolStep: ...
    def preview_box(self, box_xyxy: Any) -> ToolStep: ...
    def preview_point(self, xy: Any, positive: bool) -> ToolStep: ...

    # Optional: ``commit(step)`` adopts a previewed step as the new state (the episode then
    # executes an action a GT policy has just previewed without running the decoder again);
    # ``undo()`` returns to the state before the last committed step (a person's "undo").


ToolFactory = Callable[[np.ndarray], ToolState]  # RGB image -> a new episode state (encodes it)

# What a person (or any caller other than the policy) may apply to a running episode: a box or
# a click in IMAGE PIXELS, "undo" (the last box/click, the agent's or the person's) or "accept"
# (end the episode with the current mask).
HumanAction = PixelBox | PixelPoint | Literal["undo", "accept"]


class ToolError(RuntimeError):
    """The segmentation tool failed on a step; recorded, ends the episode with "tool_error"."""


def checked_step(step: Any, hw: tuple[int, int]) -> Any:
    """``step`` if it carries an (H, W) mask, else ValueError (a tool bug, recorded)."""
    mask = getattr(step, "mask", None)
    if mask is None or np.shape(mask) != hw:
        raise ValueError(f"tool returned a mask of shape {np.shape(mask)}, expected (H, W) = {hw}")
    return step


def check_human_action(action: Any, hw: tuple[int, int]) -> HumanAction:
    """``action`` if it is a box / click inside the (H, W) image, "undo" or "accept"; else a
    ValueError / TypeError saying what was expected and what arrived."""
    h, w = hw
    if isinstance(action, str):
        if action not in ("undo", "accept"):
            raise ValueError(
                f"action must be a PixelBox, a PixelPoint, 'undo' or 'accept'; got {action!r}"
            )
        return action  # type: ignore[return-value]
    if isinstance(action, PixelBox):
        x1, y1, x2, y2 = action.as_array()
        if not (0 <= x1 < x2 <= w - 1 and 0 <= y1 < y2 <= h - 1):
            raise ValueError(
                f"box must satisfy 0 <= x1 < x2 <= {w - 1} and 0 <= y1 < y2 <= {h - 1} (pixels "
                f"of the {w}x{h} image), got ({x1}, {y1}, {x2}, {y2})"
            )
        return action
    if isinstance(action, PixelPoint):
        if not (0 <= action.x <= w - 1 and 0 <= action.y <= h - 1):
            raise ValueError(
                f"click must be inside the {w}x{h} image (0 <= x <= {w - 1}, 0 <= y <= {h - 1}), "
                f"got ({action.x}, {action.y})"
            )
        return action
    raise TypeError(
        "action must be a protocol.PixelBox, a protocol.PixelPoint, 'undo' or 'accept'; got "
        f"{type(action).__name__}"
    )


def segmenter_tool_factory(segmenter: Any, strategy: str | None = None) -> ToolFactory:
    """Wrap a ``segmenters.base.Segmenter`` into a factory of per-episode chained states
    (``segmenters.prompt_chain.PromptChain``: encodes the image through the segmenter's shared
    store, carries prompts per ``strategy``)."""
    from medsam_agent_rt.segmenters.prompt_chain import PromptChain

    on_device = bool(getattr(segmenter, "on_device", False))

    def factory(image: np.ndarray) -> ToolState:
        return PromptChain(segmenter, image, strategy=strategy, on_device=on_device)

    return factory


def postprocess_final(mask: np.ndarray, config: Any) -> np.ndarray:
    """The final mask: (H, W) bool, optionally largest component only, then holes filled
    (``config``: a SessionConfig)."""
    from medsam_agent_rt import ops

    out = mask if hasattr(mask, "__dlpack__") else np.ascontiguousarray(mask, bool)
    if config.keep_largest and bool(out.any()):
        out = ops.keep_largest_component(out, config.connectivity)
    if config.fill_holes and bool(out.any()):
        out = ops.fill_holes(out, config.max_hole_area, connectivity=config.connectivity)
    return np.ascontiguousarray(to_host(out), bool)  # a device mask crosses once, here


@dataclass
class EpisodeState:
    """One running episode: the tool state, the conversation so far and the retry counters."""

    tool: ToolState | None
    geo: ViewGeometry
    view: np.ndarray  # (S, S, 3) uint8, the 512 view of the image
    mask: np.ndarray  # (H, W) bool, the current tool mask
    gt: np.ndarray | None
    needs_gt: bool
    invalid_left: int
    refusals_left: int
    images: list[np.ndarray] = field(default_factory=list)  # the conversation's images
    texts: list[str] = field(default_factory=list)  # its assistant texts (executed actions)
    actions: int = 0  # agent actions executed (the conversation's steps)
    calls: int = 0  # policy calls
    retry: str | None = None
    previous: str | None = None
    previews: dict[Any, Any] = field(default_factory=dict)  # pixel action -> previewed step
    undo: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (turn, mask before)
    t_start: float = 0.0
    encode_s: float = 0.0
    final: np.ndarray | None = None
    device: DeviceViews | None = None  # set when the tool keeps its masks on a device


class DeviceViews:
    """The device side of an episode whose tool keeps masks on a CUDA device: the 512 view and
    the GT uploaded once (on the first mask's device), the overlay rendered and the mask stats
    computed there with the ``ops`` kernels; the host receives the overlay (the view the policy
    sees) and a few scalars."""

    def __init__(self, view: np.ndarray, gt: np.ndarray | None) -> None:
        self.view, self.gt = view, gt
        self._view_dev: Any = None
        self._gt_dev: Any = None

    def _upload(self, like: Any) -> None:
        if self._view_dev is not None:
            return
        import torch

        on_gpu = is_device_array(like)
        for name, host in (("view", self.view), ("gt", self.gt)):
            if host is None:
                continue
            if on_gpu:
                METER.add("h2d", host.nbytes)
            setattr(self, f"_{name}_dev", torch.as_tensor(host, device=like.device))

    def overlay(self, mask: Any, geometry: ViewGeometry) -> np.ndarray:
        """(S, S, 3) uint8 host overlay of a device (H, W) bool mask."""
        from medsam_agent_rt import ops

        self._upload(mask)
        return to_host(ops.render_overlay(self._view_dev, mask, geometry.content_box))

    def stats(self, mask: Any, connectivity: int) -> dict[str, Any]:
        """``trajectory.mask_stats`` of a device mask, computed on its device."""
        from medsam_agent_rt import ops

        self._upload(mask)
        area = int(mask.sum())
        out: dict[str, Any] = {"area": area, "iou": None, "dice": None, "components": 0}
        if area:
            out["components"] = ops.label_components(mask, connectivity).count
        if self._gt_dev is not None:
            mm = ops.mask_metrics(mask, self._gt_dev)
            out["iou"], out["dice"] = float(mm.iou[0]), float(mm.dice[0])
        return out


def deadline_passed(config: Any, st: EpisodeState, elapsed: float | None) -> tuple[str, str] | None:
    """(end reason, message) when a deadline of ``config`` has passed (``elapsed``: the time the
    policy's answer took, None before a call), else None."""
    limit = getattr(config, "turn_deadline_s", None)
    if elapsed is not None and limit is not None and elapsed > limit:
        return "turn_deadline", f"the policy answered in {elapsed:.3f} s (limit {limit} s)"
    limit = getattr(config, "episode_deadline_s", None)
    spent = time.perf_counter() - st.t_start
    if limit is not None and spent > limit:
        return "episode_deadline", f"the episode ran {spent:.3f} s (limit {limit} s)"
    return None


def previewer(st: EpisodeState, turn: TurnRecord) -> Callable[[Action], np.ndarray]:
    """A GT policy's preview(action) -> (H, W) bool mask, timed into ``turn``."""

    def preview(action: Action) -> np.ndarray:
        px = to_pixels(action, st.geo)
        if px is None:
            return st.mask.copy()
        t0 = time.perf_counter()
        try:
            step = checked_step(run_tool(st.tool, px, preview=True), st.mask.shape)
        except Exception as exc:  # noqa: BLE001 - any tool failure is a recorded outcome
            raise ToolError(f"preview: {type(exc).__name__}: {exc}") from exc
        finally:  # tool time spent inside the policy call (also counted in its "policy")
            turn.timings["preview"] = turn.timings.get("preview", 0.0) + (time.perf_counter() - t0)
        st.previews[px] = step  # executing this action later commits it (no re-run)
        return np.array(to_host(step.mask), bool)

    return preview


def record_mask(st: EpisodeState, config: Any, turn: TurnRecord, mask: np.ndarray) -> np.ndarray:
    """Render the overlay view of ``mask`` ((S, S, 3) uint8, returned) and put the mask's RLE
    (if recorded), its stats and their timings into ``turn``."""
    dev = st.device
    t0 = time.perf_counter()
    if dev is not None:
        overlay = dev.overlay(mask, st.geo)
    else:
        overlay = render_observation(st.view, mask, st.geo)
    turn.timings["render"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if dev is not None:
        stats = dev.stats(mask, config.connectivity)
    else:
        stats = mask_stats(mask, st.gt, config.connectivity)
    turn.timings["stats"] = time.perf_counter() - t0
    turn.mask = rle_encode(to_host(mask)) if config.record_masks else None
    turn.mask_area, turn.components = stats["area"], stats["components"]
    turn.iou, turn.dice = stats["iou"], stats["dice"]
    return overlay


def run_tool(tool: Any, px: PixelBox | PixelPoint, preview: bool) -> Any:
    if isinstance(px, PixelBox):
        fn = tool.preview_box if preview else tool.add_box
        return fn(px.as_array())
    fn = tool.preview_point if preview else tool.add_point
    return fn([px.x, px.y], px.positive)


def pixel_action_record(px: PixelBox | PixelPoint, geometry: ViewGeometry) -> dict[str, Any]:
    """The record of a person's box / click: like an agent action's, grid from ``to_grid``."""
    g = to_grid(px, geometry)
    if isinstance(px, PixelBox):
        return {"name": "add_bbox", "clamped": False, "grid": [g.x1, g.y1, g.x2, g.y2],
                "pixels": px.as_array()}  # fmt: skip
    return {"name": "add_point", "clamped": False, "grid": [g.x, g.y], "pixels": [px.x, px.y],
            "positive": bool(px.positive)}  # fmt: skip


def readonly(mask: Any) -> np.ndarray:
    """A read-only host copy of ``mask``."""
    out = np.array(to_host(mask), copy=True)
    out.setflags(write=False)
    return out
