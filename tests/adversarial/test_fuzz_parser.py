"""Hypothesis fuzzing of the action parser (10,050 cases in all): whatever the model writes,
``parse_turn`` returns an action or a ParseError with a documented reason, never raises and
never hits its own "internal" (bug) branch; valid calls, however mangled around the JSON, parse
to exactly the action they were generated from (the generator is the oracle)."""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsam_agent_rt.protocol import AddBox, AddPoint, ParseError, Stop, format_action, parse_turn
from medsam_agent_rt.protocol.actions import PARSE_ERROR_REASONS
from medsam_agent_rt.protocol.text import GRID_MAX

# CI runs the listed counts, derandomized; MSRT_FUZZ_SCALE=K runs K times more, random seeds.
SCALE = int(os.environ.get("MSRT_FUZZ_SCALE", "1"))


def fast(n: int) -> settings:
    """``n`` examples (x $MSRT_FUZZ_SCALE), reproducible unless scaled, no deadline."""
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


coord = st.integers(0, GRID_MAX)
boxes = st.tuples(coord, coord, coord, coord).filter(lambda b: b[0] < b[2] and b[1] < b[3])
actions = st.one_of(
    boxes.map(lambda b: AddBox(*b)),
    st.builds(AddPoint, coord, coord, st.booleans()),
    st.just(Stop()),
)
# pieces a model tends to emit: tags, JSON punctuation, tool names, digits, unicode
TOKENS = [
    "<tool_call>", "</tool_call>", "<|im_end|>", "{", "}", "[", "]", '"', "'", ":", ",", "\\",
    "name", "arguments", "add_bbox", "add_point", "stop_action", "bbox_2d", "point_2d",
    "point_type", "positive", "negative", "NaN", "Infinity", "-", "1e999", "0", "999", "1000",
    "12.5", "null", "true", " ", "\n", "\ud800", "\U0001f600", "9" * 50,
]  # fmt: skip
token_soup = st.lists(st.sampled_from(TOKENS) | st.characters(), max_size=24).map("".join)


def check(text):
    parsed = parse_turn(text)
    r = parsed.result
    if isinstance(r, ParseError):
        assert r.reason in PARSE_ERROR_REASONS and r.reason != "internal", r
        assert isinstance(r.detail, str) and len(r.detail) <= 300
    else:
        assert isinstance(r, (AddBox, AddPoint, Stop))
        for v in getattr(r, "__dataclass_fields__", {}):
            if v in ("x1", "y1", "x2", "y2", "x", "y"):
                assert 0 <= getattr(r, v) <= GRID_MAX
        if isinstance(r, AddBox):
            assert r.x1 < r.x2 and r.y1 < r.y2
    return parsed


@fast(4500)
@given(st.text(max_size=200))
def test_arbitrary_text_never_breaks_the_parser(text):
    check(text)


@fast(3000)
@given(token_soup)
def test_token_soup_never_breaks_the_parser(text):
    check(text)


@fast(1500)
@given(actions, st.text(max_size=20), st.text(max_size=20), st.sampled_from(["", "<|im_end|>"]))
def test_valid_calls_parse_to_their_action_whatever_surrounds_the_json(a, before, after, end):
    """Text before the tag is the phrase; text around the object inside the block is ignored;
    a missing close tag is tolerated (the oracle is the generated action)."""
    call = json.dumps({"name": a.name, "arguments": a.arguments()})
    close = "" if end else "</tool_call>"
    before = before.replace("<tool_call>", "")
    inside = after.replace("{", "").replace("}", "").replace("<tool_call>", "").replace('"', "")
    inside = inside.replace("'", "").replace("</tool_call>", "").replace("<|im_end|>", "")
    text = f"{before}<tool_call>\n{call} {inside}{close}{end}"
    assert check(text).result == a


@fast(1000)
@given(actions, st.data())
def test_mutated_valid_calls_never_break_the_parser(a, data):
    """Single-character edits of a valid turn: parse to some action or a documented error."""
    text = format_action(a)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = data.draw(st.sampled_from(TOKENS[:30]) | st.characters())
        if op == "insert":
            text = text[:i] + ch + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1 :]
        else:
            text = text[:i] + ch + text[i + 1 :]
    check(text)


@fast(50)
@given(st.integers(1, 60))
def test_deep_nesting_and_huge_numbers_are_errors_not_crashes(depth):
    nested = "[" * (depth * 1000) + "]" * (depth * 1000)
    check('<tool_call>{"name": "add_bbox", "arguments": {"bbox_2d": ' + nested + "}}</tool_call>")
    digits = "9" * (depth * 200)
    r = check(
        f'<tool_call>{{"name": "add_point", "arguments": {{"point_2d": [{digits}, 5], '
        '"point_type": "positive"}}</tool_call>'
    ).result
    assert isinstance(r, (AddPoint, ParseError))
