"""The steppable episode: a person's clicks, box, undo and accept interleaved with agent turns
(recorded by source; the policy sees them only through the overlay, in the protocol's own
conversation), what the policy learns of its previous answer, deadlines and cancel."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from runtime_fakes import (
    BOX,
    POS,
    STOP,
    FakeFactory,
    RecordingPolicy,
    make_image,
    px,
    rule_mask,
    same_messages,
)

from medsam_agent_rt.episode import Episode
from medsam_agent_rt.policies import PolicyTurn, ReplayPolicy
from medsam_agent_rt.protocol import (
    PixelBox,
    PixelPoint,
    build_messages,
    render_observation,
    render_view,
    view_geometry,
)
from medsam_agent_rt.session_config import SessionConfig
from medsam_agent_rt.trajectory import EpisodeRecord

BAD = "no tool call here"


def test_a_person_and_the_agent_take_turns():
    image = make_image(64, 96)  # S = 96, pad_y = 16
    factory = FakeFactory()
    policy = RecordingPolicy(ReplayPolicy([BOX, POS, STOP]))
    seen_turns = []
    ep = Episode(factory, policy, on_turn=seen_turns.append)
    ep.start(image, "liver in CT", image_id="img0")
    click = (10, 10, True)
    ep.apply(PixelPoint(*click))  # before the agent's first turn
    agent_box = [px(300, 96, 0), px(250, 96, 16), px(700, 96, 0), px(700, 96, 16)]
    t_box = ep.step()
    assert t_box.outcome == "executed" and t_box.action["pixels"] == agent_box
    ep.apply(PixelPoint(50, 40, False))
    ep.apply("undo")  # undoes the person's negative click
    human_box = [5, 6, 60, 50]
    ep.apply(PixelBox(*human_box))  # replaces the agent's box, keeps the first click
    t_pos = ep.step()
    assert t_pos.outcome == "executed"
    agent_click = (px(500, 96, 0), px(400, 96, 16), True)
    np.testing.assert_array_equal(ep.mask, rule_mask(64, 96, human_box, [click, agent_click], 6))
    ep.apply("undo")  # undoes the agent's click
    assert not ep.done
    ep.apply("accept")
    assert ep.done
    mask, rec = ep.result()

    # who did what
    assert [t.source for t in rec.turns] == ["human", "agent", "human", "human", "human",
                                             "agent", "human", "human"]  # fmt: skip
    assert [t.outcome for t in rec.turns] == ["executed", "executed", "executed", "undo",
                                              "executed", "executed", "undo", "accept"]  # fmt: skip
    assert [t.index for t in rec.turns] == list(range(8)) and seen_turns == rec.turns
    g = view_geometry(image.shape)
    assert rec.turns[0].action == {"name": "add_point", "pixels": [10, 10], "positive": True,
                                   "clamped": False, "grid": [105, 273]}  # fmt: skip
    assert g.grid_to_pixel(105, 273)[:2] == (10, 10)
    assert rec.turns[4].action["grid"] == [53, 231, 631, 694]
    assert [g.grid_to_pixel(*rec.turns[4].action["grid"][i : i + 2])[:2] for i in (0, 2)] == [
        (5, 6), (60, 50)]  # fmt: skip
    assert rec.turns[3].action == {"name": "undo", "undone_turn": 2}
    assert rec.turns[6].action == {"name": "undo", "undone_turn": 5}
    assert rec.end_reason == "accepted" and rec.error is None
    assert [t.index for t in rec.executed()] == [1, 5] and len(rec.human()) == 6
    assert rec.totals["policy_calls"] == 2 and rec.totals["human_actions"] == 6
    assert rec.totals["actions"] == 2
    want = rule_mask(64, 96, human_box, [click], 6)
    np.testing.assert_array_equal(mask, want)
    np.testing.assert_array_equal(rec.masks()[0], rule_mask(64, 96, agent_box, [click], 6))
    assert rec.final["area"] == int(want.sum())
    tool = factory.tools[0]
    assert [c[0] for c in tool.calls] == ["add_point", "add_box", "add_point", "undo", "add_box",
                                          "add_point", "undo"]  # fmt: skip

    # the conversation: the protocol's messages; the person's actions appear only as overlays
    geo = view_geometry(image.shape)
    view = render_view(image, geo)
    after_click = render_observation(view, rule_mask(64, 96, None, [click], 6), geo)
    after_human_box = render_observation(view, rule_mask(64, 96, human_box, [click], 6), geo)
    expected = [
        build_messages("liver in CT", [after_click], []),
        build_messages("liver in CT", [after_click, after_human_box], [BOX]),
    ]
    assert len(policy.seen) == 2
    for (msgs, *_), want_msgs, turn in zip(policy.seen, expected, (1, 5)):
        assert same_messages(msgs, want_msgs)
        assert same_messages(rec.messages(image, turn), want_msgs)  # rebuilt from the record
    # and the record round-trips through JSON with the sources
    back = EpisodeRecord.from_json(rec.to_json())
    assert [t.source for t in back.turns] == [t.source for t in rec.turns]
    assert same_messages(back.messages(image, 5), expected[1])


def test_bad_human_actions_change_nothing():
    image = make_image(64, 96)
    ep = Episode(FakeFactory(), ReplayPolicy([BOX, STOP]))
    with pytest.raises(RuntimeError, match="start"):
        ep.apply(PixelPoint(1, 1, True))
    ep.start(image, "t")
    with pytest.raises(ValueError, match="nothing to undo"):
        ep.apply("undo")
    with pytest.raises(ValueError, match=r"inside the 96x64 image.*got \(96, 3\)"):
        ep.apply(PixelPoint(96, 3, True))
    with pytest.raises(ValueError, match="x1 < x2"):
        ep.apply(PixelBox(10, 10, 5, 20))
    with pytest.raises(ValueError, match="'undo' or 'accept'"):
        ep.apply("redo")
    with pytest.raises(TypeError, match="PixelBox"):
        ep.apply((1, 2, 3, 4))
    with pytest.raises(ValueError, match="step()"):
        ep.apply(PixelPoint(1, 1, True), source="agent")
    assert ep.record.turns == [] and not ep.mask.any() and not ep.done
    ep.step()
    ep.step()
    assert ep.done and ep.record.end_reason == "stop"
    with pytest.raises(RuntimeError, match="over"):
        ep.step()
    with pytest.raises(RuntimeError, match="over"):
        ep.apply("accept")


class Scripted:
    """Answers from a list and remembers each observation's ``previous`` field."""

    name, requires_gt = "scripted", False

    def __init__(self, texts, delay=0.0):
        self.texts, self.delay, self.previous = list(texts), delay, []

    def reset(self, task):
        pass

    def act(self, obs):
        self.previous.append(obs.previous)
        time.sleep(self.delay)
        return PolicyTurn(self.texts.pop(0))


