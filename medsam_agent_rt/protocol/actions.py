"""Typed actions, the action parser and the formatter (PROTOCOL.md, "What the model emits").

Parsing rules (``parse_turn``; it never raises on model output, whatever the text):
- The phrase is the text before the first ``<tool_call>``; the call is the first ``<tool_call>``
  block. No ``<tool_call>`` at all -> ``ParseError("no_tool_call")`` (a bare JSON object is not
  accepted: the released format always has the tags).
- A missing ``</tool_call>`` is tolerated when the block still holds a complete JSON object
  (generation cut at ``<|im_end|>`` or at the token limit right after the object); the block
  then ends at ``<|im_end|>``, the next ``<tool_call>`` or the end of the text, and the repair
  "missing_close_tag" is noted. A truncated object -> ``ParseError("malformed_json")``.
- The first balanced ``{...}`` of the block is the call; text around it is ignored
  ("extra_text" noted). Unquoted keys (``{name: "add_bbox"}``) and single-quoted strings are
  repaired ("unquoted_keys", "single_quotes"); anything else that is not JSON is malformed.
- ``{"name": N, "arguments": A}``; A may also be a JSON string (OpenAI style) or be called
  "parameters"; stop_action ignores its arguments.
- Tools: ``add_bbox(bbox_2d=[x1, y1, x2, y2])``, ``add_point(point_2d=[x, y],
  point_type="positive"|"negative")``, ``stop_action()``, and the legacy
  ``add_positive_point`` / ``add_negative_point`` with ``{x, y}`` or ``point_2d``.
- Coordinates: JSON numbers (integers, or floats rounded half up -> "rounded" noted); strings,
  booleans, NaN or infinities -> ``ParseError("not_a_number")``. Values outside 0..999 are clamped
  and the action's ``clamped`` flag is set. A box needs x1 < x2 and y1 < y2 after clamping, else
  ``ParseError("box_order")``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from medsam_agent_rt.protocol.text import (
    GRID_MAX,
    PHRASE_BOX,
    PHRASE_REFINE,
    PHRASE_STOP,
    assistant_text,
)

OPEN_TAG, CLOSE_TAG, END_TOKEN = "<tool_call>", "</tool_call>", "<|im_end|>"

# ParseError reasons, stable strings (recorded in trajectories and counted by evaluation).
PARSE_ERROR_REASONS = (
    "not_text",  # the policy returned something that is not a str
    "no_tool_call",  # no <tool_call> tag
    "malformed_json",  # no complete / repairable JSON object in the block
    "bad_call",  # not {"name": str, "arguments": object}
    "unknown_tool",  # a name that is none of the tools
    "bad_arguments",  # missing/ill-shaped arguments (wrong length, bad point_type, ...)
    "not_a_number",  # a coordinate that is not a finite JSON number
    "box_order",  # x1 >= x2 or y1 >= y2 after clamping
    "internal",  # a parser bug; reported, never raised
)


# ============================================================================ actions


@dataclass(frozen=True)
class AddBox:
    """``add_bbox``: grid box (0..999). ``clamped`` (not part of equality) says the model's values
    were outside 0..999."""

    x1: int
    y1: int
    x2: int
    y2: int
    clamped: bool = field(default=False, compare=False)

    name = "add_bbox"

    def arguments(self) -> dict[str, Any]:
        return {"bbox_2d": [self.x1, self.y1, self.x2, self.y2]}


@dataclass(frozen=True)
class AddPoint:
    """``add_point``: grid click (0..999); positive adds to the mask, negative removes."""

    x: int
    y: int
    positive: bool
    clamped: bool = field(default=False, compare=False)

    name = "add_point"

    def arguments(self) -> dict[str, Any]:
        return {
            "point_2d": [self.x, self.y],
            "point_type": "positive" if self.positive else "negative",
        }


@dataclass(frozen=True)
class Stop:
    """``stop_action``: the mask is good; end the episode."""

    name = "stop_action"
    clamped = False

    def arguments(self) -> dict[str, Any]:
        return {}


Action = AddBox | AddPoint | Stop


@dataclass(frozen=True)
class ParseError:
    """An invalid turn: ``reason`` is one of PARSE_ERROR_REASONS, ``detail`` says what was seen."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class ParsedTurn:
    """Everything the parser found in one assistant text."""

    result: Action | ParseError
    phrase: str = ""
    repairs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not isinstance(self.result, ParseError)


# ============================================================================ formatter

