"""SessionConfig: the turn budget, retry rules and final-mask clean-up of one episode."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

# The largest turn budget accepted (every path builds a SessionConfig, so this is the one
# guard): each policy call resends every earlier view, so the work per call grows with the
# turn count. 50 covers the click benchmarks (NoC cap 20); $MSRT_MAX_ACTIONS_LIMIT raises it.
DEFAULT_MAX_ACTIONS_LIMIT = 50


def _show(value: object) -> str:
    """repr for messages; an integer too long to print (Python's digit limit) is summarised."""
    try:
        return repr(value)[:80]
    except ValueError:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"


def max_actions_limit() -> int:
    """The turn-budget ceiling: $MSRT_MAX_ACTIONS_LIMIT when set (an integer >= 1), else 50."""
    raw = os.environ.get("MSRT_MAX_ACTIONS_LIMIT", "").strip()
    if not raw:
        return DEFAULT_MAX_ACTIONS_LIMIT
    if not raw.isdigit() or int(raw) < 1 or len(raw) > 6:
        raise ValueError(
            f"environment variable MSRT_MAX_ACTIONS_LIMIT must be an integer in 1..999999, "
            f"got {raw!r}"
        )
    return int(raw)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class SessionConfig:
    """Turn budget, retry rules and post-processing of one episode (defaults = PROTOCOL.md)."""

    max_actions: int = field(
        default=5,
        metadata=_help("executed box/point actions before the episode ends (reason 'budget')"),
    )
    refuse_first_stop: int = field(
        default=1,
        metadata=_help("times a stop_action before any action is refused and asked again"),
    )
    invalid_retries: int = field(
        default=1,
        metadata=_help(
            "re-asks after an unparsable answer (per turn) before ending with 'invalid_output'"
        ),
    )
    keep_largest: bool = field(
        default=False, metadata=_help("keep only the largest connected component of the final mask")
    )
    fill_holes: bool = field(default=False, metadata=_help("fill enclosed holes of the final mask"))
    max_hole_area: int | None = field(
        default=None,
        metadata=_help("with fill_holes: fill only holes of at most this many pixels (None: all)"),
    )
    connectivity: int = field(
        default=8, metadata=_help("4 or 8: connectivity for component counts and clean-up")
    )
    view_size: int = field(
        default=512,
        metadata=_help("side of the square observation image (512 for the released model)"),
    )
    strategy: str | None = field(
        default=None,
        metadata=_help(
            "prompt-carrying strategy of the tool; None: the segmenter family's measured default"
        ),
    )
    turn_deadline_s: float | None = field(
        default=None,
        metadata=_help(
            "seconds a policy answer may take; a later answer is discarded and the episode ends "
            "with 'turn_deadline' (None: no limit; a running call is not interrupted)"
        ),
    )
    episode_deadline_s: float | None = field(
        default=None,
        metadata=_help(
            "seconds from start() after which the episode ends with 'episode_deadline' (checked "
            "before each policy call and after each answer; None: no limit)"
        ),
    )
    agent_ends_episode: bool = field(
        default=True,
        metadata=_help(
            "an agent's stop_action or its used-up budget ends the episode; False (interactive "
            "sessions, the server): the episode stays open for a person's actions until accept"
        ),
    )
    record_masks: bool = field(
        default=True,
        metadata=_help("store each turn's mask (RLE) so messages can be rebuilt from the record"),
    )

    def __post_init__(self) -> None:
        for name in ("max_actions", "view_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"SessionConfig.{name} must be an integer >= 1, got {_show(value)}"
                )
        if self.view_size > 4096:
            raise ValueError(
                f"SessionConfig.view_size must be at most 4096, got {_show(self.view_size)}"
            )
        limit = max_actions_limit()
        if self.max_actions > limit:
            raise ValueError(
                f"SessionConfig.max_actions must be at most {limit} (each turn resends every "
                f"earlier view to the policy), got {_show(self.max_actions)}; raise the ceiling with "
                "MSRT_MAX_ACTIONS_LIMIT if you really need more"
            )
        for name in ("refuse_first_stop", "invalid_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 100:
                raise ValueError(
                    f"SessionConfig.{name} must be an integer >= 0 and <= 100 (0 disables it), "
                    f"got {_show(value)}"
                )
        hole = self.max_hole_area
        if hole is not None and (
            isinstance(hole, bool) or not isinstance(hole, int) or not 0 <= hole < 2**31
        ):
            raise ValueError(
                "SessionConfig.max_hole_area must be None (every hole) or an integer in "
                f"0..{2**31 - 1} pixels, got {_show(hole)}"
            )
        for name in ("turn_deadline_s", "episode_deadline_s"):
            v = getattr(self, name)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not v > 0
            ):
                raise ValueError(
                    f"SessionConfig.{name} must be None or a number of seconds > 0, got {v!r}"
                )
        if self.connectivity not in (4, 8):
            raise ValueError(
                f"SessionConfig.connectivity must be 4 or 8, got {self.connectivity!r}"
            )

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}