def test_the_policy_learns_what_became_of_its_previous_answer():
    policy = Scripted([BAD, STOP, BOX, BAD, POS, STOP])
    _, rec = Episode(FakeFactory(), policy).run(make_image(), "t")
    assert [t.outcome for t in rec.turns] == ["invalid", "refused_stop", "executed", "invalid",
                                              "executed", "stop"]  # fmt: skip
    assert policy.previous == [None, "invalid_output", "refused_stop", "executed",
                               "invalid_output", "executed"]  # fmt: skip


def test_turn_deadline_discards_a_late_answer():
    cfg = SessionConfig(turn_deadline_s=0.01)
    mask, rec = Episode(FakeFactory(), Scripted([BOX], delay=0.05), cfg).run(make_image(), "t")
    assert [t.outcome for t in rec.turns] == ["late"] and rec.end_reason == "turn_deadline"
    assert "limit 0.01 s" in rec.error and not mask.any()
    assert rec.turns[0].text == BOX and rec.turns[0].action is None  # recorded, not executed


def test_episode_deadline_is_checked_before_each_call_and_after_each_answer():
    cfg = SessionConfig(episode_deadline_s=0.2)
    policy = Scripted([BOX, POS, STOP])
    ep = Episode(FakeFactory(), policy, cfg)
    ep.start(make_image(), "t")
    assert ep.step().outcome == "executed"
    time.sleep(0.25)
    assert ep.step() is None and ep.done  # no call made after the deadline
    assert ep.record.end_reason == "episode_deadline" and len(policy.previous) == 1
    assert ep.mask.sum() == ep.record.final["area"] > 0  # the box's mask is kept
    ep = Episode(FakeFactory(), Scripted([BOX], delay=0.25), cfg)
    _, rec = ep.run(make_image(), "t")
    assert [t.outcome for t in rec.turns] == ["late"] and rec.end_reason == "episode_deadline"
    with pytest.raises(ValueError, match="turn_deadline_s must be None or a number of seconds"):
        SessionConfig(turn_deadline_s=0)


