"""The action parser and formatter: released format, tolerated variants, typed errors, and
hypothesis properties (never raises; parse(format(a)) == a)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsam_agent_rt.protocol import (
    PARSE_ERROR_REASONS,
    PHRASE_FIRST_POINT,
    AddBox,
    AddPoint,
    ParseError,
    PixelBox,
    PixelPoint,
    Stop,
    ViewGeometry,
    format_action,
    parse_action,
    parse_turn,
    to_pixels,
)

RELEASED = (
    "Need refinement.\n<tool_call>\n"
    '{"name": "add_point", "arguments": {"point_2d": [198, 401], "point_type": "positive"}}'
    "\n</tool_call>"
)


def call(name, arguments, phrase="p"):
    return (
        f"{phrase}\n<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"
    )


# ----------------------------------------------------------------------------- released format


def test_released_example():
    turn = parse_turn(RELEASED)
    assert turn.result == AddPoint(198, 401, True)
    assert turn.phrase == "Need refinement."
    assert turn.repairs == ()
    assert turn.ok


def test_box_and_stop():
    assert parse_action(call("add_bbox", {"bbox_2d": [10, 20, 300, 400]})) == AddBox(
        10, 20, 300, 400
    )
    assert parse_action(call("stop_action", {})) == Stop()
    assert (
        parse_action('Good enough to stop.\n<tool_call>\n{"name": "stop_action"}\n</tool_call>')
        == Stop()
    )
    neg = parse_action(call("add_point", {"point_2d": [0, 999], "point_type": "negative"}))
    assert neg == AddPoint(0, 999, False) and not neg.clamped


def test_first_block_wins():
    text = call("add_bbox", {"bbox_2d": [1, 2, 3, 4]}) + "\n" + call("stop_action", {})
    assert parse_action(text) == AddBox(1, 2, 3, 4)


# ----------------------------------------------------------------------------- tolerated variants


def test_unquoted_keys_and_single_quotes_are_repaired():
    t = parse_turn(
        '<tool_call>\n{name: "add_bbox", arguments: {bbox_2d: [1, 2, 30, 40]}}\n</tool_call>'
    )
    assert t.result == AddBox(1, 2, 30, 40) and "unquoted_keys" in t.repairs
    t = parse_turn(
        "<tool_call>{'name': 'add_point', 'arguments': {'point_2d': [5, 6], 'point_type': 'negative'}}</tool_call>"
    )
    assert t.result == AddPoint(5, 6, False) and "single_quotes" in t.repairs
    # a key-like word inside a string value is left alone
    t = parse_turn(
        '<tool_call>{name: "add_point", arguments: {point_2d: [5, 6], point_type: "positive"}, note: "x: y, z: w"}</tool_call>'
    )
    assert t.result == AddPoint(5, 6, True)


def test_legacy_point_names():
    t = parse_turn(call("add_positive_point", {"x": 12, "y": 34}))
    assert t.result == AddPoint(12, 34, True) and "legacy_name" in t.repairs
    assert parse_action(call("add_negative_point", {"point_2d": [7, 8]})) == AddPoint(7, 8, False)
    assert parse_action(call("add_point", {"x": 1, "y": 2, "point_type": "Positive"})) == AddPoint(
        1, 2, True
    )


def test_missing_close_tag_is_accepted_when_the_object_is_complete():
    body = '{"name": "add_bbox", "arguments": {"bbox_2d": [1, 2, 30, 40]}}'
    for text in (
        f"<tool_call>\n{body}",
        f"<tool_call>\n{body}<|im_end|>",
        f"<tool_call>{body}\n<tool_call>",
    ):
        t = parse_turn(text)
        assert t.result == AddBox(1, 2, 30, 40) and "missing_close_tag" in t.repairs
    t = parse_turn('<tool_call>\n{"name": "add_bbox", "arguments": {"bbox_2d": [1, 2, 3')
    assert t.result == ParseError("malformed_json", t.result.detail)


def test_arguments_as_json_string_and_parameters_alias():
    text = (
        "<tool_call>"
        + json.dumps({"name": "add_bbox", "arguments": json.dumps({"bbox_2d": [1, 2, 3, 4]})})
        + "</tool_call>"
    )
    assert parse_action(text) == AddBox(1, 2, 3, 4)
    text = (
        "<tool_call>"
        + json.dumps({"name": "add_bbox", "parameters": {"bbox_2d": [1, 2, 3, 4]}})
        + "</tool_call>"
    )
    assert parse_action(text) == AddBox(1, 2, 3, 4)


def test_out_of_range_is_clamped_and_flagged_floats_rounded():
    a = parse_action(call("add_bbox", {"bbox_2d": [-5, 10, 1200, 999]}))
    assert a == AddBox(0, 10, 999, 999) and a.clamped
    t = parse_turn(call("add_point", {"point_2d": [10.5, 20.49], "point_type": "positive"}))
    assert t.result == AddPoint(11, 20, True) and not t.result.clamped and "rounded" in t.repairs
    assert parse_action(
        call("add_point", {"point_2d": [10.0, 3], "point_type": "positive"})
    ) == AddPoint(10, 3, True)


# ----------------------------------------------------------------------------- typed errors


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("just a phrase", "no_tool_call"),
        ('{"name": "stop_action", "arguments": {}}', "no_tool_call"),
        ("<tool_call>\nnot json\n</tool_call>", "malformed_json"),
        ("<tool_call>{}</tool_call>", "bad_call"),
        ('<tool_call>{"name": 3}</tool_call>', "bad_call"),
        (call("zoom_in", {}), "unknown_tool"),
        (call("add_bbox", {"bbox_2d": [1, 2, 3]}), "bad_arguments"),
        (call("add_bbox", {}), "bad_arguments"),
        (call("add_bbox", {"bbox_2d": "1,2,3,4"}), "bad_arguments"),
        (call("add_point", {"point_2d": [1, 2]}), "bad_arguments"),
        (call("add_point", {"point_2d": [1, 2], "point_type": "maybe"}), "bad_arguments"),
        (call("add_point", {"point_2d": [1], "point_type": "positive"}), "bad_arguments"),
        (call("add_positive_point", {"z": 1}), "bad_arguments"),
        (call("add_bbox", {"bbox_2d": ["1", 2, 3, 4]}), "not_a_number"),
        (call("add_bbox", {"bbox_2d": [True, 2, 3, 4]}), "not_a_number"),
        (call("add_bbox", {"bbox_2d": [None, 2, 3, 4]}), "not_a_number"),
        (
            '<tool_call>{"name": "add_point", "arguments": {"point_2d": [NaN, 2], "point_type": "positive"}}</tool_call>',
            "not_a_number",
        ),
        (
            '<tool_call>{"name": "add_point", "arguments": {"point_2d": [Infinity, 2], "point_type": "positive"}}</tool_call>',
            "not_a_number",
        ),
        (call("add_bbox", {"bbox_2d": [300, 2, 100, 4]}), "box_order"),
        (call("add_bbox", {"bbox_2d": [1, 2, 1, 4]}), "box_order"),
        (call("add_bbox", {"bbox_2d": [1000, 2, 1200, 4]}), "box_order"),  # both clamp to 999
        ("<tool_call>" + "[" * 50000 + "{}", "bad_call"),  # the first object is {}
        ('<tool_call>{"a": ' + "[" * 50000 + "]" * 50000 + "}</tool_call>", "malformed_json"),
        (None, "not_text"),
        (b"<tool_call>", "not_text"),
    ],
)
def test_invalid_turns_become_typed_errors(text, reason):
    result = parse_action(text)
    assert isinstance(result, ParseError), result
    assert result.reason == reason
    assert result.reason in PARSE_ERROR_REASONS


def test_stop_ignores_its_arguments():
    assert parse_action(call("stop_action", {"why": [1, "x"]})) == Stop()


# ----------------------------------------------------------------------------- formatter


def test_formatter_writes_the_released_text():
    assert format_action(AddPoint(198, 401, True)) == RELEASED
    assert format_action(Stop()) == (
        'Good enough to stop.\n<tool_call>\n{"name": "stop_action", "arguments": {}}\n</tool_call>'
    )
    assert format_action(AddBox(1, 2, 3, 4)).startswith(
        "Locate the target with a box.\n<tool_call>\n"
    )
    assert format_action(AddPoint(1, 2, False), PHRASE_FIRST_POINT).startswith(
        PHRASE_FIRST_POINT + "\n"
    )


@pytest.mark.parametrize(
    "bad",
    [AddBox(5, 1, 5, 9), AddBox(0, 0, 1000, 9), AddPoint(-1, 3, True), AddPoint(1.5, 3, True)],
)
def test_formatter_refuses_invalid_actions(bad):
    with pytest.raises(ValueError, match="coordinates|box"):
        format_action(bad)
    with pytest.raises(TypeError, match="AddBox"):
        format_action("stop")
    with pytest.raises(ValueError, match="phrase"):
        format_action(Stop(), "see <tool_call>")


# ----------------------------------------------------------------------------- pixel mapping


def test_to_pixels():
    g = ViewGeometry(101, 201)  # S = 201, pad_y = 50
    assert to_pixels(AddPoint(0, 999, True), g) == PixelPoint(0, 100, True, True)
    assert to_pixels(AddPoint(999, 500, False), g) == PixelPoint(200, 50, False, False)
    box = to_pixels(AddBox(0, 250, 999, 749), g)
    assert box == PixelBox(0, 0, 200, 100, False) and box.as_array() == [0, 0, 200, 100]
    assert to_pixels(Stop(), g) is None
    # a box narrower than a pixel is widened by one pixel and flagged
    small = ViewGeometry(3, 3)
    assert to_pixels(AddBox(0, 0, 100, 999), small) == PixelBox(0, 0, 1, 2, True)
    assert to_pixels(AddBox(900, 0, 999, 999), small) == PixelBox(1, 0, 2, 2, True)
    # the parser's clamp flag travels on
    assert to_pixels(AddPoint(5, 5, True, clamped=True), ViewGeometry(999, 999)).clamped


# ----------------------------------------------------------------------------- properties

grid = st.integers(0, 999)


@st.composite
def actions(draw):
    kind = draw(st.sampled_from(["box", "point", "stop"]))
    if kind == "stop":
        return Stop()
    if kind == "point":
        return AddPoint(draw(grid), draw(grid), draw(st.booleans()))
    x1, x2 = sorted(draw(st.lists(grid, min_size=2, max_size=2, unique=True)))
    y1, y2 = sorted(draw(st.lists(grid, min_size=2, max_size=2, unique=True)))
    return AddBox(x1, y1, x2, y2)


phrases = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(
    lambda s: "<tool_call>" not in s
)


@given(a=actions(), phrase=phrases)
def test_round_trip_of_every_valid_action(a, phrase):
    text = format_action(a, phrase)
    turn = parse_turn(text)
    assert turn.result == a
    assert turn.phrase == phrase.strip()
    assert not turn.result.clamped
    assert turn.repairs == ()


@settings(max_examples=400)
@given(text=st.text(max_size=300))
def test_random_text_never_raises(text):
    r = parse_action(text)
    assert isinstance(r, (AddBox, AddPoint, Stop, ParseError))


alphabet = st.sampled_from(
    list("<>{}[]\"':,tool_call/namearguments bbox_2dpoint_2d0123456789-.eEnN\n\\")
)


@settings(max_examples=400)
@given(
    a=actions(),
    cut=st.integers(0, 200),
    noise=st.lists(st.tuples(st.integers(0, 200), alphabet), max_size=6),
)
def test_truncated_and_mutated_outputs_never_raise(a, cut, noise):
    text = format_action(a)
    chars = list(text[: max(0, len(text) - cut)])
    for pos, ch in noise:
        chars.insert(min(pos, len(chars)), ch)
    r = parse_turn("".join(chars))
    assert isinstance(r.result, (AddBox, AddPoint, Stop, ParseError))
    if isinstance(r.result, ParseError):
        assert r.result.reason in PARSE_ERROR_REASONS and r.result.reason != "internal"
    else:  # whatever was accepted is a valid action in range
        for v in (getattr(r.result, k, 0) for k in ("x", "y", "x1", "y1", "x2", "y2")):
            assert 0 <= v <= 999


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    ),
    st.sampled_from(["add_bbox", "add_point", "stop_action", "add_positive_point", "x"]),
)
def test_arbitrary_json_arguments_never_raise(args, name):
    text = "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"
    r = parse_action(text)
    assert isinstance(r, (AddBox, AddPoint, Stop, ParseError))
    if isinstance(r, ParseError):
        assert r.reason != "internal"
