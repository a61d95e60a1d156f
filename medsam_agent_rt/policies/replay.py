"""``replay``: a scripted policy (tests, reproducing a recorded episode)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from medsam_agent_rt.policies.base import Observation, PolicyTurn, Task


class ReplayPolicy:
    """Emits ``texts`` one per call, in order, from the start at every ``reset``. Replaying a
    record's texts (retries included) through the same tool reproduces its masks exactly.
    Running out of texts raises: a script shorter than the episode is a bug in the test/record."""

    requires_gt = False

    def __init__(self, texts: Sequence[str], name: str = "replay") -> None:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a sequence of str (one assistant text per policy call)")
        self.texts = list(texts)
        self.name = name
        self._next = 0

    @classmethod
    def from_file(cls, path: str | Path) -> ReplayPolicy:
        """A JSON file: an episode record (its turns' texts, in order) or a list of texts."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"replay file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"replay file {path} is not JSON: {exc}") from exc
        if isinstance(data, dict) and isinstance(data.get("turns"), list):
            texts = [t.get("text") for t in data["turns"] if isinstance(t, dict)]
        elif isinstance(data, list):
            texts = data
        else:
            raise ValueError(
                f"replay file {path} must hold an episode record or a JSON list of texts"
            )
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"replay file {path}: every text must be a string")
        return cls(texts, name=f"replay:{path}")

    def reset(self, task: Task) -> None:
        self._next = 0

    def act(self, observation: Observation) -> PolicyTurn:
        if self._next >= len(self.texts):
            raise RuntimeError(
                f"replay script exhausted: {len(self.texts)} texts, asked for call {self._next + 1}"
            )
        text = self.texts[self._next]
        self._next += 1
        return PolicyTurn(text, {"replay_index": self._next - 1})
