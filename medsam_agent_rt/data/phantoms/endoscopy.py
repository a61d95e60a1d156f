"""Colonoscopy phantom: the view down the colon lumen with polyps.

The scene is a height field shaded like a wet surface lit from the scope tip: the wall is
tilted toward the viewer more the nearer it is, haustral folds are rings spaced
logarithmically toward the dark lumen (perspective of a tube), polyps are domes on the wall
(sessile or raised, adenoma-red or hyperplastic-pale). Light falls off with depth (dark lumen,
bright near wall), Lambertian diffuse plus Blinn-Phong specular highlights where the surface
faces the light, submucosal vessels, and the scope's rounded black field-of-view mask.
Targets: "polyp" (all polyps) and, when an image holds both kinds, "neoplastic polyp" and
"non-neoplastic polyp"; two polyps sometimes touch.
"""

from __future__ import annotations

import math

import numpy as np

from medsam_agent_rt.data.phantoms._canvas import (
    Blob,
    Canvas,
    random_blob,
    to_uint8,
)
from medsam_agent_rt.data.phantoms._draw import (
    branch_tree,
    draw_paths,
)
from medsam_agent_rt.data.phantoms._filters import (
    blur,
    fine_noise,
    smooth_noise,
)
from medsam_agent_rt.data.phantoms.base import finish


