"""Helpers shared by the GT-driven policies (oracle-box, clicker, expert): the GT box and a
per-episode seed (pixel -> grid actions: ``protocol.coords.to_grid``)."""

from __future__ import annotations

import hashlib

import numpy as np


def gt_box(gt: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x1, y1, x2, y2), inclusive pixel coordinates, of a (H, W) mask; None if empty."""
    ys = np.flatnonzero(np.asarray(gt).any(axis=1))
    xs = np.flatnonzero(np.asarray(gt).any(axis=0))
    if len(xs) == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def episode_seed(seed: int, *arrays: np.ndarray | None) -> np.random.Generator:
    """A generator seeded by ``seed`` and the content of ``arrays`` (image, GT), so every
    episode is reproducible on its own, whatever ran before it."""
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(f"{a.shape}{a.dtype}".encode())
            h.update(a.tobytes())
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int.from_bytes(h.digest()[:8], "little")])
