"""A deterministic geometric stand-in for the chained segmenter state, for exact session tests.

Mask rule ("box+all_clicks", no mask input): the filled box rectangle (inclusive pixel corners),
then each click in order: a positive click ORs a disc of radius ``radius`` px around it, a
negative click clears that disc. A new box replaces the old one and keeps the clicks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsam_agent_rt.protocol import AddBox, AddPoint, Stop, format_action

BOX = format_action(AddBox(300, 250, 700, 700))
POS = format_action(AddPoint(500, 400, True))
NEG = format_action(AddPoint(400, 500, False))
STOP = format_action(Stop())


def px(v: int, s: int, pad: int) -> int:
    """Independent oracle of the grid mapping: round half up of v * (S - 1) / 999, minus padding."""
    return int(np.floor(v * (s - 1) / 999 + 0.5)) - pad


@dataclass
class Step:
    mask: np.ndarray
    score: float
    prompts: dict


def disc(h: int, w: int, x: int, y: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - x) ** 2 + (yy - y) ** 2 <= r * r


def rule_mask(h, w, box, clicks, radius):
    """The fake tool's mask for a box (or None) and clicks [(x, y, positive), ...]."""
    m = np.zeros((h, w), bool)
    if box is not None:
        x1, y1, x2, y2 = box
        m[y1 : y2 + 1, x1 : x2 + 1] = True
    for x, y, pos in clicks:
        d = disc(h, w, x, y, radius)
        m = (m | d) if pos else (m & ~d)
    return m


class FakeTool:
    strategy = "box+all_clicks"
    backend = "fake"

    def __init__(self, image, radius=6, fail_on=None):
        self.h, self.w = image.shape[:2]
        self.radius = radius
        self.box = None
        self.clicks = []
        self.calls = []
        self.stack = []  # (box, clicks) before each committed step, for undo
        self.fail_on = fail_on or (lambda name, n: False)

    def _step(self, name, box, clicks):
        self.calls.append((name, None if box is None else list(box), [list(c) for c in clicks]))
        if self.fail_on(name, len(self.calls)):
            raise RuntimeError(f"injected failure in {name}")
        return Step(
            rule_mask(self.h, self.w, box, clicks, self.radius), 0.5 + 0.01 * len(clicks), {}
        )

    def add_box(self, box):
        step = self._step("add_box", [int(v) for v in box], self.clicks)
        self.stack.append((self.box, list(self.clicks)))
        self.box = [int(v) for v in box]
        return step

    def add_point(self, xy, positive):
        clicks = [*self.clicks, (int(xy[0]), int(xy[1]), bool(positive))]
        step = self._step("add_point", self.box, clicks)
        self.stack.append((self.box, list(self.clicks)))
        self.clicks = clicks
        return step

    def undo(self):
        """Return to the state before the last committed step (as PromptChain.undo does)."""
        self.box, self.clicks = self.stack.pop()
        self.calls.append(("undo", self.box, [list(c) for c in self.clicks]))

    def preview_box(self, box):
        step = self._step("preview_box", [int(v) for v in box], self.clicks)
        step.prompts["next"] = ([int(v) for v in box], list(self.clicks))
        return step

    def preview_point(self, xy, positive):
        clicks = [*self.clicks, (int(xy[0]), int(xy[1]), bool(positive))]
        step = self._step("preview_point", self.box, clicks)
        step.prompts["next"] = (self.box, clicks)
        return step

    def commit(self, step):
        """Adopt a previewed step (as segmenters.prompt_chain.PromptChain.commit does)."""
        self.stack.append((self.box, list(self.clicks)))
        self.box, self.clicks = step.prompts["next"]
        self.calls.append(("commit", self.box, [list(c) for c in self.clicks]))
        return step


class FakeFactory:
    """image -> FakeTool; remembers the tools it made (one per episode)."""

    def __init__(self, **kw):
        self.kw = kw
        self.tools = []

    def __call__(self, image):
        tool = FakeTool(image, **self.kw)
        self.tools.append(tool)
        return tool


class RecordingPolicy:
    """Wraps a policy and keeps deep copies of every observation it received."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.requires_gt = inner.requires_gt
        self.seen = []

    def reset(self, task):
        self.task = task
        self.inner.reset(task)

    def act(self, obs):
        msgs = [
            {
                "role": m["role"],
                "content": [
                    dict(p, image=p["image"].copy()) if p["type"] == "image" else dict(p)
                    for p in m["content"]
                ],
            }
            for m in obs.messages
        ]
        self.seen.append((msgs, obs.turn, obs.step, obs.retry))
        return self.inner.act(obs)


def make_image(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def blob_gt(h=64, w=96):
    """An irregular target: a rectangle with a round lobe and a notch."""
    g = np.zeros((h, w), bool)
    g[20:44, 30:70] = True
    g |= disc(h, w, 72, 30, 9)
    g &= ~disc(h, w, 40, 44, 6)
    return g


def same_messages(a, b) -> bool:
    """Whether two protocol conversations are identical: roles, texts, image bytes."""
    if len(a) != len(b):
        return False
    for ma, mb in zip(a, b):
        if ma["role"] != mb["role"] or len(ma["content"]) != len(mb["content"]):
            return False
        for pa, pb in zip(ma["content"], mb["content"]):
            if pa["type"] != pb["type"]:
                return False
            if pa["type"] == "image":
                if pa["image"].dtype != pb["image"].dtype or not np.array_equal(
                    pa["image"], pb["image"]
                ):
                    return False
            elif pa["text"] != pb["text"]:
                return False
    return True
