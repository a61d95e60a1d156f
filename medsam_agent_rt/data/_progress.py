"""A progress bar: tqdm when installed, else a plain line on stderr every ~5 %."""

from __future__ import annotations

import sys
import time


class _Plain:
    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n = total, desc, 0
        self._next = 0
        self._t0 = time.perf_counter()

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.n >= self._next or self.n >= self.total:
            rate = self.n / max(time.perf_counter() - self._t0, 1e-9)
            print(f"{self.desc}: {self.n}/{self.total} ({rate:.1f}/s)", file=sys.stderr)
            self._next = self.n + max(1, self.total // 20)

    def close(self) -> None:
        pass


class _Silent:
    def update(self, k: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, desc: str, enabled: bool = True):
    """An object with ``update(k)`` and ``close()``."""
    if not enabled:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total, desc)
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True)
