"""One episode as an explicit state machine (PROTOCOL.md, "Turn budget and stopping").

    ask ──policy text──> parse ──invalid──> retry once (same question) ──invalid again──> END invalid_output
                           │ stop_action ──first turn, not yet refused──> refuse, ask again
                           │             └─otherwise──> END stop
                           └ box / point ──> map 0..999 -> pixels ──> tool step ──raises──> END tool_error
                                               └─> overlay -> next question, or END budget after max_actions

One chained tool state per episode (the image is encoded once); the policy sees the protocol
messages with every earlier turn and image. Tool errors (also inside a GT policy's preview) end
the episode as a recorded outcome, never as an escaped exception; exceptions raised by the policy
itself (a crashed model server, a bug) do propagate. The final mask is the last tool mask
(empty when nothing ran), optionally cleaned (largest component, holes) with ``ops``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from medsam_agent_rt.policies.base import Observation, Policy, Task
from medsam_agent_rt.protocol import (
    Action,
    ParseError,
    PixelBox,
    Stop,
    ViewGeometry,
    as_rgb,
    build_messages,
    parse_turn,
    render_observation,
    render_view,
    to_pixels,
    view_geometry,
)
from medsam_agent_rt.session_config import SessionConfig
from medsam_agent_rt.session_tool import (
    ToolError,
    ToolState,
    checked_step,
    segmenter_tool_factory,
)
from medsam_agent_rt.trajectory import (
    EpisodeRecord,
    TurnRecord,
    action_record,
    image_digest,
    jsonable,
    mask_stats,
    rle_encode,
)

__all__ = [
    "EpisodeResult",
    "Session",
    "SessionConfig",
    "ToolError",
    "postprocess_final",
    "run_episode",
]


class EpisodeResult(NamedTuple):
    mask: np.ndarray  # (H, W) bool, the final (optionally cleaned) mask
    record: EpisodeRecord


class Session:
    """Runs episodes of ``policy`` driving a tool. ``tool``: a Segmenter (chained through
    ``segmenters.episode``) or a ToolFactory; ``tool_spec`` / ``backend`` name it in records;
    ``on_turn(turn)`` is called once per finished TurnRecord while the episode runs."""

    def __init__(
        self,
        tool: Any,
        policy: Policy,
        config: SessionConfig | None = None,
        *,
        tool_spec: str | None = None,
        on_turn: Callable[[TurnRecord], None] | None = None,
    ) -> None:
        self.config = config or SessionConfig()
        self.policy = policy
        self.on_turn = on_turn  # called with each finished turn, in order (progress display)
        if hasattr(tool, "set_image") and hasattr(tool, "predict"):
            self._factory = segmenter_tool_factory(tool, self.config.strategy)
            self.tool_spec = tool_spec or str(
                getattr(tool, "spec", getattr(tool, "family", "segmenter"))
            )
            self.backend = str(getattr(tool, "backend", ""))
        elif callable(tool):
            self._factory, self.tool_spec, self.backend = tool, tool_spec or "custom", ""
        else:
            raise TypeError(
                f"tool must be a Segmenter or a callable image -> tool state, got {type(tool).__name__}"
            )

    def run(
        self, image: np.ndarray, target: str, gt: np.ndarray | None = None, image_id: str = ""
    ) -> EpisodeResult:
        """One episode on ``image`` ((H, W, 3) uint8) for ``target``; ``gt`` ((H, W) bool) enables
        per-turn scores and is required by GT-driven policies. Returns (final mask, record)."""
        t_start = time.perf_counter()
        rgb = as_rgb(image)
        h, w = rgb.shape[:2]
        if gt is not None:
            if np.shape(gt) != (h, w):
                raise ValueError(
                    f"gt must be (H, W) = ({h}, {w}) like the image, got {np.shape(gt)}"
                )
            gt = np.asarray(gt) != 0
        needs_gt = bool(getattr(self.policy, "requires_gt", False))
        if needs_gt and gt is None:
            name = getattr(self.policy, "name", "?")
            raise ValueError(f"policy {name!r} is GT-driven: pass gt (the ground-truth mask)")
        cfg, geo = self.config, view_geometry(rgb.shape, self.config.view_size)
        rec = EpisodeRecord(
            image_id=image_id,
            image_shape=[h, w],
            image_sha256=image_digest(rgb),
            target=target,
            policy=str(
                getattr(self.policy, "spec", None)
                or getattr(self.policy, "name", type(self.policy).__name__)
            ),
            segmenter=self.tool_spec,
            backend=self.backend,
            strategy="",
            config=asdict(cfg),
            view=geo.to_dict(),
        )
        state = _State(np.zeros((h, w), bool), [render_view(rgb, geo)], [])
        t0 = time.perf_counter()
        try:
            tool = self._factory(rgb)
        except Exception as exc:  # noqa: BLE001 - the encoder failing is a tool error too
            tool, rec.end_reason, rec.error = None, "tool_error", f"{type(exc).__name__}: {exc}"
        encode_s = time.perf_counter() - t0
        if tool is not None:
            rec.backend = rec.backend or str(getattr(tool, "backend", ""))
            rec.strategy = str(getattr(tool, "strategy", ""))
            self.policy.reset(Task(rgb, geo, target, gt if needs_gt else None, image_id))
            self._loop(tool, geo, state, gt, needs_gt, rec)
            self._report(rec, state)
        final = postprocess_final(state.mask, cfg)
        post = [n for n in ("keep_largest", "fill_holes") if getattr(cfg, n)]
        stats = mask_stats(final, gt, cfg.connectivity)
        rec.final = {**stats, "postprocess": post, "raw_area": int(state.mask.sum())}
        rec.summarize({"encode": encode_s, "episode": time.perf_counter() - t_start})
        return EpisodeResult(final, rec)

    def _loop(
        self,
        tool: ToolState,
        geo: ViewGeometry,
        state: _State,
        gt: np.ndarray | None,
        needs_gt: bool,
        rec: EpisodeRecord,
    ) -> None:
        """The state machine; sets rec.end_reason."""
        cfg, hw = self.config, (geo.height, geo.width)

        def preview(action: Action) -> np.ndarray:
            px = to_pixels(action, geo)
            if px is None:
                return state.mask.copy()
            t0 = time.perf_counter()
            try:
                if isinstance(px, PixelBox):
                    step = checked_step(tool.preview_box(px.as_array()), hw)
                else:
                    step = checked_step(tool.preview_point([px.x, px.y], px.positive), hw)
            except Exception as exc:  # noqa: BLE001 - any tool failure is a recorded outcome
                raise ToolError(f"preview: {type(exc).__name__}: {exc}") from exc
            finally:  # tool time spent inside the policy call (also counted in its "policy")
                timings = rec.turns[-1].timings
                timings["preview"] = timings.get("preview", 0.0) + time.perf_counter() - t0
            state.previews[px] = step  # executing this action later commits it (no re-run)
            return np.array(step.mask, bool)

        retry: str | None = None
        invalid_left, refusals_left = cfg.invalid_retries, cfg.refuse_first_stop
        while rec.end_reason is None:
            self._report(rec, state)
            if state.actions >= cfg.max_actions:
                rec.end_reason = "budget"
                break
            obs = Observation(
                messages=build_messages(rec.target, state.images, state.texts),
                turn=len(rec.turns),
                step=state.actions,
                retry=retry,
                mask=_readonly(state.mask) if needs_gt else None,
                preview=preview if needs_gt else None,
            )
            turn = TurnRecord(len(rec.turns), state.actions, "", "invalid", retry)
            rec.turns.append(turn)
            t0 = time.perf_counter()
            try:
                out = self.policy.act(obs)
            except ToolError as exc:
                turn.timings["policy"] = time.perf_counter() - t0
                turn.outcome, turn.tool_error = "tool_error", str(exc)
                rec.end_reason, rec.error = "tool_error", str(exc)
                break
            turn.timings["policy"] = time.perf_counter() - t0
            turn.text = out.text if isinstance(out.text, str) else repr(out.text)
            turn.info = jsonable(dict(out.info or {}))
            parsed = parse_turn(out.text)
            turn.phrase, turn.repairs, result = parsed.phrase, list(parsed.repairs), parsed.result
            if isinstance(result, ParseError):
                turn.parse_error, turn.parse_detail = result.reason, result.detail
                if invalid_left > 0:
                    invalid_left, retry = invalid_left - 1, "invalid_output"
                    continue
                rec.end_reason = "invalid_output"
                break
            invalid_left = cfg.invalid_retries
            turn.action = action_record(result, geo)
            if isinstance(result, Stop):
                if state.actions == 0 and refusals_left > 0:
                    refusals_left, retry = refusals_left - 1, "refused_stop"
                    turn.outcome = "refused_stop"
                    continue
                turn.outcome, rec.end_reason = "stop", "stop"
                break
            retry = None
            self._execute(tool, result, geo, turn, state, gt, rec)

    def _report(self, rec: EpisodeRecord, state: _State) -> None:
        """Hand the turns finished since the last call to ``on_turn`` (once each, in order)."""
        if self.on_turn is not None:
            for turn in rec.turns[state.reported :]:
                self.on_turn(turn)
        state.reported = len(rec.turns)

    def _execute(
        self,
        tool: ToolState,
        action: Action,
        geo: ViewGeometry,
        turn: TurnRecord,
        state: _State,
        gt: np.ndarray | None,
        rec: EpisodeRecord,
    ) -> None:
        """Run one box/point on the chained state and record it (or the tool error)."""
        px, hw = to_pixels(action, geo), (geo.height, geo.width)
        previewed = state.previews.get(px)
        t0 = time.perf_counter()
        try:
            if previewed is not None and hasattr(tool, "commit"):
                step = tool.commit(previewed)
            elif isinstance(px, PixelBox):
                step = checked_step(tool.add_box(px.as_array()), hw)
            else:
                step = checked_step(tool.add_point([px.x, px.y], px.positive), hw)
        except Exception as exc:  # noqa: BLE001 - a tool failure becomes a recorded outcome
            turn.timings["tool"] = time.perf_counter() - t0
            turn.outcome, turn.tool_error = "tool_error", f"{type(exc).__name__}: {exc}"
            rec.end_reason, rec.error = "tool_error", turn.tool_error
            return
        turn.timings["tool"] = time.perf_counter() - t0
        mask = np.ascontiguousarray(step.mask, bool)
        t0 = time.perf_counter()
        overlay = render_observation(state.images[0], mask, geo)
        turn.timings["render"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats = mask_stats(mask, gt, self.config.connectivity)
        turn.timings["stats"] = time.perf_counter() - t0
        score = getattr(step, "score", None)
        turn.outcome, turn.tool_score = "executed", None if score is None else float(score)
        turn.mask = rle_encode(mask) if self.config.record_masks else None
        prompts = getattr(step, "prompts", None)
        turn.prompts = jsonable(prompts.to_dict() if hasattr(prompts, "to_dict") else prompts)
        turn.mask_area, turn.components = stats["area"], stats["components"]
        turn.iou, turn.dice = stats["iou"], stats["dice"]
        state.mask, state.actions = mask, state.actions + 1
        state.previews.clear()
        state.images.append(overlay)
        state.texts.append(turn.text)


def postprocess_final(mask: np.ndarray, config: SessionConfig) -> np.ndarray:
    """The final mask: (H, W) bool, optionally largest component only, then holes filled."""
    from medsam_agent_rt import ops

    out = np.ascontiguousarray(mask, bool)
    if config.keep_largest and out.any():
        out = ops.keep_largest_component(out, config.connectivity)
    if config.fill_holes and out.any():
        out = ops.fill_holes(out, config.max_hole_area, connectivity=config.connectivity)
    return np.ascontiguousarray(out, bool)


@dataclass
class _State:
    mask: np.ndarray
    images: list[np.ndarray]
    texts: list[str]
    actions: int = 0
    previews: dict[Any, Any] = field(default_factory=dict)  # pixel action -> previewed step
    reported: int = 0  # turns already handed to on_turn


def _readonly(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out.setflags(write=False)
    return out


def run_episode(
    tool: Any,
    policy: Policy,
    image: np.ndarray,
    target: str,
    gt: np.ndarray | None = None,
    *,
    config: SessionConfig | None = None,
    image_id: str = "",
) -> EpisodeResult:
    """One-call form of ``Session(tool, policy, config).run(image, target, gt, image_id)``."""
    return Session(tool, policy, config).run(image, target, gt, image_id)
