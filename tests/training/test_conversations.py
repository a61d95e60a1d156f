"""Conversation JSONL format: write -> read round trip, torn tails, malformed lines."""

from __future__ import annotations

import numpy as np
import pytest
from medsam_agent_rt.training.conversations import (
    ConversationWriter,
    iter_conversations,
    load_images,
    read_conversation_ids,
)

from medsam_agent_rt.protocol import assistant_text, build_messages


def _messages(seed: int):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    texts = [
        assistant_text("Locate the target with a box.", "add_bbox", {"bbox_2d": [1, 2, 30, 40]}),
        assistant_text("Good enough to stop.", "stop_action", {}),
    ]
    return build_messages("liver in abdomen CT", imgs, texts), imgs


def test_round_trip_is_exact(tmp_path):
    w = ConversationWriter(tmp_path)
    msgs, imgs = _messages(0)
    w.write("a#0", msgs, meta={"final_iou": 0.9}, target="liver in abdomen CT")
    (conv,) = list(iter_conversations(w.path))
    assert conv["target"] == "liver in abdomen CT" and conv["meta"]["final_iou"] == 0.9
    back = load_images(conv, tmp_path)
    assert [m["role"] for m in back] == [m["role"] for m in msgs]
    got = [p["image"] for m in back for p in m["content"] if p["type"] == "image"]
    assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, imgs))
    texts = [p["text"] for m in back for p in m["content"] if p["type"] == "text"]
    assert texts == [p["text"] for m in msgs for p in m["content"] if p["type"] == "text"]
    assert read_conversation_ids(w.path) == {"a#0"}


def test_torn_tail_ignored_and_bad_line_named(tmp_path):
    w = ConversationWriter(tmp_path)
    w.write("a#0", _messages(1)[0])
    with open(w.path, "a") as f:
        f.write('{"id": "b#0", "mess')  # interrupted append
    assert [c["id"] for c in iter_conversations(w.path)] == ["a#0"]
    with open(w.path, "a") as f:
        f.write('ages": []}\nnot json\n')
    with pytest.raises(ValueError, match=r"conversations.jsonl:3"):
        list(iter_conversations(w.path))


def test_rejects_non_rgb_images(tmp_path):
    msgs, _ = _messages(2)
    msgs[1]["content"][0]["image"] = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        ConversationWriter(tmp_path).write("x", msgs)
