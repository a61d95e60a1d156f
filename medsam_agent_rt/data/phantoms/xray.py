"""Chest X-ray phantom (PA projection).

Rendered as a projection: densities of soft tissue, air and bone add up along the beam, so
ribs, clavicles and the heart overlap the lungs the way they do on a radiograph. Structures:
body with shoulders and neck, both lungs (apices, costophrenic angles, diaphragm domes) with
vascular markings branching from the hila, the heart overlapping the medial lungs (the lung
masks exclude it, so each lung touches the heart), mediastinum and trachea, posterior ribs,
clavicles, gastric bubble; a solitary nodule and a patchy opacity inside a lung. The
patient's right is on the image left.
"""

from __future__ import annotations

import math

import numpy as np

from medsam_agent_rt.data.phantoms._canvas import (
    Canvas,
    grey_to_rgb,
    random_blob,
    to_uint8,
)
from medsam_agent_rt.data.phantoms._components import (
    keep_largest,
)
from medsam_agent_rt.data.phantoms._draw import (
    branch_tree,
    draw_paths,
)
from medsam_agent_rt.data.phantoms._filters import (
    blur,
    fine_noise,
    smooth_noise,
    smoothstep,
)
from medsam_agent_rt.data.phantoms.base import finish, place_inside


def _lung(
    rng: np.random.Generator, cv: Canvas, sx: float, k: float, top: float, dome_y: float
) -> np.ndarray:
    """One lung field: rounded apex, lateral wall, medial mediastinal border, diaphragm dome."""
    X, Y = cv.grid()
    u = rng.uniform
    cx = sx * u(0.36, 0.42) * k
    w = u(0.28, 0.33) * k
    b = random_blob(
        rng,
        cx,
        (top + dome_y) / 2 + 0.08,
        w,
        (dome_y - top) / 2 + 0.08,
        sx * u(-0.12, 0.0),
        rough=0.05,
        k_max=4,
    )
    lung = b.mask(cv)
    dome = dome_y - u(0.1, 0.16) * np.clip(1 - ((X - cx + sx * 0.05) / (w * 1.05)) ** 2, 0, 1)
    lung &= Y < dome
    medial = 0.07 + 0.04 * np.clip((Y - top) / (dome_y - top), 0, 1)
    lung &= (X * sx) > medial
    return lung


