"""The conversation as a list of chat messages (the structure every policy and the SFT data use).

A message is ``{"role": "system" | "user" | "assistant", "content": [part, ...]}`` with parts
``{"type": "text", "text": str}`` or ``{"type": "image", "image": ndarray (V, V, 3) uint8}``.
User turns put the image first, then the text. All earlier turns stay in context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medsam_agent_rt.protocol.text import FOLLOWUP_TURN_TEXT, SYSTEM_PROMPT, first_turn_text

Message = dict[str, Any]


def system_message() -> Message:
    return {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}


def user_message(image: np.ndarray, text: str) -> Message:
    return {
        "role": "user",
        "content": [{"type": "image", "image": image}, {"type": "text", "text": text}],
    }


def assistant_message(text: str) -> Message:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def build_messages(
    target: str, images: Sequence[np.ndarray], assistant_texts: Sequence[str]
) -> list[Message]:
    """System, then alternating user/assistant turns.

    images[0] is the 512 view; images[k] (k >= 1) is the overlay after the k-th executed action.
    len(assistant_texts) is len(images) (a finished conversation) or len(images) - 1 (the
    policy is about to answer the last user turn).
    """
    if not images:
        raise ValueError("a conversation needs at least the first image")
    if len(assistant_texts) not in (len(images), len(images) - 1):
        raise ValueError(
            f"{len(images)} images need {len(images) - 1} or {len(images)} assistant texts, "
            f"got {len(assistant_texts)}"
        )
    msgs = [system_message(), user_message(images[0], first_turn_text(target))]
    for k, text in enumerate(assistant_texts):
        msgs.append(assistant_message(text))
        if k + 1 < len(images):
            msgs.append(user_message(images[k + 1], FOLLOWUP_TURN_TEXT))
    return msgs
