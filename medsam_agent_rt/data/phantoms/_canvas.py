"""Geometry shared by the phantom modalities: the unit-coordinate canvas and smooth random
shapes (pure NumPy).

Geometry is expressed in *units*: the image centre is (0, 0), +x right, +y down, and half the
shorter image side is 1 unit, so shapes keep their proportions on non-square images and at
any resolution. Randomness always comes from a ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

F32 = np.float32


class Canvas:
    """Pixel grid of an (H, W) image and its unit coordinates."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = int(height), int(width)
        self.s = min(self.h, self.w) / 2.0  # pixels per unit
        self.cx, self.cy = (self.w - 1) / 2.0, (self.h - 1) / 2.0
        self.xs = ((np.arange(self.w, dtype=F32) - self.cx) / self.s).astype(F32)
        self.ys = ((np.arange(self.h, dtype=F32) - self.cy) / self.s).astype(F32)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.h, self.w)

    @property
    def half_w(self) -> float:
        """Half the image width in units (>= 1)."""
        return self.w / 2.0 / self.s

    @property
    def half_h(self) -> float:
        return self.h / 2.0 / self.s

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Full (H, W) unit coordinate arrays X, Y (cached)."""
        if self._grid is None:
            self._grid = (
                np.broadcast_to(self.xs[None, :], self.shape),
                np.broadcast_to(self.ys[:, None], self.shape),
            )
        return self._grid

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
        """Row/column slices of the pixels whose centres lie in the unit box (clipped)."""
        c0 = max(0, int(math.floor(x0 * self.s + self.cx)))
        c1 = min(self.w, int(math.ceil(x1 * self.s + self.cx)) + 1)
        r0 = max(0, int(math.floor(y0 * self.s + self.cy)))
        r1 = min(self.h, int(math.ceil(y1 * self.s + self.cy)) + 1)
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def px(self, units: float) -> float:
        """A length in units as pixels."""
        return units * self.s

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Unit point -> pixel (column, row)."""
        return x * self.s + self.cx, y * self.s + self.cy


@dataclass(frozen=True)
class Blob:
    """A smooth random closed shape: an ellipse (centre, radii, angle in radians) whose radius
    is modulated by low-order harmonics ``r(t) = 1 + sum_k a_k cos(k t + p_k)``."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float = 0.0
    amps: tuple[float, ...] = ()
    phases: tuple[float, ...] = ()

    @property
    def extent(self) -> float:
        """Radius (units) of a circle around the centre that contains the shape."""
        return max(self.rx, self.ry) * (1.0 + sum(abs(a) for a in self.amps))

    def level(self, cv: Canvas, pad: float = 1.0) -> np.ndarray:
        """(H, W) float32: < 1 inside, 1 on the boundary, growing outward (a normalised radial
        distance; computed in a window of ``pad`` x extent, 9.0 beyond it)."""
        out = np.full(cv.shape, 9.0, dtype=F32)
        r = self.extent * pad
        rows, cols = cv.window(self.cx - r, self.cy - r, self.cx + r, self.cy + r)
        if rows.start == rows.stop or cols.start == cols.stop:
            return out
        dx = cv.xs[cols][None, :] - F32(self.cx)
        dy = cv.ys[rows][:, None] - F32(self.cy)
        c, s = F32(math.cos(self.angle)), F32(math.sin(self.angle))
        u = (dx * c + dy * s) / F32(self.rx)
        v = (-dx * s + dy * c) / F32(self.ry)
        rho = np.sqrt(u * u + v * v)
        if self.amps:
            t = np.arctan2(v, u)
            rad = np.ones_like(t)
            for k, (a, p) in enumerate(zip(self.amps, self.phases), start=2):
                rad += F32(a) * np.cos(F32(k) * t + F32(p))
            rho = rho / rad
        out[rows, cols] = rho
        return out

    def boundary(self, n: int, level: float = 1.0) -> np.ndarray:
        """(n, 2) unit points on the contour ``level`` (1 = the boundary), evenly spaced in the
        shape's polar angle."""
        t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
        rad = np.ones_like(t)
        for k, (a, p) in enumerate(zip(self.amps, self.phases), start=2):
            rad += a * np.cos(k * t + p)
        u, v = level * rad * np.cos(t) * self.rx, level * rad * np.sin(t) * self.ry
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.stack([self.cx + u * c - v * s, self.cy + u * s + v * c], 1)

    def mask(self, cv: Canvas) -> np.ndarray:
        """(H, W) bool, inside the shape."""
        return self.level(cv) <= 1.0

    def moved(self, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0) -> Blob:
        """The same shape translated by (dx, dy) and scaled about its centre."""
        return Blob(
            self.cx + dx,
            self.cy + dy,
            self.rx * scale,
            self.ry * scale,
            self.angle,
            self.amps,
            self.phases,
        )


def random_blob(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    angle: float = 0.0,
    rough: float = 0.1,
    k_max: int = 6,
) -> Blob:
    """A Blob whose harmonic amplitudes are ~ N(0, rough / k) for k = 2..k_max (the total is
    capped at 0.45 so the shape stays star-shaped and connected)."""
    ks = np.arange(2, k_max + 1)
    amps = rng.normal(0.0, 1.0, ks.size) * rough / ks
    phases = rng.uniform(0.0, 2 * math.pi, ks.size)
    total = float(np.abs(amps).sum())
    if total > 0.45:
        amps *= 0.45 / total
    return Blob(cx, cy, rx, ry, angle, tuple(float(a) for a in amps), tuple(map(float, phases)))


# ----------------------------------------------------------------------------- filters


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (clipped, rounded)."""
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def grey_to_rgb(a: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8."""
    return np.repeat(a[:, :, None], 3, axis=2)


def paint(img: np.ndarray, mask: np.ndarray, value, soft: np.ndarray | None = None) -> None:
    """In place: img = value inside ``mask`` (or blend by the weight map ``soft`` in [0, 1])."""
    if soft is None:
        img[mask] = value
    else:
        w = soft if img.ndim == 2 else soft[:, :, None]
        img += (np.asarray(value, dtype=F32) - img) * w
