"""The model worker: ONE thread runs every call that touches the shared segmenter or policy
(episode start = encode, agent step, a person's box / click / undo), so episodes never run
model code at the same time and the event loop never blocks on it. Calls run in arrival order
(FIFO); an agent run is submitted turn by turn, so sessions interleave fairly."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ModelWorker:
    """``await worker.call(fn, *args)`` runs ``fn`` on the worker thread and returns its result
    (or raises its exception). ``queued``: calls waiting or running; ``busy_s``: seconds spent
    running calls."""

    def __init__(self, on_call: Callable[[str, float, float], None] | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="msrt-model")
        self._lock = threading.Lock()
        self.queued = 0
        self.busy_s = 0.0
        self._on_call = on_call  # (what, wait seconds, run seconds)

    async def call(self, fn: Callable[..., T], *args: Any, what: str = "call") -> T:
        submitted = time.perf_counter()
        with self._lock:
            self.queued += 1

        def run() -> T:
            started = time.perf_counter()
            try:
                return fn(*args)
            finally:
                ran = time.perf_counter() - started
                with self._lock:
                    self.queued -= 1
                    self.busy_s += ran
                if self._on_call is not None:
                    self._on_call(what, started - submitted, ran)

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    def close(self) -> None:
        """Finish the running call, drop the waiting ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)
