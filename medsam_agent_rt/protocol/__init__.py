"""The MedSAM-Agent protocol (PROTOCOL.md) in one package: the exact strings (``text``), the chat
message structure (``messages``), the 512 view and 0..999 grid mapping (``view``) and the action
parser (``actions``). Training, inference, evaluation and serving all import it from here."""

from medsam_agent_rt.protocol.messages import (
    Message,
    assistant_message,
    build_messages,
    system_message,
    user_message,
)
from medsam_agent_rt.protocol.text import (
    FOLLOWUP_TURN_TEXT,
    GRID_MAX,
    PHRASE_BOX,
    PHRASE_FIRST_POINT,
    PHRASE_REFINE,
    PHRASE_STOP,
    SYSTEM_PROMPT,
    TOOL_NAMES,
    TOOL_SCHEMAS,
    assistant_text,
    first_turn_text,
    tool_call_text,
)

__all__ = [
    "FOLLOWUP_TURN_TEXT",
    "GRID_MAX",
    "Message",
    "PHRASE_BOX",
    "PHRASE_FIRST_POINT",
    "PHRASE_REFINE",
    "PHRASE_STOP",
    "SYSTEM_PROMPT",
    "TOOL_NAMES",
    "TOOL_SCHEMAS",
    "assistant_message",
    "assistant_text",
    "build_messages",
    "first_turn_text",
    "system_message",
    "tool_call_text",
    "user_message",
]
