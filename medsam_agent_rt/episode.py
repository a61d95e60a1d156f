"""One episode as a steppable object (PROTOCOL.md, "Turn budget and stopping").

    ask ──policy text──> parse ──invalid──> retry once (same question) ──invalid again──> END invalid_output
                           │ stop_action ──first turn, not yet refused──> refuse, ask again
                           │             └─otherwise──> END stop
                           └ box / point ──> map 0..999 -> pixels ──> tool step ──raises──> END tool_error
                                               └─> overlay -> next question, or END budget after max_actions

``Episode(tool, policy, config)`` borrows a segmenter (or a tool factory) and a policy; it never
closes them. ``start(image, target, gt)`` encodes the image (one chained tool state per episode;
any number of episodes share one segmenter) and opens the record; ``step()`` runs ONE policy
turn and returns its TurnRecord; ``apply(action)`` applies a person's box / click (image pixels),
``"undo"`` or ``"accept"`` between agent turns, recorded with ``source="human"``; ``done``,
``mask``, ``record``, ``cancel()``; ``run(image, target, gt)`` = start + step until done. A
person's action reaches the policy only through the overlay it produces (the latest image of the
conversation is re-rendered), so the conversation stays the protocol's.

The policy's Observation says what became of its previous answer (``previous``: "executed",
"refused_stop", "invalid_output", or None on the first call). Tool errors (also inside a GT
policy's preview) end the episode as a recorded outcome, never as an escaped exception;
exceptions raised by the policy itself propagate from ``step()`` and leave the episode as it was.
Interactive sessions (``SessionConfig.agent_ends_episode=False``, the server): the agent's
stop, used-up budget or twice-invalid answer end only its part (``agent_done`` says which); the
episode stays open for a person's corrections until "accept".
Deadlines (SessionConfig): an answer arriving after ``turn_deadline_s`` is discarded (outcome
"late", end "turn_deadline"); ``episode_deadline_s`` is checked before each policy call and after
each answer (end "episode_deadline"). A running policy call is not interrupted. The final mask is
the last tool mask (empty when nothing ran), optionally cleaned with ``ops``. On a CUDA tool the
masks stay on the device (``episode_tool.DeviceViews``); the host gets the views and the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NamedTuple

import numpy as np

from medsam_agent_rt.episode_tool import (
    DeviceViews,
    EpisodeState,
    HumanAction,
    ToolError,
    check_human_action,
    checked_step,
    deadline_passed,
    pixel_action_record,
    postprocess_final,
    previewer,
    readonly,
    record_mask,
    run_tool,
    segmenter_tool_factory,
)
from medsam_agent_rt.policies.base import Observation, Policy, Task
from medsam_agent_rt.protocol import (
    ParseError,
    PixelBox,
    PixelPoint,
    Stop,
    as_rgb,
    build_messages,
    parse_turn,
    render_view,
    to_pixels,
    view_geometry,
)
from medsam_agent_rt.session_config import SessionConfig
from medsam_agent_rt.trajectory import (
    EpisodeRecord,
    TurnRecord,
    action_record,
    image_digest,
    jsonable,
    mask_stats,
)

__all__ = ["Episode", "EpisodeResult"]


class EpisodeResult(NamedTuple):
    mask: np.ndarray  # (H, W) bool, the final (optionally cleaned) mask
    record: EpisodeRecord


class Episode:
    """Episodes of ``policy`` driving a tool. ``tool``: a Segmenter (chained through
    ``segmenters.prompt_chain``) or a ToolFactory; ``tool_spec`` / backend name it in records;
    ``on_turn(turn)`` is called once per finished TurnRecord (agent or human), in order.
    One episode runs at a time per object (``start`` begins the next one); many Episode objects
    may share one segmenter."""

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
        self.on_turn = on_turn
        if hasattr(tool, "encode") and hasattr(tool, "decode"):
            self._factory = segmenter_tool_factory(tool, self.config.strategy)
            self.tool_spec = tool_spec or str(
                getattr(tool, "spec", getattr(tool, "family", "segmenter"))
            )
            self.backend = str(getattr(tool, "backend", ""))
        elif callable(tool):
            self._factory, self.tool_spec, self.backend = tool, tool_spec or "custom", ""
        else:
            raise TypeError(
                "tool must be a Segmenter (with encode / decode) or a callable image -> tool "
                f"state, got {type(tool).__name__}"
            )
        self._rec: EpisodeRecord | None = None
        self._st: EpisodeState | None = None
        self._lock = threading.Lock()
        self._in_step = False
        self._cancel_requested = False
        self._agent_finished: str | None = None  # see agent_done

    # ------------------------------------------------------------------ state
    @property
    def started(self) -> bool:
        return self._rec is not None

    @property
    def done(self) -> bool:
        """Whether the current episode has ended (``record.end_reason`` says why)."""
        return self._rec is not None and self._rec.end_reason is not None

    @property
    def record(self) -> EpisodeRecord:
        return self._running("record")[0]

    @property
    def agent_done(self) -> str | None:
        """Why the agent has finished in an episode that stays open (``config.agent_ends_episode``
        False: interactive sessions): "budget" (max_actions executed; ``step`` raises), "stop"
        or "invalid_output" (its last answer; ``step`` asks again, e.g. after a person's click);
        None while it may act, and whenever the episode itself has ended."""
        rec, st = self._running("agent_done")
        if rec.end_reason is not None or self.config.agent_ends_episode:
            return None
        if st.actions >= self.config.max_actions:
            return "budget"
        return self._agent_finished

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: the current tool mask while running; the final (cleaned) mask once done."""
        _, st = self._running("mask")
        out = st.final if st.final is not None else st.mask
        return readonly(out)

    def result(self) -> EpisodeResult:
        """(final mask, record) of the finished episode."""
        rec, st = self._running("result")
        if st.final is None:
            raise RuntimeError("the episode is still running: step() until done, or cancel()")
        return EpisodeResult(st.final, rec)

    def _running(self, what: str) -> tuple[EpisodeRecord, EpisodeState]:
        if self._rec is None or self._st is None:
            raise RuntimeError(f"{what}: no episode started; call start(image, target) first")
        return self._rec, self._st

    def _check_open(self, what: str) -> tuple[EpisodeRecord, EpisodeState]:
        rec, st = self._running(what)
        if rec.end_reason is not None:
            raise RuntimeError(f"{what}: the episode is over (end reason {rec.end_reason!r})")
        return rec, st

    # ------------------------------------------------------------------ start / run
    def start(
        self, image: np.ndarray, target: str, gt: np.ndarray | None = None, image_id: str = ""
    ) -> EpisodeRecord:
        """Begin an episode on ``image`` ((H, W, 3) uint8) for ``target``; ``gt`` ((H, W) bool)
        enables per-turn scores and is required by GT-driven policies. Encodes the image (a
        failing encoder ends the episode at once with "tool_error"). Returns the live record."""
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
        view = render_view(rgb, geo)
        st = EpisodeState(
            None, geo, view, np.zeros((h, w), bool), gt, needs_gt,
            cfg.invalid_retries, cfg.refuse_first_stop, [view], t_start=t_start,
        )  # fmt: skip
        self._rec, self._st, self._cancel_requested = rec, st, False
        self._agent_finished = None
        t0 = time.perf_counter()
        try:
            st.tool = self._factory(rgb)
        except Exception as exc:  # noqa: BLE001 - the encoder failing is a tool error too
            st.encode_s = time.perf_counter() - t0
            self._end("tool_error", f"{type(exc).__name__}: {exc}")
            return rec
        st.encode_s = time.perf_counter() - t0
        if getattr(st.tool, "on_device", False):  # masks stay on the tool's device
            st.device = DeviceViews(view, gt)
        rec.backend = rec.backend or str(getattr(st.tool, "backend", ""))
        rec.strategy = str(getattr(st.tool, "strategy", ""))
        self.policy.reset(Task(rgb, geo, target, gt if needs_gt else None, image_id))
        return rec

    def run(
        self, image: np.ndarray, target: str, gt: np.ndarray | None = None, image_id: str = ""
    ) -> EpisodeResult:
        """One whole episode: ``start`` then ``step`` until done. Returns (final mask, record)."""
        self.start(image, target, gt, image_id)
        while not self.done:
            self.step()
        return self.result()

    def cancel(self) -> None:
        """End the episode with "cancelled" (safe from another thread: a policy call in flight
        finishes, its answer is recorded as "cancelled" and not executed). No-op when done."""
        with self._lock:
            if self._rec is None or self.done:
                return
            if self._in_step:
                self._cancel_requested = True
                return
        self._end("cancelled")

    # ------------------------------------------------------------------ one policy turn
    def step(self) -> TurnRecord | None:
        """One policy call and what became of it; returns its TurnRecord (None when the episode
        ended without a call: the episode deadline had passed). Raises RuntimeError when the
        episode is over; an exception from the policy propagates and changes nothing."""
        rec, st = self._check_open("step")
        if self.agent_done == "budget":
            raise RuntimeError(
                f"step: the agent's budget of {self.config.max_actions} actions is used up; "
                "apply a person's action or 'accept'"
            )
        self._agent_finished = None
        late = deadline_passed(self.config, st, None)
        if late is not None:
            self._end(*late)
            return None
        turn = TurnRecord(len(rec.turns), st.actions, "", "invalid", st.retry)
        obs = Observation(
            messages=build_messages(rec.target, st.images, st.texts),
            turn=st.calls,
            step=st.actions,
            retry=st.retry,
            previous=st.previous,
            mask=readonly(st.mask) if st.needs_gt else None,
            preview=previewer(st, turn) if st.needs_gt else None,
        )
        with self._lock:
            self._in_step = True
        t0 = time.perf_counter()
        try:
            out = self.policy.act(obs)
        except ToolError as exc:
            turn.timings["policy"] = time.perf_counter() - t0
            turn.outcome, turn.tool_error = "tool_error", str(exc)
            return self._finish(turn, ("tool_error", str(exc)))
        finally:
            with self._lock:
                self._in_step = False
        elapsed = time.perf_counter() - t0
        st.calls += 1
        turn.timings["policy"] = elapsed
        turn.text = out.text if isinstance(out.text, str) else repr(out.text)
        turn.info = jsonable(dict(out.info or {}))
        if self._cancel_requested:
            turn.outcome = "cancelled"
            return self._finish(turn, ("cancelled", None))
        late = deadline_passed(self.config, st, elapsed)
        if late is not None:
            turn.outcome = "late"
            return self._finish(turn, late)
        return self._finish(turn, self._answer(turn, out.text))

    def _answer(self, turn: TurnRecord, text: Any) -> tuple[str, str | None] | None:
        """Parse and act on one answer; the (end reason, error) it ends the episode with."""
        st, cfg = self._st, self.config
        assert st is not None
        parsed = parse_turn(text)
        turn.phrase, turn.repairs, result = parsed.phrase, list(parsed.repairs), parsed.result
        if isinstance(result, ParseError):
            turn.parse_error, turn.parse_detail = result.reason, result.detail
            if st.invalid_left > 0:
                st.invalid_left -= 1
                st.retry = st.previous = "invalid_output"
                return None
            st.invalid_left = cfg.invalid_retries  # an interactive session may ask again later
            return self._agent_end("invalid_output")
        st.invalid_left = cfg.invalid_retries
        turn.action = action_record(result, st.geo)
        if isinstance(result, Stop):
            if st.actions == 0 and st.refusals_left > 0:
                st.refusals_left -= 1
                st.retry = st.previous = turn.outcome = "refused_stop"
                return None
            turn.outcome = "stop"
            return self._agent_end("stop")
        st.retry = None
        overlay = self._execute(to_pixels(result, st.geo), turn)
        if overlay is None:
            return "tool_error", turn.tool_error
        st.previous = "executed"
        st.images.append(overlay)
        st.texts.append(turn.text)
        st.actions += 1
        return self._agent_end("budget") if st.actions >= cfg.max_actions else None

    def _agent_end(self, reason: str) -> tuple[str, None] | None:
        """End the episode with ``reason`` (the agent's stop, budget or invalid output), or, in
        an interactive session, only the agent's part (``agent_done``)."""
        if self.config.agent_ends_episode:
            return reason, None
        self._agent_finished = reason
        return None

    # ------------------------------------------------------------------ a person's actions
    def apply(self, action: HumanAction, source: str = "human") -> TurnRecord:
        """Apply a box / click in IMAGE PIXELS (``protocol.PixelBox`` / ``PixelPoint``),
        ``"undo"`` (the last box or click, the agent's or a person's) or ``"accept"`` (end with
        the current mask). Recorded as a turn with ``source``; the policy sees its effect only
        through the next overlay. Bad input raises ValueError / TypeError and changes nothing;
        a tool failure raises ToolError and changes nothing."""
        rec, st = self._check_open("apply")
        if source == "agent" or not isinstance(source, str) or not source:
            raise ValueError(
                f"source must name who acted (e.g. 'human'); agent turns come from step(), got {source!r}"
            )
        action = check_human_action(action, st.mask.shape)
        turn = TurnRecord(len(rec.turns), st.actions, "", "executed", source=source)
        if action == "accept":
            turn.outcome, turn.action = "accept", {"name": "accept"}
            return self._finish(turn, ("accepted", None))
        if action == "undo":
            undo = getattr(st.tool, "undo", None)
            if undo is None:
                raise TypeError(f"the tool ({type(st.tool).__name__}) does not support undo")
            if not st.undo:
                raise ValueError("nothing to undo: no box or click has been applied yet")
            undo()
            undone, st.mask = st.undo.pop()
            turn.outcome, turn.action = "undo", {"name": "undo", "undone_turn": undone}
            overlay = record_mask(st, self.config, turn, st.mask)
        else:
            overlay = self._execute(action, turn)
            if overlay is None:
                raise ToolError(turn.tool_error)
            turn.action = pixel_action_record(action, st.geo)
        st.previews.clear()
        self._agent_finished = None  # the agent may act again on the new overlay
        st.images[-1] = overlay  # the policy sees a person's action only through the overlay
        return self._finish(turn, None)

    # ------------------------------------------------------------------ shared machinery
    def _execute(self, px: PixelBox | PixelPoint, turn: TurnRecord) -> np.ndarray | None:
        """Run one box / click on the chained state and record it in ``turn``; returns the new
        overlay view, or None (``turn.tool_error`` set, state unchanged) when the tool failed."""
        st = self._st
        assert st is not None
        previewed = st.previews.get(px)
        t0 = time.perf_counter()
        try:
            if previewed is not None and hasattr(st.tool, "commit"):
                step = st.tool.commit(previewed)
            else:
                step = checked_step(run_tool(st.tool, px, preview=False), st.mask.shape)
        except Exception as exc:  # noqa: BLE001 - a tool failure becomes a recorded outcome
            turn.timings["tool"] = time.perf_counter() - t0
            turn.outcome, turn.tool_error = "tool_error", f"{type(exc).__name__}: {exc}"
            return None
        turn.timings["tool"] = time.perf_counter() - t0
        st.undo.append((turn.index, st.mask))
        st.previews.clear()
        mask = step.mask if st.device is not None else np.ascontiguousarray(step.mask, bool)
        score = getattr(step, "score", None)
        turn.outcome, turn.tool_score = "executed", None if score is None else float(score)
        prompts = getattr(step, "prompts", None)
        turn.prompts = jsonable(prompts.to_dict() if hasattr(prompts, "to_dict") else prompts)
        overlay = record_mask(st, self.config, turn, mask)
        st.mask = mask
        return overlay

    def _finish(self, turn: TurnRecord, end: tuple[str, str | None] | None) -> TurnRecord:
        """Append ``turn``, report it, end the episode when ``end`` says so."""
        rec = self._rec
        assert rec is not None
        rec.turns.append(turn)
        if self.on_turn is not None:
            self.on_turn(turn)
        if end is not None:
            self._end(*end)
        return turn

    def _end(self, reason: str, error: str | None = None) -> None:
        rec, st = self._rec, self._st
        assert rec is not None and st is not None
        with self._lock:
            if rec.end_reason is not None:
                return
            rec.end_reason = reason
        if reason in ("tool_error", "turn_deadline", "episode_deadline"):
            rec.error = error
        cfg = self.config
        final = postprocess_final(st.mask, cfg)
        post = [n for n in ("keep_largest", "fill_holes") if getattr(cfg, n)]
        stats = mask_stats(final, st.gt, cfg.connectivity)
        rec.final = {**stats, "postprocess": post, "raw_area": int(st.mask.sum())}
        rec.summarize({"encode": st.encode_s, "episode": time.perf_counter() - st.t_start})
        st.final = final
