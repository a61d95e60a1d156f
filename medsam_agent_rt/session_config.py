"""SessionConfig: the turn budget, retry rules and final-mask clean-up of one episode."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


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
    record_masks: bool = field(
        default=True,
        metadata=_help("store each turn's mask (RLE) so messages can be rebuilt from the record"),
    )

    def __post_init__(self) -> None:
        for name in ("max_actions", "view_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(
                    f"SessionConfig.{name} must be an integer >= 1, got {getattr(self, name)!r}"
                )
        for name in ("refuse_first_stop", "invalid_retries"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(
                    f"SessionConfig.{name} must be an integer >= 0 (0 disables it), got {getattr(self, name)!r}"
                )
        hole = self.max_hole_area
        if hole is not None and (isinstance(hole, bool) or not isinstance(hole, int) or hole < 0):
            raise ValueError(
                f"SessionConfig.max_hole_area must be None or an integer >= 0, got {hole!r}"
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