def test_cancel_while_the_policy_answers_and_while_idle():
    release = threading.Event()

    class Waiting(Scripted):
        def act(self, obs):
            release.wait(5)
            return super().act(obs)

    ep = Episode(FakeFactory(), Waiting([BOX]))
    ep.start(make_image(), "t")
    out = []
    worker = threading.Thread(target=lambda: out.append(ep.step()))
    worker.start()
    time.sleep(0.05)
    ep.cancel()
    assert not ep.done  # the call in flight finishes first
    release.set()
    worker.join()
    assert out[0].outcome == "cancelled" and ep.done and ep.record.end_reason == "cancelled"
    assert not ep.mask.any()  # the late box was not executed
    ep.cancel()  # no-op once done

    ep = Episode(FakeFactory(), Scripted([BOX, STOP]))
    ep.start(make_image(), "t")
    ep.step()
    ep.cancel()
    assert ep.done and ep.record.end_reason == "cancelled" and ep.mask.any()
    mask, rec = ep.result()
    assert rec.totals["actions"] == 1 and mask.sum() == rec.final["area"]


def test_interactive_session_stays_open_after_the_agent_finishes():
    """agent_ends_episode=False: the agent's stop, twice-invalid answer and used-up budget end
    only its part; a person's click lets it act again; "accept" ends the episode. The default
    (True) ends the episode at the stop, as before."""
    image = make_image(64, 96)
    closed = Episode(FakeFactory(), ReplayPolicy([BOX, STOP]))
    closed.start(image, "t")
    closed.step(), closed.step()
    assert closed.done and closed.record.end_reason == "stop" and closed.agent_done is None

    config = SessionConfig(agent_ends_episode=False, max_actions=2)
    policy = ReplayPolicy([BOX, STOP, BAD, BAD, POS, BOX])
    ep = Episode(FakeFactory(), policy, config)
    ep.start(image, "t")
    assert ep.step().outcome == "executed" and ep.agent_done is None
    assert ep.step().outcome == "stop" and not ep.done and ep.agent_done == "stop"
    ep.apply(PixelPoint(50, 40, False))  # the person corrects: the agent may act again
    assert ep.agent_done is None
    assert ep.step().outcome == "invalid" and ep.agent_done is None  # one retry left
    assert ep.step().outcome == "invalid" and ep.agent_done == "invalid_output" and not ep.done
    assert ep.step().outcome == "executed" and ep.agent_done == "budget"  # 2 actions: budget
    with pytest.raises(RuntimeError, match="budget"):
        ep.step()
    mask_before = ep.mask.copy()
    ep.apply("accept")
    assert ep.done and ep.record.end_reason == "accepted" and ep.agent_done is None
    np.testing.assert_array_equal(ep.result().mask, mask_before)
    assert [t.source for t in ep.record.turns] == ["agent"] * 2 + ["human"] + ["agent"] * 3 + [
        "human"
    ]
