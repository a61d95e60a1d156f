"""The exact strings of the MedSAM-Agent conversation (PROTOCOL.md). Byte-stable: the released
checkpoint and our trained policies were trained on them, and tests pin them. Change nothing here
without retraining and updating the pinned hashes in tests/protocol/test_text.py."""

from __future__ import annotations

import json
from typing import Any

GRID_MAX = 999  # coordinates are integers in 0..GRID_MAX on the model's view

# ----------------------------------------------------------------------------- tool schemas

TOOL_SCHEMAS: tuple[dict[str, Any], ...] = (
    {
        "type": "function",
        "function": {
            "name": "add_bbox",
            "description": "Draw a bounding box around the target to create or reset the mask.",
            "parameters": {
                "type": "object",
                "properties": {
                    "bbox_2d": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "Box [x1, y1, x2, y2] with x1 < x2, y1 < y2, each an "
                        "integer in 0-999 relative to the image width/height.",
                    }
                },
                "required": ["bbox_2d"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add_point",
            "description": "Click a point: a positive point adds the region under it to the "
            "mask, a negative point removes it.",
            "parameters": {
                "type": "object",
                "properties": {
                    "point_2d": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "Point [x, y], each an integer in 0-999 relative to "
                        "the image width/height.",
                    },
                    "point_type": {"type": "string", "enum": ["positive", "negative"]},
                },
                "required": ["point_2d", "point_type"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "stop_action",
            "description": "Finish: the current mask covers the target accurately.",
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
    },
)

TOOL_NAMES = tuple(t["function"]["name"] for t in TOOL_SCHEMAS)

# ----------------------------------------------------------------------------- system prompt

_ROLE = (
    "You are a professional medical image segmentation annotator. You segment the requested "
    "target by calling tools: first create an initial mask with a tool, then refine it step by "
    "step. The current mask is shown on the image as a semi-transparent green overlay. The goal "
    "is a mask that covers the whole target and nothing else."
)

_TOOLS_HEADER = (
    "# Tools\n\n"
    "You may call one function per turn to edit the mask.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)

_TOOLS_FOOTER = (
    "</tools>\n\n"
    "For each turn, write a short phrase, then return one JSON object with the function name "
    "and arguments within <tool_call></tool_call> XML tags:\n"
    "<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)

_REMINDER = "Before every action, look carefully at the current mask on the image."


def _system_prompt() -> str:
    tools = "\n".join(json.dumps(t, ensure_ascii=False) for t in TOOL_SCHEMAS)
    return f"{_ROLE}\n\n{_TOOLS_HEADER}\n{tools}\n{_TOOLS_FOOTER}\n\n{_REMINDER}"


SYSTEM_PROMPT: str = _system_prompt()

# ----------------------------------------------------------------------------- turn texts

FIRST_TURN_TEMPLATE = (
    "The target to be segmented is: {target}. Analyse the image and decide the first action."
)
FOLLOWUP_TURN_TEXT = (
    "Here is the updated mask. What is the next action? Call stop_action if the mask is accurate."
)

# Short phrases written before each tool call (expert trajectories use exactly these).
PHRASE_BOX = "Locate the target with a box."
PHRASE_FIRST_POINT = "Locate the target with a point."
PHRASE_REFINE = "Need refinement."
PHRASE_STOP = "Good enough to stop."


def first_turn_text(target: str) -> str:
    """User text of turn 1 for a target description such as "left kidney in abdomen CT"."""
    target = " ".join(str(target).split()).rstrip(".")
    if not target:
        raise ValueError("target description must not be empty")
    return FIRST_TURN_TEMPLATE.format(target=target)


def tool_call_text(name: str, arguments: dict[str, Any]) -> str:
    """``<tool_call>`` block in the released format (json.dumps default separators)."""
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def assistant_text(phrase: str, name: str, arguments: dict[str, Any]) -> str:
    """A whole assistant turn: phrase, newline, tool call."""
    return f"{phrase}\n{tool_call_text(name, arguments)}"