def render(rng: np.random.Generator, cv: Canvas) -> dict:
    X, Y = cv.grid()
    u = rng.uniform
    hw, hh = cv.half_w, cv.half_h

    # ---------------------------------------------------------------- field of view
    p = u(3.0, 6.0)
    sx, sy = hw * u(0.94, 1.0), hh * u(0.94, 1.0)
    if u() < 0.5:  # circular scope image clipped by the frame
        rc = u(1.0, 1.2) * min(hw, hh)
        fov = (X * X + Y * Y <= rc * rc) & (np.abs(X) <= sx) & (np.abs(Y) <= sy)
    else:
        fov = (np.abs(X) / sx) ** p + (np.abs(Y) / sy) ** p <= 1.0

    # ---------------------------------------------------------------- tube geometry
    lx, ly = u(-0.45, 0.45), u(-0.45, 0.45)
    dx, dy = X - lx, Y - ly
    rho = np.sqrt(dx * dx + dy * dy) + 1e-3
    phi = np.arctan2(dy, dx)
    ang = np.zeros(cv.shape, np.float32)
    for kk in (1, 2, 3):
        ang += u(-0.12, 0.12) / kk * np.cos(kk * phi + u(0, 2 * math.pi))
    rho_d = rho * (1.0 + ang)  # out-of-round lumen
    ncoarse = smooth_noise(rng, cv.shape, 4)
    fold_phase = np.log(rho_d) / math.log(u(1.35, 1.6)) + 0.25 * ncoarse + u(0, 1)
    folds = (0.5 + 0.5 * np.cos(2 * math.pi * fold_phase)) ** 3
    height = u(0.05, 0.09) * folds * rho  # folds look bigger nearer the scope
    lumen_r = u(0.07, 0.16)
    hole = random_blob(rng, lx, ly, lumen_r * u(1.0, 1.4), lumen_r, u(0, math.pi), rough=0.2)
    hole_lvl = hole.level(cv)

    # ---------------------------------------------------------------- polyps
    n_polyps = 1 + int(u() < 0.35) + int(u() < 0.1)
    polyps: list[tuple[Blob, str]] = []
    for i in range(n_polyps):
        for _ in range(20):
            if i > 0 and u() < 0.45:  # touching the previous one
                pb = polyps[-1][0]
                a = u(0, 2 * math.pi)
                r = pb.rx * u(0.5, 0.9)
                d = pb.rx + r * 0.8
                cx, cy = pb.cx + d * math.cos(a), pb.cy + d * math.sin(a)
            else:
                dist = u(0.4, 1.0)
                a = u(0, 2 * math.pi)
                cx, cy = lx + dist * math.cos(a), ly + dist * math.sin(a)
                r = u(0.09, 0.24) * (0.5 + dist)
            b = random_blob(rng, cx, cy, r, r * u(0.7, 1.0), u(0, math.pi), rough=0.12)
            m = b.mask(cv) & fov
            if (
                m.sum() > 30
                and not (m & (hole_lvl <= 1.3)).any()
                and not (b.moved(scale=0.999).mask(cv) & fov).sum() < 0.6 * b.mask(cv).sum()
            ):
                kind = "neoplastic polyp" if u() < 0.6 else "non-neoplastic polyp"
                polyps.append((b, kind))
                break
    union = np.zeros(cv.shape, bool)
    kinds = np.zeros(cv.shape, np.int8)
    for b, kind in polyps:
        lvl = b.level(cv)
        dome = np.clip(1.0 - lvl * lvl, 0, 1) ** u(0.5, 0.8)
        height = np.maximum(height, dome * b.rx * u(0.8, 1.4) + height * (lvl <= 1))
        m = (lvl <= 1.0) & fov
        kinds[m] = 1 if kind == "neoplastic polyp" else 2
        union |= m

    # ---------------------------------------------------------------- shading
    gy, gx = np.gradient(height.astype(np.float32), 1.0 / cv.s)
    tilt = u(0.8, 1.3)
    gx = gx + tilt * dx / rho
    gy = gy + tilt * dy / rho
    norm = np.sqrt(1.0 + gx * gx + gy * gy)
    nx, ny, nz = -gx / norm, -gy / norm, 1.0 / norm
    lxd, lyd = u(-0.3, 0.3), u(-0.3, 0.3)
    ln = math.sqrt(lxd * lxd + lyd * lyd + 1.0)
    diffuse = np.clip((nx * lxd + ny * lyd + nz) / ln, 0, 1)
    hx, hy, hz = lxd / ln, lyd / ln, 1.0 / ln + 1.0
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    spec = np.clip((nx * hx + ny * hy + nz * hz) / hn, 0, 1) ** u(60, 160)
    # light falls off with depth: depth ~ 1 / rho on a tube
    irr = np.clip((rho_d / u(0.7, 1.0)) ** u(1.4, 2.2), 0, 1.4)
    irr *= np.clip((hole_lvl - 0.7) / 0.6, 0.02, 1.0)

    # ---------------------------------------------------------------- colour
    base = np.array([u(0.82, 0.95), u(0.42, 0.55), u(0.36, 0.46)], np.float32)
    albedo = np.broadcast_to(base, (cv.h, cv.w, 3)).copy()
    albedo *= (1.0 + 0.07 * smooth_noise(rng, cv.shape, 10))[:, :, None]
    paths = []
    for _ in range(int(rng.integers(3, 7))):
        paths += branch_tree(
            rng,
            (u(-1, 1) * hw, u(-1, 1) * hh),
            u(0, 2 * math.pi),
            u(0.3, 0.6),
            0.012,
            depth=3,
            spread=0.6,
            wiggle=0.3,
            steps=6,
        )
    vess = blur(draw_paths(cv, paths, min_px=0.7), 0.003 * cv.s)[:, :, None]
    albedo = albedo * (1 - 0.45 * vess) + np.array([0.55, 0.12, 0.12], np.float32) * 0.45 * vess
    pit = fine_noise(rng, cv.shape, 1.2 * min(cv.h, cv.w) / 512)
    for k, col in (
        (1, (u(0.8, 0.9), u(0.34, 0.44), u(0.3, 0.38))),
        (2, (u(0.88, 0.95), u(0.52, 0.6), u(0.44, 0.5))),
    ):
        sel = kinds == k
        if sel.any():
            tint = np.asarray(col, np.float32) * (1.0 + 0.08 * pit[sel])[:, None]
            albedo[sel] = 0.45 * albedo[sel] + 0.55 * tint
    img = albedo * (irr * (0.25 + 0.75 * diffuse))[:, :, None]
    img += (u(0.6, 1.0) * spec * np.clip(irr, 0, 1))[:, :, None]
    img = blur(img, 0.6 * min(cv.h, cv.w) / 512)
    img += 0.012 * fine_noise(rng, (cv.h, cv.w, 3), 0.0)
    img = np.clip(img, 0.0, 1.0) ** (1 / u(1.0, 1.25))
    img[~fov] = 0.0

    masks = {"polyp": union}
    present = {kind for _, kind in polyps}
    if len(present) == 2:
        masks["neoplastic polyp"] = kinds == 1
        masks["non-neoplastic polyp"] = kinds == 2
    return {
        "image": to_uint8(img),
        "masks": finish(masks),
        "modality": "endoscope",
        "modality_label": "endoscope",
        "site": "colon",
        "fov": fov,
        "meta": {"polyps": [k for _, k in polyps]},
    }