_DEFAULT_PHRASE = {"add_bbox": PHRASE_BOX, "add_point": PHRASE_REFINE, "stop_action": PHRASE_STOP}


def format_action(action: Action, phrase: str | None = None) -> str:
    """The exact assistant text for ``action`` (phrase + newline + tool call); the default phrase
    is PHRASE_BOX / PHRASE_REFINE / PHRASE_STOP. ``parse_action(format_action(a)) == a``."""
    if not isinstance(action, (AddBox, AddPoint, Stop)):
        raise TypeError(f"action must be AddBox, AddPoint or Stop, got {type(action).__name__}")
    for v in _coords(action):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= GRID_MAX:
            raise ValueError(f"{action!r}: coordinates must be integers in 0..{GRID_MAX}")
    if isinstance(action, AddBox) and not (action.x1 < action.x2 and action.y1 < action.y2):
        raise ValueError(f"{action!r}: a box needs x1 < x2 and y1 < y2")
    if phrase is not None and (not isinstance(phrase, str) or OPEN_TAG in phrase):
        raise ValueError(f"phrase must be a str without {OPEN_TAG!r}, got {phrase!r:.60}")
    return assistant_text(
        _DEFAULT_PHRASE[action.name] if phrase is None else phrase,
        action.name,
        action.arguments(),
    )


def _coords(action: Action) -> tuple[Any, ...]:
    if isinstance(action, AddBox):
        return (action.x1, action.y1, action.x2, action.y2)
    if isinstance(action, AddPoint):
        return (action.x, action.y)
    return ()


# ============================================================================ parser


def parse_action(text: Any) -> Action | ParseError:
    """The action in an assistant text, or a ParseError with the reason. Never raises."""
    return parse_turn(text).result


def parse_turn(text: Any) -> ParsedTurn:
    """Phrase, action (or error) and the repairs applied. Never raises."""
    if not isinstance(text, str):
        return ParsedTurn(ParseError("not_text", f"expected str, got {type(text).__name__}"))
    try:
        return _parse(text)
    except Exception as exc:  # noqa: BLE001 - model output must never crash the runtime
        return ParsedTurn(ParseError("internal", f"{type(exc).__name__}: {exc}"[:200]))


def _parse(text: str) -> ParsedTurn:
    start = text.find(OPEN_TAG)
    if start < 0:
        return ParsedTurn(ParseError("no_tool_call", "no <tool_call> tag in the output"))
    phrase = text[:start].strip()
    rest = text[start + len(OPEN_TAG) :]
    repairs: list[str] = []
    end = rest.find(CLOSE_TAG)
    if end >= 0:
        block = rest[:end]
    else:
        cut = [i for i in (rest.find(END_TOKEN), rest.find(OPEN_TAG)) if i >= 0]
        block = rest[: min(cut)] if cut else rest
        repairs.append("missing_close_tag")
    span = _first_object(block)
    if span is None:
        return ParsedTurn(ParseError("malformed_json", _clip(block)), phrase, tuple(repairs))
    lo, hi = span
    if block[:lo].strip() or block[hi:].strip():
        repairs.append("extra_text")
    obj, fixes = _loads_repaired(block[lo:hi])
    repairs.extend(fixes)
    if obj is None:
        return ParsedTurn(ParseError("malformed_json", _clip(block[lo:hi])), phrase, tuple(repairs))
    result = _to_action(obj, repairs)
    return ParsedTurn(result, phrase, tuple(repairs))


def _clip(s: str, n: int = 120) -> str:
    s = s.strip()
    return s if len(s) <= n else s[:n] + "..."


