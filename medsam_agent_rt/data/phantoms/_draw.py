"""Rasterising thin and many-part structures for the phantoms with Pillow: thick polylines,
branching trees (vessels, bronchi), many ellipses (nuclei, dots), lobulated tubes."""

from __future__ import annotations

import math

import numpy as np

from medsam_agent_rt.data.phantoms._canvas import Canvas, random_blob


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
