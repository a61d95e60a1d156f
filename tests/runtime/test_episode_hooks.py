"""The session's hooks for the CLI and the benchmark: ``on_turn`` reports every finished turn
once, in order, while the episode runs; tool previews made inside a GT policy's call are timed;
``max_hole_area`` limits the final hole filling; the record's ``source`` round-trips. A tiny
geometric tool (a filled box, clicks add/remove discs) keeps these exact and fast."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from medsam_agent_rt.episode import Episode
from medsam_agent_rt.policies import ExpertConfig, ExpertPolicy, ReplayPolicy
from medsam_agent_rt.protocol import AddBox, AddPoint, Stop, format_action
from medsam_agent_rt.session_config import SessionConfig
from medsam_agent_rt.trajectory import EpisodeRecord


@dataclass
class _Step:
    mask: np.ndarray
    score: float = 0.9


class BoxTool:
    """box -> filled rectangle; click -> disc of radius 5 added (positive) or cleared."""

    strategy = "box+all_clicks"

    def __init__(self, image):
        self.hw = image.shape[:2]
        self.mask = np.zeros(self.hw, bool)
        self.previews = 0

    def _box(self, b):
        m = np.zeros(self.hw, bool)
        x1, y1, x2, y2 = (int(v) for v in b)
        m[y1 : y2 + 1, x1 : x2 + 1] = True
        return m

    def _point(self, xy, positive):
        yy, xx = np.mgrid[: self.hw[0], : self.hw[1]]
        disc = (xx - xy[0]) ** 2 + (yy - xy[1]) ** 2 <= 25
        return (self.mask | disc) if positive else (self.mask & ~disc)

    def preview_box(self, b):
        self.previews += 1
        return _Step(self._box(b))

    def preview_point(self, xy, positive):
        self.previews += 1
        return _Step(self._point(xy, positive))

    def add_box(self, b):
        self.mask = self._box(b)
        return _Step(self.mask)

    def add_point(self, xy, positive):
        self.mask = self._point(xy, positive)
        return _Step(self.mask)


IMAGE = np.full((100, 100, 3), 90, np.uint8)


def test_on_turn_reports_each_finished_turn_once_in_order():
    texts = ["garbage", format_action(AddBox(100, 100, 500, 500)), "more garbage",
             format_action(AddPoint(700, 700, True)), format_action(Stop())]  # fmt: skip
    seen = []

    def on_turn(turn):
        seen.append((turn.index, turn.outcome, dict(turn.timings)))

    _, rec = Episode(BoxTool, ReplayPolicy(texts), on_turn=on_turn).run(IMAGE, "t")
    assert [(i, o) for i, o, _ in seen] == [(t.index, t.outcome) for t in rec.turns]
    assert [o for _, o, _ in seen] == ["invalid", "executed", "invalid", "executed", "stop"]
    # reported when finished: an executed turn already carries its tool and render timings
    assert all("tool" in tm and tm["tool"] > 0 for _, o, tm in seen if o == "executed")


def test_on_turn_after_a_tool_error_and_at_the_budget():
    class Broken(BoxTool):
        def add_point(self, xy, positive):
            raise RuntimeError("boom")

    texts = [format_action(AddBox(1, 1, 900, 900)), format_action(AddPoint(5, 5, False))]
    seen = []
    _, rec = Episode(Broken, ReplayPolicy(texts), on_turn=seen.append).run(IMAGE, "t")
    assert rec.end_reason == "tool_error" and seen == rec.turns

    seen.clear()
    cfg = SessionConfig(max_actions=1)
    _, rec = Episode(BoxTool, ReplayPolicy(texts), cfg, on_turn=seen.append).run(IMAGE, "t")
    assert rec.end_reason == "budget" and seen == rec.turns and len(seen) == 1


def test_previews_inside_the_policy_call_are_timed():
    gt = np.zeros((100, 100), bool)
    gt[20:60, 30:80] = True
    gt[70:90, 10:20] = True  # a second part the box misses: the expert clicks
    tools = []

    def factory(image):
        tools.append(BoxTool(image))
        return tools[-1]

    policy = ExpertPolicy(ExpertConfig(box_prob=1.0))
    _, rec = Episode(factory, policy, SessionConfig(max_actions=3)).run(IMAGE, "t", gt)
    assert tools[0].previews >= 1
    timed = [t for t in rec.turns if "preview" in t.timings]
    assert timed and all(0 < t.timings["preview"] <= t.timings["policy"] for t in timed)
    assert rec.totals["seconds"]["preview"] == pytest.approx(
        sum(t.timings["preview"] for t in timed)
    )


def test_max_hole_area_fills_only_small_holes():
    # a box with two holes punched by negative clicks far apart: r=5 discs (81 px) inside
    texts = [format_action(AddBox(100, 100, 900, 900)),
             format_action(AddPoint(300, 300, False)), format_action(AddPoint(700, 700, False)),
             format_action(Stop())]  # fmt: skip
    raw, rec = Episode(BoxTool, ReplayPolicy(texts)).run(IMAGE, "t")
    x1, y1, x2, y2 = rec.turns[0].action["pixels"]
    inside = (slice(y1, y2 + 1), slice(x1, x2 + 1))
    holes = int((~raw[inside]).sum())
    assert holes == 2 * 81 and raw.sum() == (y2 - y1 + 1) * (x2 - x1 + 1) - holes
    for max_area, want in ((None, 0), (81, 0), (80, holes), (0, holes)):
        cfg = SessionConfig(fill_holes=True, max_hole_area=max_area)
        mask, rec = Episode(BoxTool, ReplayPolicy(texts), cfg).run(IMAGE, "t")
        assert int((~mask[inside]).sum()) == want, max_area
        assert mask.sum() == raw.sum() + holes - want
        assert rec.config["max_hole_area"] == max_area
    with pytest.raises(ValueError, match="max_hole_area"):
        SessionConfig(fill_holes=True, max_hole_area=-3)


def test_record_source_round_trips():
    _, rec = Episode(BoxTool, ReplayPolicy([format_action(Stop())] * 2)).run(IMAGE, "t")
    rec.source = {"image": {"path": "x.dcm", "format": "dicom"}, "gt": None}
    back = EpisodeRecord.from_json(rec.to_json())
    assert back.source == rec.source and back == rec
    old = rec.to_dict()
    del old["source"]  # records written before the field existed still load
    assert EpisodeRecord.from_dict(old).source == {}
