"""The episode state machine against a deterministic fake tool: budget, refusals, retries, end
reasons, tool errors, timings, pixel mapping, messages and the record."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_fakes import (
    BOX,
    NEG,
    POS,
    STOP,
    FakeFactory,
    RecordingPolicy,
    blob_gt,
    make_image,
    px,
    rule_mask,
    same_messages,
)
from scipy import ndimage

from medsam_agent_rt.episode import Episode
from medsam_agent_rt.policies import PolicyTurn, ReplayPolicy
from medsam_agent_rt.protocol import (
    FOLLOWUP_TURN_TEXT,
    AddBox,
    AddPoint,
    ViewGeometry,
    first_turn_text,
    format_action,
)
from medsam_agent_rt.session_config import SessionConfig
from medsam_agent_rt.trajectory import EpisodeRecord

BAD = "I think the target is on the left."


def run(texts, config=None, image=None, gt=None, **kw):
    image = make_image() if image is None else image
    factory = FakeFactory(**kw)
    policy = RecordingPolicy(ReplayPolicy(texts))
    mask, rec = Episode(factory, policy, config).run(image, "liver in CT", gt, image_id="img0")
    return mask, rec, factory, policy


# ----------------------------------------------------------------------------- the happy path


def test_box_point_stop_maps_coordinates_and_records_everything():
    image = make_image(64, 96)  # letterboxed: S = 96, pad_y = 16
    gt = blob_gt()
    mask, rec, factory, policy = run([BOX, POS, NEG, STOP], image=image, gt=gt)
    s, pad_y = 96, 16
    box = [px(300, s, 0), px(250, s, pad_y), px(700, s, 0), px(700, s, pad_y)]
    pos = (px(500, s, 0), px(400, s, pad_y), True)
    neg = (px(400, s, 0), px(500, s, pad_y), False)
    tool = factory.tools[0]
    assert [c[0] for c in tool.calls] == ["add_box", "add_point", "add_point"]
    assert tool.calls[0][1] == box and tool.clicks == [pos, neg]
    assert len(factory.tools) == 1  # one chained state (one encode) per episode

    assert rec.end_reason == "stop" and rec.error is None
    assert [t.outcome for t in rec.turns] == ["executed", "executed", "executed", "stop"]
    assert rec.turns[0].action == {
        "name": "add_bbox",
        "clamped": False,
        "grid": [300, 250, 700, 700],
        "pixels": box,
    }
    assert (
        rec.turns[1].action["pixels"] == list(pos[:2]) and rec.turns[1].action["positive"] is True
    )
    expected = [
        rule_mask(64, 96, box, [], 6),
        rule_mask(64, 96, box, [pos], 6),
        rule_mask(64, 96, box, [pos, neg], 6),
    ]
    for turn, exp in zip(rec.turns, expected):
        assert turn.mask_area == int(exp.sum())
        assert turn.components == ndimage.label(exp, np.ones((3, 3)))[1]
        inter, union = (exp & gt).sum(), (exp | gt).sum()
        assert turn.iou == pytest.approx(inter / union)
        assert turn.dice == pytest.approx(2 * inter / (exp.sum() + gt.sum()))
    for got, exp in zip(rec.masks(), expected):
        np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(mask, expected[-1])
    assert mask.dtype == bool and mask.shape == (64, 96)
    assert rec.final["area"] == int(expected[-1].sum()) and rec.final["postprocess"] == []
    assert rec.turns[2].tool_score == pytest.approx(0.52)
    # specs, config, totals
    assert (rec.policy, rec.segmenter, rec.backend, rec.strategy) == (
        "replay",
        "custom",
        "fake",
        "box+all_clicks",
    )
    assert rec.image_shape == [64, 96] and rec.image_id == "img0" and rec.target == "liver in CT"
    assert rec.config["max_actions"] == 5 and rec.view == {
        "height": 64,
        "width": 96,
        "view_size": 512,
    }
    assert rec.totals["actions"] == 3 and rec.totals["policy_calls"] == 4
    secs = rec.totals["seconds"]
    assert set(secs) >= {"policy", "tool", "render", "encode", "episode"}
    assert all(v >= 0 for v in secs.values()) and secs["episode"] >= secs["tool"]
    for t in rec.turns[:3]:
        assert t.timings["tool"] > 0 and t.timings["render"] > 0 and t.timings["policy"] >= 0


def test_observations_carry_the_conversation_and_the_record_rebuilds_it_byte_for_byte():
    image = make_image(50, 40)
    _, rec, _, policy = run([BOX, BAD, POS, STOP], image=image)
    assert [(turn, step, retry) for _, turn, step, retry in policy.seen] == [
        (0, 0, None),
        (1, 1, None),
        (2, 1, "invalid_output"),
        (3, 2, None),
    ]
    first = policy.seen[0][0]
    assert [m["role"] for m in first] == ["system", "user"]
    assert first[1]["content"][1]["text"] == first_turn_text("liver in CT")
    last = policy.seen[3][0]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert last[2]["content"][0]["text"] == BOX and last[4]["content"][0]["text"] == POS
    assert last[5]["content"][1]["text"] == FOLLOWUP_TURN_TEXT
    # an invalid answer is not kept: the retry sees the same messages as the call before
    assert same_messages(policy.seen[1][0], policy.seen[2][0])
    for k, (msgs, *_rest) in enumerate(policy.seen):
        assert same_messages(rec.messages(image, k), msgs), f"turn {k}"
    # the same after a JSON round trip
    back = EpisodeRecord.from_json(rec.to_json())
    for k, (msgs, *_rest) in enumerate(policy.seen):
        assert same_messages(back.messages(image, k), msgs)
    conv = back.conversation(image)
    assert [m["role"] for m in conv][-1] == "assistant" and conv[-1]["content"][0]["text"] == STOP
    assert len([m for m in conv if m["role"] == "assistant"]) == 3
    with pytest.raises(ValueError, match="does not match"):
        rec.messages(make_image(50, 40, seed=1), 0)


# ----------------------------------------------------------------------------- budget and stopping


def test_budget_ends_after_max_actions_without_asking_again():
    _, rec, _, policy = run([BOX, POS, POS, POS, POS, POS, POS])
    assert rec.end_reason == "budget" and rec.totals["actions"] == 5
    assert len(policy.seen) == 5
    _, rec, _, policy = run([BOX, POS, POS], SessionConfig(max_actions=2))
    assert rec.end_reason == "budget" and len(policy.seen) == 2
    assert rec.conversation(make_image())[-1]["role"] == "assistant"


def test_first_turn_stop_is_refused_once():
    mask, rec, factory, policy = run([STOP, STOP])
    assert [t.outcome for t in rec.turns] == ["refused_stop", "stop"]
    assert [s[3] for s in policy.seen] == [None, "refused_stop"]
    assert rec.end_reason == "stop" and not mask.any() and factory.tools[0].calls == []
    _, rec, _, _ = run([STOP, BOX, STOP])
    assert [t.outcome for t in rec.turns] == ["refused_stop", "executed", "stop"]
    _, rec, _, _ = run([STOP], SessionConfig(refuse_first_stop=0))
    assert [t.outcome for t in rec.turns] == ["stop"]
    _, rec, _, _ = run([STOP, STOP, STOP], SessionConfig(refuse_first_stop=2))
    assert [t.outcome for t in rec.turns] == ["refused_stop", "refused_stop", "stop"]
    # a stop after an action is accepted at once
    _, rec, _, _ = run([BOX, STOP])
    assert [t.outcome for t in rec.turns] == ["executed", "stop"]


def test_invalid_output_is_retried_once_per_turn_then_ends():
    mask, rec, _, _ = run([BAD, BOX, BAD, BAD])
    assert [t.outcome for t in rec.turns] == ["invalid", "executed", "invalid", "invalid"]
    assert [t.retry for t in rec.turns] == [None, "invalid_output", None, "invalid_output"]
    assert rec.end_reason == "invalid_output" and rec.totals["invalid"] == 3
    assert rec.turns[0].parse_error == "no_tool_call"
    assert mask.sum() == rec.turns[1].mask_area > 0  # the last good mask is kept
    _, rec, _, _ = run([BAD], SessionConfig(invalid_retries=0))
    assert rec.end_reason == "invalid_output" and len(rec.turns) == 1
    _, rec, _, _ = run([BAD, STOP, STOP])  # invalid, then a refused stop, then stop
    assert [t.outcome for t in rec.turns] == ["invalid", "refused_stop", "stop"]


def test_clamped_actions_are_flagged():
    text = '<tool_call>\n{"name": "add_point", "arguments": {"point_2d": [1500, 0], "point_type": "positive"}}\n</tool_call>'
    _, rec, factory, _ = run([text, STOP], image=make_image(40, 80))  # y = 0 is letterbox padding
    assert rec.turns[0].action["clamped"] is True
    assert rec.turns[0].action["grid"] == [999, 0] and rec.turns[0].action["pixels"] == [79, 0]
    assert factory.tools[0].clicks == [(79, 0, True)]


# ----------------------------------------------------------------------------- errors


def test_tool_errors_become_recorded_outcomes():
    fail = lambda name, n: name == "add_point"  # noqa: E731
    mask, rec, _, _ = run([BOX, POS, STOP], fail_on=fail)
    assert rec.end_reason == "tool_error" and [t.outcome for t in rec.turns] == [
        "executed",
        "tool_error",
    ]
    assert "injected failure" in rec.turns[1].tool_error and rec.error == rec.turns[1].tool_error
    assert mask.sum() == rec.turns[0].mask_area  # the previous mask survives
    json.loads(rec.to_json())


def test_encoder_failure_and_bad_tool_output_are_tool_errors():
    def broken(image):
        raise MemoryError("encoder out of memory")

    mask, rec = Episode(broken, ReplayPolicy([BOX])).run(make_image(), "x")
    assert rec.end_reason == "tool_error" and "MemoryError" in rec.error and rec.turns == []
    assert not mask.any()

    class WrongShape:
        strategy = "s"

        def add_box(self, box):
            return type("S", (), {"mask": np.zeros((3, 3), bool), "score": 1.0})()

    _, rec = Episode(lambda im: WrongShape(), ReplayPolicy([BOX])).run(make_image(), "x")
    assert rec.end_reason == "tool_error" and "shape" in rec.turns[0].tool_error


def test_preview_errors_inside_a_gt_policy_are_tool_errors():
    class Previewer:
        name, requires_gt = "previewer", True

        def reset(self, task):
            pass

        def act(self, obs):
            obs.preview(AddPoint(10, 10, True))
            return PolicyTurn(POS)

    fail = lambda name, n: name.startswith("preview")  # noqa: E731
    mask, rec = Episode(FakeFactory(fail_on=fail), Previewer()).run(make_image(), "x", blob_gt())
    assert rec.end_reason == "tool_error" and "preview" in rec.error and not mask.any()


def test_policy_exceptions_propagate():
    class Crash:
        name, requires_gt = "crash", False

        def reset(self, task):
            pass

        def act(self, obs):
            raise ConnectionError("server down")

    with pytest.raises(ConnectionError):
        Episode(FakeFactory(), Crash()).run(make_image(), "x")


def test_bad_inputs_are_refused_before_anything_runs():
    factory = FakeFactory()
    with pytest.raises(ValueError, match="gt must be"):
        Episode(factory, ReplayPolicy([BOX])).run(make_image(64, 96), "x", np.zeros((64, 95), bool))
    from medsam_agent_rt.policies import OracleBoxPolicy

    with pytest.raises(ValueError, match="GT-driven"):
        Episode(factory, OracleBoxPolicy()).run(make_image(), "x")
    with pytest.raises(ValueError, match="uint8"):
        Episode(factory, ReplayPolicy([BOX])).run(np.zeros((8, 8, 3), np.float32), "x")
    with pytest.raises(TypeError, match="tool must be"):
        Episode(3, ReplayPolicy([BOX]))
    assert factory.tools == []


def test_session_config_validation_says_how_to_fix():
    for kwargs, match in [
        ({"max_actions": 0}, "max_actions must be an integer >= 1"),
        ({"invalid_retries": -1}, "invalid_retries must be an integer >= 0"),
        ({"refuse_first_stop": 1.5}, "refuse_first_stop"),
        ({"connectivity": 6}, "4 or 8"),
        ({"view_size": 0}, "view_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            SessionConfig(**kwargs)
    assert set(SessionConfig.help()) == set(SessionConfig().__dict__)
    assert all(SessionConfig.help().values())


# ----------------------------------------------------------------------------- post-processing


def test_final_mask_post_processing_uses_the_kernels():
    # box = a ring-like mask with a hole (negative click inside) + a separate blob (positive click)
    g = ViewGeometry(64, 64)
    box = AddBox(*g.pixel_to_grid(10, 10)[:2], *g.pixel_to_grid(40, 40)[:2])
    hole = AddPoint(*g.pixel_to_grid(25, 25)[:2], False)
    blob = AddPoint(*g.pixel_to_grid(55, 55)[:2], True)
    texts = [format_action(box), format_action(hole), format_action(blob), STOP]
    image = make_image(64, 64)
    raw, rec, _, _ = run(texts, image=image, radius=4)
    assert ndimage.label(raw, np.ones((3, 3)))[1] == 2
    cfg = SessionConfig(keep_largest=True, fill_holes=True)
    clean, rec2, _, _ = run(texts, cfg, image=image, radius=4)
    lab, n = ndimage.label(raw, np.ones((3, 3)))
    largest = lab == (1 + np.argmax(ndimage.sum(raw, lab, range(1, n + 1))))
    expected = ndimage.binary_fill_holes(largest)
    np.testing.assert_array_equal(clean, expected)
    assert rec2.final["postprocess"] == ["keep_largest", "fill_holes"]
    assert rec2.final["raw_area"] == int(raw.sum()) and rec2.final["area"] == int(expected.sum())
    assert rec2.final["components"] == 1


def test_run_and_replay_of_a_saved_record(tmp_path):
    image, gt = make_image(), blob_gt()
    texts = [STOP, BAD, BOX, POS, NEG, STOP]
    mask, rec = Episode(FakeFactory(), ReplayPolicy(texts)).run(image, "t", gt)
    path = rec.save(tmp_path / "episode.json")
    assert EpisodeRecord.load(path) == rec
    mask2, rec2 = Episode(FakeFactory(), ReplayPolicy.from_file(path)).run(image, "t", gt)
    np.testing.assert_array_equal(mask, mask2)
    assert [t.mask for t in rec2.turns] == [t.mask for t in rec.turns]
    assert [t.outcome for t in rec2.turns] == [t.outcome for t in rec.turns]


def test_an_action_previewed_by_a_gt_policy_is_committed_not_run_again():
    from medsam_agent_rt.policies import ExpertConfig, ExpertPolicy

    factory = FakeFactory()
    cfg = ExpertConfig(box_prob=0.0)
    mask, rec = Episode(factory, ExpertPolicy(cfg)).run(make_image(), "t", blob_gt())
    calls = [c[0] for c in factory.tools[0].calls]
    executed = [t for t in rec.turns if t.outcome == "executed"]
    assert len(executed) >= 2
    # the opening click is not previewed (add_point); every correction is a committed preview
    assert calls.count("add_point") == 1 and calls.count("commit") == len(executed) - 1
    assert "add_box" not in calls
    # and the committed masks are those of plain execution (replay without previews)
    mask2, rec2 = Episode(FakeFactory(), ReplayPolicy([t.text for t in rec.turns])).run(
        make_image(), "t", blob_gt()
    )
    np.testing.assert_array_equal(mask, mask2)
    assert [t.mask for t in rec2.turns] == [t.mask for t in rec.turns]
