"""Helpers shared by the GT-driven policies (oracle-box, clicker, expert): GT box, pixel -> grid
actions, and a per-episode seed."""

from __future__ import annotations

import hashlib

import numpy as np

from medsam_agent_rt.protocol import GRID_MAX, AddBox, AddPoint, ViewGeometry


def gt_box(gt: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x1, y1, x2, y2), inclusive pixel coordinates, of a (H, W) mask; None if empty."""
    ys = np.flatnonzero(np.asarray(gt).any(axis=1))
    xs = np.flatnonzero(np.asarray(gt).any(axis=0))
    if len(xs) == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def box_to_grid(box: tuple[int, int, int, int], geometry: ViewGeometry) -> AddBox:
    """A pixel box as a valid grid AddBox (x1 < x2, y1 < y2: a box thinner than one grid unit
    is widened by one unit, inwards at the grid's edge)."""
    x1, y1, _ = geometry.pixel_to_grid(box[0], box[1])
    x2, y2, _ = geometry.pixel_to_grid(box[2], box[3])
    x1, x2 = _widen(min(x1, x2), max(x1, x2))
    y1, y2 = _widen(min(y1, y2), max(y1, y2))
    return AddBox(x1, y1, x2, y2)


def _widen(a: int, b: int) -> tuple[int, int]:
    if a < b:
        return a, b
    return (a, a + 1) if a < GRID_MAX else (a - 1, a)


def point_to_grid(x: int, y: int, positive: bool, geometry: ViewGeometry) -> AddPoint:
    """A pixel click as a grid AddPoint."""
    gx, gy, _ = geometry.pixel_to_grid(x, y)
    return AddPoint(gx, gy, bool(positive))


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
