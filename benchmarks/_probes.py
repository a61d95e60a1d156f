"""Timing probes around one agent episode: where its wall time goes, stage by stage.

The episode records policy / tool / render per turn, but a GT-driven policy (expert) runs the
segmenter itself (previews) inside its policy call, and the segmenter's own post-processing
(low-res logits -> full-size mask, ``ops.postprocess_masks``) is inside its ``decode``. The
probes split these without touching the runtime:

- ``TimedSegmenter`` wraps any Segmenter: ``encode`` -> "encode", ``decode`` -> "predict" (the
  decoder call, named as in the README's latency table);
- ``timed_postprocess`` wraps ``medsam_agent_rt.ops.postprocess_masks`` -> "postprocess" (a
  backend that binds the function at import time is not seen: its calls count 0, and the
  benchmark reports post-process as not separable rather than 0);
- ``TimedPolicy`` wraps the policy and snapshots the clock at every call, so each turn gets the
  segmenter time spent inside the policy call and until the next call (``turn_stages``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Clock:
    """Accumulated seconds and call counts per stage, plus every single duration."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.each: dict[str, list[float]] = defaultdict(list)

    def add(self, stage: str, seconds: float) -> None:
        self.total[stage] += seconds
        self.calls[stage] += 1
        self.each[stage].append(seconds)

    def snapshot(self) -> dict[str, tuple[float, int]]:
        return {k: (self.total[k], self.calls[k]) for k in ("predict", "postprocess")}


class TimedSegmenter:
    """A Segmenter that times ``encode`` and ``decode``; everything else is delegated."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner, self._clock = inner, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def encode(self, image: Any, keep: bool = True) -> Any:
        t0 = time.perf_counter()
        out = self._inner.encode(image, keep=keep)  # keep=False: a zoom crop (segmenters.zoom)
        self._clock.add("encode", time.perf_counter() - t0)
        return out

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = self._inner.decode(*args, **kwargs)
        self._clock.add("predict", time.perf_counter() - t0)
        return out


@contextmanager
def timed_postprocess(clock: Clock) -> Iterator[None]:
    """Route ``ops.postprocess_masks`` through a timer for the duration of the block."""
    from medsam_agent_rt import ops

    real = ops.postprocess_masks

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            clock.add("postprocess", time.perf_counter() - t0)

    ops.postprocess_masks = timed
    try:
        yield
    finally:
        ops.postprocess_masks = real


class TimedPolicy:
    """A Policy that records, per call, the clock before and after it and its wall time."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner, self._clock = inner, clock
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def reset(self, task: Any) -> None:
        self.calls = []
        self._inner.reset(task)

    def act(self, observation: Any) -> Any:
        before = self._clock.snapshot()
        t0 = time.perf_counter()
        out = self._inner.act(observation)
        seconds = time.perf_counter() - t0
        self.calls.append({"before": before, "after": self._clock.snapshot(), "act": seconds})
        return out


def turn_stages(policy: TimedPolicy, clock: Clock, record: Any) -> list[dict[str, float | None]]:
    """Per policy call: policy (its own compute, segmenter calls inside excluded), tool
    (segmenter calls from this call to the next, post-processing excluded), postprocess, and for
    executed actions render and stats (from the record). ``record.turns`` must match the calls."""
    if len(policy.calls) != len(record.turns):
        raise RuntimeError(
            f"probe saw {len(policy.calls)} policy calls but the record has {len(record.turns)}"
        )
    end = clock.snapshot()
    out = []
    for i, (call, turn) in enumerate(zip(policy.calls, record.turns)):
        nxt = policy.calls[i + 1]["before"] if i + 1 < len(policy.calls) else end
        b, a = call["before"], call["after"]
        predict_in_act = a["predict"][0] - b["predict"][0]
        predict = nxt["predict"][0] - b["predict"][0]
        post = nxt["postprocess"][0] - b["postprocess"][0]
        executed = turn.outcome == "executed"
        out.append(
            {
                "policy": max(call["act"] - predict_in_act, 0.0),
                "tool": max(predict - post, 0.0),
                "postprocess": post,
                "render": turn.timings.get("render") if executed else None,
                "stats": turn.timings.get("stats") if executed else None,
                "tool_calls": nxt["predict"][1] - b["predict"][1],
            }
        )
    return out
