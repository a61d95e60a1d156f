"""Drives a session's ``Episode`` (the one episode loop of the package) through the model
worker and publishes what happened: agent turns, a person's actions, resets and the end.

Nothing here loops over turns on its own except ``run_to_end``, which submits ONE
``Episode.step`` per worker call so that other sessions' turns interleave; every call that
touches the segmenter or the policy goes through ``Driver.worker``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from medsam_agent_rt.server.logs import log
from medsam_agent_rt.server.metrics import Metrics
from medsam_agent_rt.server.sessions import Session
from medsam_agent_rt.server.worker import ModelWorker


class SessionConflict(Exception):
    """The session is not in a state that allows the request (HTTP 409)."""


class PolicyFailed(Exception):
    """The policy itself raised during a turn (HTTP 502); the episode is unchanged."""


class PolicySource:
    """The policy of every session: one shared object for model policies (their state is the
    conversation each call receives), a fresh cheap instance per session for GT-driven ones
    (``expert``, ``clicker:K``, ``oracle-box``: they keep per-episode state)."""

    def __init__(self, spec: Any) -> None:
        from medsam_agent_rt.policies import build_policy

        self.spec = spec
        self.shared = build_policy(spec)
        self.requires_gt = bool(getattr(self.shared, "requires_gt", False))
        self.name = str(getattr(self.shared, "spec", None) or getattr(self.shared, "name", spec))

    def for_session(self) -> Any:
        from medsam_agent_rt.policies import build_policy

        return build_policy(self.spec) if self.requires_gt else self.shared


def parse_action(body: Any, hw: tuple[int, int]) -> Any:
    """A person's action from JSON: ``{"type": "point", "x", "y", "positive"}``,
    ``{"type": "box", "box": [x1, y1, x2, y2]}``, ``{"type": "undo"}`` or ``{"type": "accept"}``
    (image pixels) -> ``protocol.PixelPoint`` / ``PixelBox`` / "undo" / "accept" (ValueError
    naming the problem otherwise)."""
    from medsam_agent_rt.episode_tool import check_human_action
    from medsam_agent_rt.protocol import PixelBox, PixelPoint

    if not isinstance(body, dict):
        raise ValueError("the action must be a JSON object with a 'type'")
    kind = body.get("type")
    if kind in ("undo", "accept"):
        return kind
    try:
        if kind == "point":
            x, y, positive = body["x"], body["y"], body.get("positive", True)
            if not isinstance(positive, bool):
                raise ValueError(f"'positive' must be true or false, got {positive!r}")
            action = PixelPoint(_int(x, "x"), _int(y, "y"), positive)
        elif kind == "box":
            box = body["box"]
            if not isinstance(box, list) or len(box) != 4:
                raise ValueError(f"'box' must be [x1, y1, x2, y2], got {box!r}"[:200])
            action = PixelBox(*(_int(v, "box") for v in box))
        else:
            raise ValueError(f"'type' must be point, box, undo or accept; got {kind!r}"[:200])
    except KeyError as e:
        raise ValueError(f"a {kind} action needs the field {e.args[0]!r}") from None
    return check_human_action(action, hw)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number (image pixels), got {value!r}"[:200])
    return int(round(value))


def turn_json(turn: Any) -> dict[str, Any]:
    """A TurnRecord for clients: everything but the mask RLE, the prompts and the policy's
    token-level info (those are in trajectory.json)."""
    from medsam_agent_rt.trajectory import jsonable

    out = jsonable(asdict(turn))
    for key in ("mask", "prompts", "info"):
        out.pop(key, None)
    return out


class Driver:
    """Starts, steps, applies and ends sessions' episodes on the model worker."""

    def __init__(self, segmenter: Any, policies: PolicySource, session_config: Any,
                 worker: ModelWorker, metrics: Metrics, tool_spec: str) -> None:  # fmt: skip
        self.segmenter, self.policies, self.config = segmenter, policies, session_config
        self.worker, self.metrics, self.tool_spec = worker, metrics, tool_spec

    # ------------------------------------------------------------------ episode lifetime
    async def ensure_started(self, s: Session) -> Any:
        """The session's running episode, started (image encoded) when needed. Call with
        ``s.lock`` held."""
        ep = s.episode
        if ep is not None and ep.started:
            return ep
        if not s.target.strip():
            raise SessionConflict("set the target first (PUT /api/sessions/{id}/target)")
        if self.policies.requires_gt and s.gt is None:
            raise SessionConflict(
                f"the server's policy {self.policies.name!r} is GT-driven: upload the "
                "ground-truth mask first (PUT /api/sessions/{id}/gt)"
            )
        from medsam_agent_rt.episode import Episode
        from medsam_agent_rt.segmenters.store import image_key

        store = getattr(self.segmenter, "store", None)
        if store is not None:
            hit = image_key(s.loaded.rgb) in store
            self.metrics.inc("msrt_encoder_cache_total", result="hit" if hit else "miss")
        s.policy = self.policies.for_session()
        ep = Episode(self.segmenter, s.policy, self.config, tool_spec=self.tool_spec)
        t0 = time.perf_counter()
        await self.worker.call(ep.start, s.loaded.rgb, s.target, s.gt, s.name, what="start")
        s.episode = ep
        log("episode_started", session_id=s.id, generation=s.generation,
            encode_s=round(time.perf_counter() - t0, 4), target=s.target)  # fmt: skip
        await s.publish("start", state=s.state())
        await self.publish_end(s)  # an encoder failure ends the episode at once
        return ep

    async def reset(self, s: Session, why: str) -> None:
        """Drop the current episode (a new target, window, slice, GT, or an explicit reset);
        the next turn starts a new one. Call with ``s.lock`` held."""
        s.stop_requested = True
        if s.episode is not None and s.episode.started:
            s.episode.cancel()
        s.episode, s.exported = None, None
        s.generation += 1
        await s.publish("reset", reason=why, state=s.state())

    async def publish_end(self, s: Session) -> None:
        ep = s.episode
        if (
            ep is None
            or not ep.done
            or any(e["kind"] == "end" and e["generation"] == s.generation for e in s.events[-3:])
        ):
            return
        rec = ep.record
        self.metrics.inc("msrt_episodes_total", end_reason=str(rec.end_reason))
        log("episode_ended", session_id=s.id, end_reason=rec.end_reason, turns=len(rec.turns),
            area=(rec.final or {}).get("area"))  # fmt: skip
        await s.publish("end", state=s.state())

    # ------------------------------------------------------------------ turns
    async def _turns(self, s: Session, ep: Any, call: Any, *args: Any, source: str) -> list[dict]:
        """Run ``call(*args)`` on the worker; publish and return the turns it recorded."""
        before = len(ep.record.turns)
        t0 = time.perf_counter()
        try:
            await self.worker.call(call, *args, what=source)
        finally:
            seconds = time.perf_counter() - t0
            self.metrics.observe("msrt_turn_seconds", seconds, source=source)
        new = [turn_json(t) for t in ep.record.turns[before:]]
        for t in new:
            self.metrics.inc("msrt_turns_total", source=t["source"], outcome=t["outcome"])
            log("turn", session_id=s.id, index=t["index"], source=t["source"],
                outcome=t["outcome"], seconds=round(seconds, 4), area=t["mask_area"])  # fmt: skip
            await s.publish("turn", turn=t)
        await self.publish_end(s)
        return new

    async def step(self, s: Session) -> list[dict]:
        """One agent turn. Call with ``s.lock`` held."""
        ep = await self.ensure_started(s)
        if ep.done:
            raise SessionConflict(f"the episode is over ({ep.record.end_reason}); reset to go on")
        if ep.agent_done == "budget":
            raise SessionConflict(
                f"the agent has used its {self.config.max_actions} actions: click, undo or accept"
            )
        try:
            return await self._turns(s, ep, ep.step, source="agent")
        except RuntimeError as e:
            if ep.done:  # cancelled or evicted while queued
                raise SessionConflict(str(e)) from None
            raise PolicyFailed(f"the policy failed: {type(e).__name__}: {e}") from e
        except Exception as e:  # noqa: BLE001 - the policy raised: the episode is unchanged
            raise PolicyFailed(f"the policy failed: {type(e).__name__}: {e}") from e

    async def apply(self, s: Session, action: Any) -> list[dict]:
        """A person's box / click / undo / accept. Call with ``s.lock`` held. ValueError /
        TypeError for an action the episode refuses (nothing changed)."""
        ep = await self.ensure_started(s)
        if ep.done:
            raise SessionConflict(f"the episode is over ({ep.record.end_reason}); reset to go on")
        return await self._turns(s, ep, ep.apply, action, "human", source="human")

    async def stop_run(self, s: Session, cancel: bool = False) -> None:
        """Stop the session's agent run after its current turn and wait for it; ``cancel``
        also ends the episode ("cancelled"; a turn in flight is discarded)."""
        s.stop_requested = True
        if cancel and s.episode is not None and s.episode.started:
            s.episode.cancel()
        if s.runner is not None:
            await asyncio.shield(s.runner)

    async def run_to_end(self, s: Session) -> None:
        """Agent turns until the episode ends, a stop is requested or the session closes;
        one worker call per turn (the session lock is released between turns so a person's
        action can come in)."""
        try:
            while not s.stop_requested and not s.closed:
                async with s.lock:
                    if s.stop_requested or s.closed:
                        break
                    ep = await self.ensure_started(s)
                    if ep.done or ep.agent_done == "budget":
                        break
                    await self.step(s)
                    if ep.agent_done is not None:  # stop / invalid output: the person's turn
                        break
        except (SessionConflict, PolicyFailed) as e:
            if not s.closed:
                await s.publish("error", detail=str(e))
        finally:
            if not s.closed:
                await s.publish("stopped", state={**s.state(), "running": False})
