"""H&E histopathology phantom: colon mucosa with glands (GlaS-like).

Pink eosinophilic stroma with fibre texture and scattered spindle and round nuclei; glands
made of a pale epithelial ring around a white lumen, lined by dark purple nuclei along the
basement membrane (oriented radially, crowded and irregular in malignant glands) with goblet
vacuoles; glands sometimes touch. Stain intensity and hue vary per image.
Target: "glandular structure" (all glands).
"""

from __future__ import annotations

import math

import numpy as np

from medsam_agent_rt.data.phantoms._canvas import (
    Canvas,
    random_blob,
    to_uint8,
)
from medsam_agent_rt.data.phantoms._draw import (
    draw_ellipses,
)
from medsam_agent_rt.data.phantoms._filters import (
    blur,
    fine_noise,
    smooth_noise,
    smoothstep,
)
from medsam_agent_rt.data.phantoms.base import finish


def render(rng: np.random.Generator, cv: Canvas) -> dict:
    X, Y = cv.grid()
    u = rng.uniform
    hw, hh = cv.half_w, cv.half_h
    malignant = u() < 0.5
    stain = u(0.85, 1.15)  # haematoxylin strength

    # ---------------------------------------------------------------- stroma
    stroma = np.array([u(0.86, 0.94), u(0.56, 0.68), u(0.7, 0.8)], np.float32)
    img = np.broadcast_to(stroma, (cv.h, cv.w, 3)).copy()
    scale = min(cv.h, cv.w) / 512
    fib = blur(rng.standard_normal(cv.shape, dtype=np.float32), 0.8 * scale, 5.0 * scale)
    fib /= float(fib.std()) or 1.0
    img *= (1.0 - 0.05 * fib - 0.04 * smooth_noise(rng, cv.shape, 6))[:, :, None]

    # ---------------------------------------------------------------- glands
    glands = []
    union = np.zeros(cv.shape, bool)
    n_target = int(rng.integers(3, 8))
    for _ in range(n_target * 6):
        if len(glands) >= n_target:
            break
        r = u(0.14, 0.32)
        if glands and u() < 0.3:  # touching the previous gland
            g = glands[-1]
            a = u(0, 2 * math.pi)
            d = g.rx * 0.9 + r * 0.9
            cx, cy = g.cx + d * math.cos(a), g.cy + d * math.sin(a)
        else:
            cx, cy = u(-hw, hw), u(-hh, hh)
        b = random_blob(
            rng,
            cx,
            cy,
            r,
            r * u(0.55, 1.0),
            u(0, math.pi),
            rough=0.22 if malignant else 0.1,
            k_max=6 if malignant else 5,
        )
        m = b.mask(cv)
        if m.sum() < 50 or (b.moved(scale=0.97).mask(cv) & union).any():
            continue
        if m.sum() < 0.5 * (math.pi * b.rx * b.ry * cv.s * cv.s):  # mostly outside
            continue
        glands.append(b)
        union |= m

    epi = np.array([u(0.75, 0.85), u(0.55, 0.65), u(0.78, 0.88)], np.float32)
    lumen_col = np.array([0.96, 0.92, 0.95], np.float32)
    centers, radii, angles = [], [], []
    w_epi = np.zeros(cv.shape, np.float32)
    w_lum = np.zeros(cv.shape, np.float32)
    goblets = []
    for b in glands:
        rows, cols = cv.window(
            b.cx - b.extent * 1.1,
            b.cy - b.extent * 1.1,
            b.cx + b.extent * 1.1,
            b.cy + b.extent * 1.1,
        )
        lvl = b.level(cv, pad=1.1)[rows, cols]
        thick = u(0.45, 0.65)
        np.maximum(w_epi[rows, cols], smoothstep(1.03, 0.97, lvl), out=w_epi[rows, cols])
        np.maximum(
            w_lum[rows, cols],
            smoothstep(1 - thick + 0.03, 1 - thick - 0.03, lvl),
            out=w_lum[rows, cols],
        )
        # nuclei along the basement membrane, long axis radial
        per = 2 * math.pi * math.sqrt((b.rx * b.rx + b.ry * b.ry) / 2)
        n = max(8, int(per / (0.018 if malignant else 0.024)))
        lv = rng.uniform(0.86, 0.94, n) if not malignant else rng.uniform(0.72, 0.95, n)
        edge = b.boundary(n, 1.0)
        pts = np.array([b.cx, b.cy]) + lv[:, None] * (edge - np.array([b.cx, b.cy]))
        ang = np.arctan2(pts[:, 1] - b.cy, pts[:, 0] - b.cx)
        centers.append(pts)
        rl = rng.uniform(0.012, 0.018, n) * (1.3 if malignant else 1.0)
        radii.append(np.stack([rl, rl * rng.uniform(0.45, 0.65, n)], 1))
        angles.append(ang)
        goblets.append(b.boundary(n // 3, float(u(0.78, 0.84))))
    img = img * (1 - w_epi[:, :, None]) + epi * w_epi[:, :, None]
    img = img * (1 - w_lum[:, :, None]) + lumen_col * w_lum[:, :, None]
    if goblets:
        gl = np.concatenate(goblets)
        gv = draw_ellipses(cv, gl, np.full((len(gl), 2), 0.014))[:, :, None]
        img = img * (1 - 0.7 * gv) + lumen_col * 0.7 * gv
    # stromal nuclei: spindle and lymphocytes
    ns = int(rng.integers(250, 500) * hw * hh)
    sp = np.stack([rng.uniform(-hw, hw, ns), rng.uniform(-hh, hh, ns)], 1)
    sr = rng.uniform(0.007, 0.012, ns)
    elong = np.where(rng.uniform(size=ns) < 0.5, rng.uniform(0.3, 0.5, ns), 1.0)
    centers.append(sp)
    radii.append(np.stack([sr / np.sqrt(elong), sr * np.sqrt(elong)], 1))
    angles.append(rng.uniform(0, math.pi, ns))
    nuc = draw_ellipses(cv, np.concatenate(centers), np.concatenate(radii), np.concatenate(angles))[
        :, :, None
    ]
    hema = np.array([0.3, 0.15, 0.48], np.float32) * (2 - stain)
    alpha = np.clip(0.85 * stain, 0, 0.95)
    img = img * (1 - alpha * nuc) + hema * alpha * nuc

    img = blur(img, 0.7 * scale)
    img *= (1.0 + 0.025 * fine_noise(rng, cv.shape, 0.8 * scale))[:, :, None]
    img = np.clip(img, 0, 1)
    fov = np.ones(cv.shape, bool)
    return {
        "image": to_uint8(img),
        "masks": finish({"glandular structure": union}),
        "modality": "pathology",
        "modality_label": "pathology",
        "site": "colon",
        "fov": fov,
        "meta": {"grade": "malignant" if malignant else "benign", "glands": len(glands)},
    }
