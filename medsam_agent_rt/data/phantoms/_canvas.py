"""Drawing primitives shared by the phantom modalities (pure NumPy; Pillow only to upsample
low-resolution noise).

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


def _box_1d(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Mean over a window of 2r+1 along ``axis`` (edge-replicated), float32."""
    n = a.shape[axis]

    def sl(lo: int, hi: int) -> tuple:
        s = [slice(None)] * a.ndim
        s[axis] = slice(lo, hi)
        return tuple(s)

    padded = np.concatenate(
        [np.repeat(a[sl(0, 1)], r + 1, axis), a, np.repeat(a[sl(n - 1, n)], r, axis)], axis=axis
    )
    c = np.cumsum(padded, axis=axis, dtype=np.float32)
    out = c[sl(2 * r + 1, 2 * r + 1 + n)] - c[sl(0, n)]
    out *= F32(1.0 / (2 * r + 1))
    return out


def _box_widths(sigma: float, n: int = 3) -> list[int]:
    """Odd box widths whose ``n`` successive passes have variance close to sigma^2 (Wells'
    rule: some passes of width wl, the rest wl + 2)."""
    ideal = math.sqrt(12.0 * sigma * sigma / n + 1.0)
    wl = int(math.floor(ideal))
    if wl % 2 == 0:
        wl -= 1
    wu = wl + 2
    m = int(round((12.0 * sigma * sigma - n * wl * wl - 4 * n * wl - 3 * n) / (-4 * wl - 4)))
    return [wl] * m + [wu] * (n - m)


def _gauss_1d(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Direct convolution with a sampled Gaussian (radius 3 sigma, edge-replicated)."""
    r = max(1, int(math.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(F32)
    n = a.shape[axis]
    idx = np.clip(np.arange(-r, n + r), 0, n - 1)
    p = np.take(a, idx, axis=axis)
    out = np.zeros(a.shape, F32)
    for t, w in enumerate(k):
        out += w * np.take(p, np.arange(t, t + n), axis=axis)
    return out


def _blur_rows(a: np.ndarray, sigma: float) -> np.ndarray:
    """Blur along axis 1 of a contiguous (H, W) float32 array."""
    if sigma < 0.3:
        return a
    if sigma < 2.5:
        return _gauss_1d(a, sigma, 1)
    for w in _box_widths(sigma):
        r = min((w - 1) // 2, max(1, a.shape[1] // 2))
        if r > 0:
            a = _box_1d(a, r, 1)
    return a


def blur(a: np.ndarray, sigma_px: float, sigma_px_x: float | None = None) -> np.ndarray:
    """Gaussian blur of a float (H, W) or (H, W, C) array (sampled kernel for sigma < 2.5 px,
    three box passes above); ``sigma_px_x`` gives a different horizontal sigma. float32."""
    a = np.asarray(a, dtype=F32)
    if a.ndim == 3:
        return np.stack([blur(a[:, :, c], sigma_px, sigma_px_x) for c in range(a.shape[2])], 2)
    out = _blur_rows(a, sigma_px if sigma_px_x is None else sigma_px_x)
    if sigma_px >= 0.3:  # rows are contiguous: blur the transpose along its rows
        out = np.ascontiguousarray(_blur_rows(np.ascontiguousarray(out.T), sigma_px).T)
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise (H, W) float32 with about ``cells`` features across the
    shorter side (bicubic upsampling of a small Gaussian field)."""
    from PIL import Image

    h, w = shape
    short = min(h, w)
    gh = max(2, int(round(cells * h / short)) + 2)
    gw = max(2, int(round(cells * w / short)) + 2)
    small = rng.standard_normal((gh, gw)).astype(F32)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=F32)
    big = big - big.mean()
    sd = float(big.std())
    return big / sd if sd > 0 else big


def fine_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Unit-std Gaussian noise correlated over ``sigma_px`` pixels (float32)."""
    n = rng.standard_normal(shape, dtype=F32)
    if sigma_px >= 0.4:
        n = blur(n, sigma_px)
        sd = float(n.std())
        if sd > 0:
            n /= sd
    return n


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 (x <= edge0) to 1 (x >= edge1), float32."""
    t = np.clip((x - F32(edge0)) / F32(edge1 - edge0), 0.0, 1.0)
    return t * t * (F32(3.0) - F32(2.0) * t)


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


