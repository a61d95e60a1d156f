"""Pins the exact protocol strings: the released checkpoint and our trained policies were trained on
them, so any byte change must be deliberate (retrain, then update these hashes)."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from medsam_agent_rt.protocol import messages as M
from medsam_agent_rt.protocol import text as T


def sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def test_system_prompt_is_pinned():
    assert sha(T.SYSTEM_PROMPT) == (
        "3584e94a6b7d9a732b79bf24f4822552019dbdfc12f416a062a173cc4abbffa4"
    )
    assert len(T.SYSTEM_PROMPT) == 1861


def test_turn_texts_are_pinned():
    first = T.first_turn_text("left kidney in abdomen CT")
    assert first == (
        "The target to be segmented is: left kidney in abdomen CT. "
        "Analyse the image and decide the first action."
    )
    assert sha(first) == "07139cbf98c5c772a0b9ec5d3c34e110073918635782b7ba251fd9be2ce05607"
    assert sha(T.FOLLOWUP_TURN_TEXT) == (
        "15b29d434d2c78da7a8556109079bee64192f13d47fa222911a5227646fb3551"
    )
    # whitespace and a trailing full stop in the description are normalised
    assert T.first_turn_text("  left   kidney in abdomen CT. ") == first


def test_assistant_text_is_pinned():
    text = T.assistant_text(
        T.PHRASE_REFINE, "add_point", {"point_2d": [198, 401], "point_type": "positive"}
    )
    assert text == (
        "Need refinement.\n<tool_call>\n"
        '{"name": "add_point", "arguments": {"point_2d": [198, 401], "point_type": "positive"}}'
        "\n</tool_call>"
    )
    assert sha(text) == "130c4ad06940750a7a0c3c294257b59b15943c9bb8e9f969a9392e28a5fc3455"
    assert (T.PHRASE_BOX, T.PHRASE_FIRST_POINT, T.PHRASE_REFINE, T.PHRASE_STOP) == (
        "Locate the target with a box.",
        "Locate the target with a point.",
        "Need refinement.",
        "Good enough to stop.",
    )


def test_system_prompt_lists_the_three_tool_schemas_one_per_line():
    inside = T.SYSTEM_PROMPT.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    lines = inside.split("\n")
    assert [json.loads(line) for line in lines] == list(T.TOOL_SCHEMAS)
    assert [json.loads(line)["function"]["name"] for line in lines] == [
        "add_bbox",
        "add_point",
        "stop_action",
    ]
    assert "<think>" not in T.SYSTEM_PROMPT
    assert T.GRID_MAX == 999


def test_build_messages_structure():
    view = np.zeros((4, 4, 3), np.uint8)
    over = np.ones((4, 4, 3), np.uint8)
    msgs = M.build_messages("liver in CT", [view, over], ["a"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"][0]["image"] is view
    assert msgs[1]["content"][1]["text"] == T.first_turn_text("liver in CT")
    assert msgs[3]["content"][0]["image"] is over
    assert msgs[3]["content"][1]["text"] == T.FOLLOWUP_TURN_TEXT
