"""Sessions: one uploaded image, its target, an optional GT mask and its current Episode, plus
the turn events streamed to clients; and the store that bounds them (count, idle time, bytes
on disk; least recently used evicted first).

Each session owns a folder ``<store>/<random id>/`` (the upload, an unpacked series, exported
outputs); ids are 128-bit random hex, so no client input ever names a path. Every operation
on a session holds its ``lock`` (an asyncio lock): a person's click and an agent turn of the
same session never overlap, while different sessions interleave on the model worker."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_ID_CHARS = set("0123456789abcdef")


def new_session_id() -> str:
    return secrets.token_hex(16)


def valid_session_id(sid: str) -> bool:
    return len(sid) == 32 and set(sid) <= _ID_CHARS


@dataclass
class Session:
    """One image being segmented. ``episode`` is None until the first agent turn or click
    (the image is encoded then); ``generation`` counts resets (a new target, window or reset
    starts a new Episode on the same image); ``events`` are the turns published so far."""

    id: str
    folder: Path
    source: Path  # the stored upload (file, or the unpacked series folder)
    name: str  # the client's file name, sanitised (a label, never a path)
    loaded: Any  # io.LoadedImage
    read_args: dict[str, Any]
    upload_bytes: int
    target: str = ""
    gt: np.ndarray | None = None
    episode: Any = None
    policy: Any = None
    generation: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    used: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    runner: asyncio.Task | None = None
    stop_requested: bool = False
    closed: bool = False
    exported: tuple[int, int] | None = None  # (generation, turns) of the files in out/

    @property
    def disk_bytes(self) -> int:
        return self.upload_bytes

    @property
    def running(self) -> bool:
        return self.runner is not None and not self.runner.done()

    async def publish(self, kind: str, **data: Any) -> dict[str, Any]:
        """Append an event and wake the streams waiting on it."""
        event = {"seq": len(self.events), "kind": kind, "generation": self.generation, **data}
        async with self.changed:
            self.events.append(event)
            self.changed.notify_all()
        return event

    def state(self) -> dict[str, Any]:
        """The session as JSON: image, target, whether an episode runs, how it ended."""
        ep = self.episode
        rec = ep.record if ep is not None and ep.started else None
        h, w = self.loaded.shape
        return {
            "id": self.id,
            "name": self.name,
            "width": w,
            "height": h,
            "format": self.loaded.format,
            "modality": self.loaded.modality,
            "mapping": self.loaded.mapping.to_dict(),
            "slice_index": self.loaded.slice_index,
            "slice_count": self.loaded.slice_count,
            "frame_count": self.loaded.frame_count,
            "target": self.target,
            "has_gt": self.gt is not None,
            "generation": self.generation,
            "started": rec is not None,
            "running": self.running,
            "done": bool(ep is not None and ep.started and ep.done),
            "end_reason": None if rec is None else rec.end_reason,
            "agent_done": None if rec is None else ep.agent_done,
            "turns": 0 if rec is None else len(rec.turns),
            "final": None if rec is None else (rec.final or None),
            "events": len(self.events),
        }


class SessionStore:
    """Sessions by id, least recently used first; ``add`` evicts past ``max_sessions`` or
    ``max_bytes``; ``expire`` evicts sessions idle longer than ``ttl_s``."""

    def __init__(self, root: Path, max_sessions: int, ttl_s: float, max_bytes: int) -> None:
        self.root = root
        self.max_sessions, self.ttl_s, self.max_bytes = max_sessions, ttl_s, max_bytes
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self):
        return iter(list(self._sessions.values()))

    @property
    def disk_bytes(self) -> int:
        return sum(s.disk_bytes for s in self._sessions.values())

    def new_folder(self) -> tuple[str, Path]:
        sid = new_session_id()
        folder = self.root / sid
        folder.mkdir(mode=0o700)
        return sid, folder

    def get(self, sid: str) -> Session | None:
        s = self._sessions.get(sid) if valid_session_id(sid) else None
        if s is not None:
            s.used = time.monotonic()
            self._sessions.move_to_end(sid)
        return s

    async def add(self, session: Session) -> list[str]:
        """Insert ``session`` (most recently used); evict others past the limits. Returns the
        evicted ids."""
        evicted = []
        while self._sessions and (
            len(self._sessions) >= self.max_sessions
            or self.disk_bytes + session.disk_bytes > self.max_bytes
        ):
            oldest = next(iter(self._sessions))
            await self.remove(oldest, "evicted")
            evicted.append(oldest)
        self._sessions[session.id] = session
        return evicted

    async def expire(self) -> list[str]:
        """Evict the sessions idle for more than ``ttl_s``; returns their ids."""
        now = time.monotonic()
        old = [sid for sid, s in self._sessions.items() if now - s.used > self.ttl_s]
        for sid in old:
            await self.remove(sid, "expired")
        return old

    async def remove(self, sid: str, why: str = "deleted") -> bool:
        """Stop the session's agent run, cancel its episode, tell its streams, delete its
        folder. False when no such session."""
        s = self._sessions.pop(sid, None)
        if s is None:
            return False
        if why != "deleted":
            self.evicted += 1
        s.closed = True
        s.stop_requested = True
        if s.episode is not None and s.episode.started:
            s.episode.cancel()  # thread-safe: a turn in flight finishes and is discarded
        await s.publish("closed", reason=why)
        s.episode = s.policy = s.gt = None
        shutil.rmtree(s.folder, ignore_errors=True)
        return True

    async def clear(self) -> None:
        for sid in list(self._sessions):
            await self.remove(sid, "shutdown")