def _first_object(s: str) -> tuple[int, int] | None:
    """(start, end) of the first balanced {...} in s, honouring quoted strings; None if none."""
    lo = s.find("{")
    if lo < 0:
        return None
    depth, quote, escaped = 0, "", False
    for i in range(lo, len(s)):
        ch = s[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return lo, i + 1
    return None


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _loads_repaired(s: str) -> tuple[Any, list[str]]:
    """json.loads, else the same after quoting bare keys and re-quoting single-quoted strings."""
    try:
        return json.loads(s), []
    except (ValueError, RecursionError):
        pass
    out: list[str] = []
    fixes: set[str] = set()
    last = ""  # last non-blank character written outside strings
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == '"' or ch == "'":  # copy a string literal, re-quoted with "
            j, buf = i + 1, []
            while j < n and s[j] != ch:
                if s[j] == "\\" and j + 1 < n:
                    buf.append(s[j : j + 2])
                    j += 2
                    continue
                buf.append('\\"' if s[j] == '"' else s[j])
                j += 1
            if j >= n:
                return None, sorted(fixes)
            if ch == "'":
                fixes.add("single_quotes")
                out.append('"' + "".join(buf).replace("\\'", "'") + '"')
            else:
                out.append(s[i : j + 1])
            last = '"'
            i = j + 1
            continue
        m = _KEY.match(s, i)
        if m:
            k = m.end()
            while k < n and s[k] in " \t\r\n":
                k += 1
            if k < n and s[k] == ":" and last in ("{", ","):
                out.append(f'"{m.group()}"')
                fixes.add("unquoted_keys")
            else:
                out.append(m.group())
            last = m.group()[-1]
            i = m.end()
            continue
        out.append(ch)
        if not ch.isspace():
            last = ch
        i += 1
    try:
        return json.loads("".join(out)), sorted(fixes)
    except (ValueError, RecursionError):
        return None, sorted(fixes)


def _to_action(obj: Any, repairs: list[str]) -> Action | ParseError:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return ParseError(
            "bad_call", f'expected {{"name": str, "arguments": {{...}}}}, got {_clip(repr(obj))}'
        )
    name = obj["name"].strip()
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return ParseError("bad_arguments", f"arguments string is not JSON: {_clip(args)}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return ParseError("bad_arguments", f"arguments must be an object, got {_clip(repr(args))}")
    if name == "stop_action":
        return Stop()
    if name == "add_bbox":
        return _box(args, repairs)
    if name == "add_point":
        kind = args.get("point_type")
        if not isinstance(kind, str) or kind.strip().lower() not in ("positive", "negative"):
            return ParseError(
                "bad_arguments", f"point_type must be 'positive' or 'negative', got {kind!r}"
            )
        return _point(args, kind.strip().lower() == "positive", repairs)
    if name in ("add_positive_point", "add_negative_point"):
        repairs.append("legacy_name")
        return _point(args, name == "add_positive_point", repairs)
    return ParseError("unknown_tool", f"unknown tool {_clip(name, 60)!r}")


def _number(v: Any, what: str, repairs: list[str]) -> int | ParseError:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return ParseError("not_a_number", f"{what} must be a number, got {_clip(repr(v), 60)}")
    if isinstance(v, float):
        if not math.isfinite(v):
            return ParseError("not_a_number", f"{what} must be finite, got {v!r}")
        if v != int(v) and "rounded" not in repairs:
            repairs.append("rounded")
        return math.floor(v + 0.5)
    return int(v)


def _grid(
    values: list[Any], names: tuple[str, ...], repairs: list[str]
) -> tuple[list[int], bool] | ParseError:
    out = []
    for v, nm in zip(values, names):
        num = _number(v, nm, repairs)
        if isinstance(num, ParseError):
            return num
        out.append(num)
    clamped = any(not 0 <= v <= GRID_MAX for v in out)
    return [min(max(v, 0), GRID_MAX) for v in out], clamped


def _box(args: dict[str, Any], repairs: list[str]) -> AddBox | ParseError:
    raw = args.get("bbox_2d")
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        return ParseError(
            "bad_arguments", f"bbox_2d must be [x1, y1, x2, y2], got {_clip(repr(raw), 60)}"
        )
    got = _grid(list(raw), ("x1", "y1", "x2", "y2"), repairs)
    if isinstance(got, ParseError):
        return got
    (x1, y1, x2, y2), clamped = got
    if not (x1 < x2 and y1 < y2):
        return ParseError("box_order", f"box needs x1 < x2 and y1 < y2, got {[x1, y1, x2, y2]}")
    return AddBox(x1, y1, x2, y2, clamped=clamped)


def _point(args: dict[str, Any], positive: bool, repairs: list[str]) -> AddPoint | ParseError:
    if "point_2d" in args:
        raw = args["point_2d"]
        if not isinstance(raw, (list, tuple)) or len(raw) != 2:
            return ParseError(
                "bad_arguments", f"point_2d must be [x, y], got {_clip(repr(raw), 60)}"
            )
        values = list(raw)
    elif "x" in args and "y" in args:
        values = [args["x"], args["y"]]
    else:
        return ParseError(
            "bad_arguments", f"a point needs point_2d or x, y; got keys {sorted(args)[:6]}"
        )
    got = _grid(values, ("x", "y"), repairs)
    if isinstance(got, ParseError):
        return got
    (x, y), clamped = got
    return AddPoint(x, y, positive, clamped=clamped)
