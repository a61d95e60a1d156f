"""Encoded images and the thread-safe content-keyed store every episode on a segmenter shares.

``EncodingStore.get_or_encode(key, compute)`` returns the cached :class:`Encoded` for ``key`` or
runs ``compute()`` once: concurrent callers asking for the same key while it is being computed
wait for that one computation instead of running the encoder again. One lock guards the LRU
order; the encoder itself runs outside it, so different images encode in parallel. NumPy only.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


def image_key(rgb: np.ndarray) -> str:
    """Content key of an (H, W, 3) uint8 image: BLAKE2b-128 of its bytes and shape."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).data)
    return h.hexdigest()


@dataclass(frozen=True)
class Encoded:
    """One encoded image, immutable and shareable between episodes and threads.

    embedding: the backend's embedding object on its device ((1, C, h, w): a torch tensor, a
    NumPy array, an ORT value or a CUDA buffer); original_size: (H, W) of the image;
    resized_size: (rows, cols) of the resized image inside the model's input frame; key: the
    image's content key (``image_key``).
    """

    embedding: Any
    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    key: str = ""


class _Pending:
    """An encoding in progress: waiters block on ``done`` and then read ``value`` / ``error``."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Encoded | None = None
        self.error: BaseException | None = None


class EncodingStore:
    """A bounded LRU map key -> Encoded; ``capacity`` 0 keeps nothing (every call encodes,
    concurrent calls for one key still share one computation)."""

    def __init__(self, capacity: int = 8) -> None:
        if int(capacity) < 0:
            raise ValueError(f"cache_size must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self._items: OrderedDict[str, Encoded] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self.computed = 0  # how many times ``compute`` ran (encoder calls)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def get_or_encode(self, key: str, compute: Callable[[], Encoded], keep: bool = True) -> Encoded:
        """The Encoded of ``key``: from the store, from a concurrent computation of the same key,
        or computed here. An exception in ``compute`` reaches every caller waiting on it.
        keep=False: a computed value is not added (one episode's zoom crops must not evict the
        images other episodes share)."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
        assert pending is not None
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.value is not None
            return pending.value
        try:
            value = compute()
        except BaseException as exc:
            pending.error = exc
            with self._lock:
                del self._pending[key]
            pending.done.set()
            raise
        pending.value = value
        with self._lock:
            self.computed += 1
            del self._pending[key]
            if self.capacity and keep:
                self._items[key] = value
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        pending.done.set()
        return value