def render(rng: np.random.Generator, cv: Canvas) -> dict:
    X, Y = cv.grid()
    u = rng.uniform
    k = u(0.92, 1.05)
    soft = lambda m, r: blur(np.asarray(m, np.float32), r * cv.s)  # noqa: E731

    # ---------------------------------------------------------------- body outline
    half = cv.half_w
    body_w = min(u(0.86, 0.96) * k, 0.98 * half)
    shoulder = -0.92 + 0.18 * np.clip(np.abs(X) / body_w, 0, 1) ** 2
    neck = (np.abs(X) < 0.24) & (Y < shoulder)
    body = ((np.abs(X) < body_w) & (Y >= shoulder)) | neck
    thick = np.sqrt(np.clip(1 - (X / (body_w * 1.08)) ** 2, 0, 1)) * body
    thick = soft(thick, 0.02)

    # ---------------------------------------------------------------- organs
    top = u(-0.78, -0.68)
    dome_r, dome_l = u(0.4, 0.52), u(0.46, 0.58)
    lungs = {
        "right lung": _lung(rng, cv, -1.0, k, top, dome_r),
        "left lung": _lung(rng, cv, 1.0, k, top + u(0.0, 0.04), dome_l),
    }
    heart_b = random_blob(
        rng,
        u(0.06, 0.12) * k,
        u(0.27, 0.34),
        u(0.26, 0.32) * k,
        u(0.2, 0.25),
        u(-0.45, -0.25),
        rough=0.05,
        k_max=4,
    )
    # the cardiac silhouette borders both lungs (right atrium / left ventricle): widen it
    # toward a lung it does not reach
    for _ in range(30):
        heart = heart_b.mask(cv) & (Y < dome_l + 0.05)
        miss = [
            sx
            for sx, n in ((-1.0, "right lung"), (1.0, "left lung"))
            if not (heart & lungs[n]).any()
        ]
        if not miss:
            break
        grow = 0.01 / heart_b.rx
        heart_b = heart_b.moved(dx=0.005 * sum(miss), scale=1.0 + grow)
    for name in lungs:
        lungs[name] = keep_largest(lungs[name] & ~heart)
    lung_any = lungs["right lung"] | lungs["left lung"]

    # vascular markings: trees from each hilum
    paths = []
    for sx in (-1.0, 1.0):
        hilum = (sx * u(0.14, 0.2), u(-0.05, 0.08))
        for a in (-0.9, -0.3, 0.3, 0.9):
            ang = (math.pi / 2 - math.pi / 2 * sx) + sx * a + u(-0.15, 0.15)
            paths += branch_tree(
                rng, hilum, ang, u(0.25, 0.35), 0.026, depth=4, spread=0.45, wiggle=0.12, steps=4
            )
    vessels = blur(draw_paths(cv, paths, min_px=0.8), 0.004 * cv.s) * lung_any

    density = 0.62 * thick  # soft tissue through the chest
    lung_air = soft(lung_any, 0.025)
    density -= 0.5 * lung_air * thick
    density += 0.08 * vessels
    density += 0.035 * smooth_noise(rng, cv.shape, 24) * lung_air
    # mediastinum, heart, abdomen below the domes, trachea and gastric air: one blur (linear)
    mediast = (np.abs(X - 0.02) < 0.085 + 0.03 * np.clip(Y + 0.3, 0, 1)) & (Y > shoulder)
    trachea = (np.abs(X - u(-0.02, 0.02)) < 0.04) & (Y > -0.95) & (Y < u(-0.25, -0.15))
    abdomen = Y > np.where(X < 0, dome_r, dome_l) - 0.13 * np.clip(1 - (X / 0.7) ** 2, 0, 1)
    bubble = (
        random_blob(
            rng,
            u(0.28, 0.42),
            dome_l + u(0.06, 0.1),
            u(0.07, 0.11),
            u(0.045, 0.065),
            0.0,
            rough=0.1,
        ).mask(cv)
        & body
    )
    mid = (
        0.22 * (mediast & body)
        + 0.17 * heart
        + 0.2 * (abdomen & body & ~heart)
        - 0.12 * trachea
        - 0.18 * bubble
    )
    density += soft(mid, 0.015)

    # ---------------------------------------------------------------- bones
    bone = np.zeros(cv.shape, np.float32)
    bone += 0.06 * ((np.abs(X) < 0.055) & body)
    rib_w = u(0.026, 0.034)
    ribs, cores = [], []
    for i in range(10):
        y0 = top + 0.02 + i * u(0.11, 0.125)
        for sx in (-1.0, 1.0):
            t = np.linspace(0, 1, 14)
            xs = sx * (0.06 + t * u(0.6, 0.7) * k)
            ys = y0 - 0.06 * np.sin(t * math.pi * 0.8) + t * t * u(0.2, 0.28)
            line = np.stack([xs, ys], 1)
            ribs.append((line, rib_w))
            cores.append((line, rib_w * 0.45))
    # a rib is bright cortex around a fainter medulla
    bone += 0.11 * draw_paths(cv, ribs) - 0.05 * draw_paths(cv, cores)
    clavicles = []
    for sx in (-1.0, 1.0):
        cl = np.array([[sx * 0.09, top + 0.05], [sx * 0.32, top - 0.0], [sx * 0.6, top - 0.08]])
        clavicles.append((cl * [k, 1], 0.045))
    bone += 0.16 * draw_paths(cv, clavicles)
    bone = bone * body

    # ---------------------------------------------------------------- lesions
    masks: dict[str, np.ndarray] = dict(lungs)
    masks["heart"] = heart
    meta: dict = {}
    lesion = np.zeros(cv.shape, np.float32)
    if u() < 0.85:
        side = "right lung" if u() < 0.5 else "left lung"
        r = u(0.03, 0.065)
        got = place_inside(rng, cv, lungs[side], r, r * u(0.85, 1.0), rough=0.08, margin_px=3)
        if got is not None:
            masks["nodule"] = got[1]
            lesion += got[1] * u(0.1, 0.18)
            meta["nodule_side"] = side
    if u() < 0.5:
        side = "right lung" if u() < 0.5 else "left lung"
        r = u(0.1, 0.18)
        free = lungs[side] & ~masks.get("nodule", np.zeros(cv.shape, bool))
        got = place_inside(rng, cv, free, r, r * u(0.6, 1.0), rough=0.3, margin_px=3)
        if got is not None:
            b, m = got
            fade = smoothstep(1.0, 0.55, b.level(cv)) * (
                0.75 + 0.25 * smooth_noise(rng, cv.shape, 16)
            )
            lesion += np.clip(fade, 0, None) * m * u(0.12, 0.2)
            masks["lung opacity"] = m

    # ---------------------------------------------------------------- detector
    d = np.clip(density + blur(bone + lesion, 0.004 * cv.s), 0, None)
    film = 1.0 - np.exp(-u(2.2, 2.8) * d)
    film = film / max(float(np.percentile(film, 99.5)), 1e-6)
    film = np.clip(film, 0, 1) ** u(0.9, 1.3)
    film = blur(film, 0.5 * min(cv.h, cv.w) / 512)
    film += u(0.008, 0.02) * fine_noise(rng, cv.shape, 0.8 * min(cv.h, cv.w) / 512)
    return {
        "image": grey_to_rgb(to_uint8(film)),
        "masks": finish(masks, single=("heart",)),
        "modality": "X-Ray",
        "modality_label": "X-Ray",
        "site": "chest",
        "fov": body,
        "meta": meta,
    }