def polyline_mask(cv: Canvas, points: np.ndarray, widths: np.ndarray | float) -> np.ndarray:
    """(H, W) bool of a thick polyline through unit ``points`` (N, 2) with per-vertex widths
    (units, full width), drawn with Pillow (round joints)."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (cv.w, cv.h), 0)
    d = ImageDraw.Draw(im)
    pts = [cv.to_pixel(float(x), float(y)) for x, y in points]
    ws = np.broadcast_to(np.asarray(widths, dtype=float), (len(pts),))
    for i in range(len(pts) - 1):
        wpx = max(1, int(round(cv.px(0.5 * (ws[i] + ws[i + 1])))))
        d.line([pts[i], pts[i + 1]], fill=255, width=wpx)
        if wpx > 2:
            r = wpx / 2.0
            x, y = pts[i + 1]
            d.ellipse([x - r, y - r, x + r, y + r], fill=255)
    return np.asarray(im) > 0


def branch_tree(
    rng: np.random.Generator,
    root: tuple[float, float],
    angle: float,
    length: float,
    width: float,
    depth: int = 3,
    spread: float = 0.5,
    wiggle: float = 0.25,
    steps: int = 6,
    curl: float = 0.0,
) -> list[tuple[np.ndarray, float]]:
    """A random branching tree (vessels, bronchi): a list of (points (n, 2) in units, width).

    Each branch is a wiggly path of ``steps`` segments of total ``length`` from ``root`` at
    ``angle`` (radians); it forks into two children (length x ~0.65, width x ~0.7, angles
    +-``spread``) until ``depth`` levels are drawn. ``curl`` turns every path by that many
    radians per step (arcades that bend around the macula); children curl 0.3x as much."""
    out: list[tuple[np.ndarray, float]] = []
    stack = [(root, angle, length, width, depth, curl)]
    while stack:
        p, a, ln, w, d, cu = stack.pop()
        pts = [np.asarray(p, dtype=float)]
        for _ in range(steps):
            a += rng.normal(0.0, wiggle) + cu
            pts.append(pts[-1] + ln / steps * np.array([math.cos(a), math.sin(a)]))
        path = np.stack(pts)
        out.append((path, w))
        if d > 1:
            j = int(rng.integers(steps // 2, steps + 1))
            for sgn in (-1.0, 1.0):
                stack.append(
                    (
                        tuple(path[j]),
                        a + sgn * spread * rng.uniform(0.6, 1.3),
                        ln * rng.uniform(0.55, 0.75),
                        w * rng.uniform(0.6, 0.8),
                        d - 1,
                        cu * 0.3,
                    )
                )
    return out


def draw_paths(
    cv: Canvas, paths: list[tuple[np.ndarray, float]], min_px: float = 1.0
) -> np.ndarray:
    """Rasterise (points, width-in-units) paths into a float32 (H, W) coverage map in [0, 1]
    (Pillow, antialiased by drawing at 2x and averaging)."""
    from PIL import Image, ImageDraw

    f = 2
    im = Image.new("L", (cv.w * f, cv.h * f), 0)
    d = ImageDraw.Draw(im)
    for pts, w in paths:
        px = [((x * cv.s + cv.cx) * f, (y * cv.s + cv.cy) * f) for x, y in pts]
        wpx = max(min_px * f, cv.px(w) * f)
        d.line(px, fill=255, width=max(1, int(round(wpx))), joint="curve")
    a = np.asarray(im, dtype=np.float32).reshape(cv.h, f, cv.w, f).mean(axis=(1, 3))
    return a / 255.0


def draw_ellipses(
    cv: Canvas, centers: np.ndarray, radii: np.ndarray, angles: np.ndarray | None = None
) -> np.ndarray:
    """Float32 (H, W) coverage in [0, 1] of filled ellipses (unit centres (N, 2), radii (N, 2)
    in units, optional angles in radians), drawn with Pillow at 2x and averaged."""
    from PIL import Image, ImageDraw

    f = 2
    im = Image.new("L", (cv.w * f, cv.h * f), 0)
    d = ImageDraw.Draw(im)
    centers = np.asarray(centers, float).reshape(-1, 2)
    radii = np.asarray(radii, float).reshape(-1, 2)
    px = (centers[:, 0] * cv.s + cv.cx) * f
    py = (centers[:, 1] * cv.s + cv.cy) * f
    ax = np.maximum(0.5, radii[:, 0] * cv.s * f)
    ay = np.maximum(0.5, radii[:, 1] * cv.s * f)
    if angles is None:
        for x, y, rx, ry in zip(px.tolist(), py.tolist(), ax.tolist(), ay.tolist()):
            d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=255)
    else:
        t = np.linspace(0, 2 * math.pi, 10, endpoint=False)
        c, s_ = np.cos(angles)[:, None], np.sin(angles)[:, None]
        ex, ey = ax[:, None] * np.cos(t), ay[:, None] * np.sin(t)
        vx = px[:, None] + ex * c - ey * s_
        vy = py[:, None] + ex * s_ + ey * c
        for poly in np.stack([vx, vy], 2).tolist():
            d.polygon([tuple(q) for q in poly], fill=255)
    a = np.asarray(im, dtype=np.float32).reshape(cv.h, f, cv.w, f).mean(axis=(1, 3))
    return a / 255.0


def chain_mask(
    rng: np.random.Generator,
    cv: Canvas,
    points: np.ndarray,
    widths: np.ndarray,
    rough: float = 0.15,
) -> np.ndarray:
    """(H, W) bool: a lobulated tube along the unit polyline ``points`` (N, 2), the union of
    random blobs spaced a third of the local width apart (``widths`` (N,), full widths)."""
    pts = np.asarray(points, dtype=float)
    ws = np.asarray(widths, dtype=float)
    out = np.zeros(cv.shape, bool)
    for i in range(len(pts) - 1):
        seg = pts[i + 1] - pts[i]
        length = float(np.hypot(*seg))
        n = max(1, int(math.ceil(length / (min(ws[i], ws[i + 1]) / 3.0))))
        for t in np.linspace(0.0, 1.0, n, endpoint=False):
            c = pts[i] + t * seg
            r = 0.5 * ((1 - t) * ws[i] + t * ws[i + 1])
            b = random_blob(
                rng,
                c[0],
                c[1],
                r * rng.uniform(0.85, 1.15),
                r * rng.uniform(0.85, 1.15),
                rng.uniform(0, math.pi),
                rough,
                4,
            )
            rows, cols = cv.window(c[0] - 1.6 * r, c[1] - 1.6 * r, c[0] + 1.6 * r, c[1] + 1.6 * r)
            out[rows, cols] |= b.level(cv)[rows, cols] <= 1.0
    r = 0.5 * ws[-1]
    out |= random_blob(rng, pts[-1][0], pts[-1][1], r, r, 0.0, rough, 4).mask(cv)
    return out


def erode(mask: np.ndarray, r_px: int) -> np.ndarray:
    """Binary erosion of a bool (H, W) mask by a (2r+1)^2 square (outside the image counts as
    background)."""
    if r_px <= 0:
        return mask.copy()
    m = np.pad(mask.astype(F32), r_px + 1, mode="constant")
    m = _box_1d(_box_1d(m, r_px, 0), r_px, 1)
    return (m > F32(1.0 - 1e-4))[r_px + 1 : -r_px - 1, r_px + 1 : -r_px - 1]


def dilate(mask: np.ndarray, r_px: int) -> np.ndarray:
    """Binary dilation of a bool (H, W) mask by a (2r+1)^2 square."""
    if r_px <= 0:
        return mask.copy()
    m = _box_1d(_box_1d(mask.astype(F32), r_px, 0), r_px, 1)
    return m > F32(1e-4)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of a bool (H, W) mask: row, start, stop (exclusive), in raster order."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    r0, c0 = np.nonzero(d == 1)
    r1, c1 = np.nonzero(d == -1)
    return r0, c0, c1  # np.nonzero is row-major, so starts and stops pair up


def keep_largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool (H, W) mask (ties: the first in raster
    order); empty in, empty out. Union-find over horizontal runs, so the cost grows with the
    number of runs (about the mask's height per component), not with its area."""
    rows, starts, stops = _runs(mask)
    n = len(rows)
    if n <= 1:
        return mask.copy()
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    rl, sl, el = rows.tolist(), starts.tolist(), stops.tolist()
    for r in range(mask.shape[0] - 1):
        a0, a1 = int(row_first[r]), int(row_first[r + 1])
        b0, b1 = a1, int(row_first[r + 2])
        i, j = a0, b0
        while i < a1 and j < b1:
            # 8-connectivity: runs touch when they overlap after widening by one pixel
            if sl[i] <= el[j] and sl[j] <= el[i]:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            if el[i] < el[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n)])
    sizes = np.bincount(roots, weights=stops - starts, minlength=n)
    best = int(np.argmax(sizes))
    out = np.zeros_like(mask, dtype=bool)
    for k in np.flatnonzero(roots == best).tolist():
        out[rl[k], sl[k] : el[k]] = True
    return out
