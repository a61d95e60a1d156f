"""Colour fundus photograph phantom (retina).

A circular field of view on black, orange-red fundus with choroidal texture, vignetting and
a darker macula with a foveal reflex; the optic disc (yellowish, vertically oval, on the nasal
side: left or right eye) with the brighter optic cup inside it (cup-to-disc ratio 0.3-0.75,
low-contrast rim); retinal vessels branching out of the disc along the superior and inferior
arcades (veins darker and wider than arteries); sometimes haemorrhages and exudates.
Targets: "optic disc", "optic cup" (the cup always lies inside the disc).
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
from medsam_agent_rt.data.phantoms.base import finish


def render(rng: np.random.Generator, cv: Canvas) -> dict:
    X, Y = cv.grid()
    u = rng.uniform
    R = u(0.9, 0.98)
    fc = (u(-0.03, 0.03), u(-0.03, 0.03))
    rr = np.sqrt((X - fc[0]) ** 2 + (Y - fc[1]) ** 2)
    fov = rr <= R

    eye = "right" if u() < 0.5 else "left"
    side = 1.0 if eye == "right" else -1.0  # the disc sits nasally: image right for OD
    dc = (fc[0] + side * u(0.36, 0.48), fc[1] + u(-0.08, 0.08))
    drx = u(0.1, 0.14)
    dry = drx * u(1.05, 1.2)
    disc_b = random_blob(rng, dc[0], dc[1], drx, dry, u(-0.2, 0.2), rough=0.05, k_max=4)
    cdr = u(0.3, 0.75)
    cup_b = random_blob(
        rng,
        dc[0] - side * drx * u(0.0, 0.15),
        dc[1] + u(-0.03, 0.03),
        drx * cdr,
        dry * cdr,
        u(-0.3, 0.3),
        rough=0.08,
        k_max=4,
    )
    disc = disc_b.mask(cv) & fov
    disc = keep_largest(disc)
    cup = keep_largest(cup_b.mask(cv) & disc)
    mac = (fc[0] - side * u(0.05, 0.15), dc[1] + u(0.0, 0.06))

    # ---------------------------------------------------------------- background fundus
    base = np.array([u(0.75, 0.9), u(0.3, 0.42), u(0.1, 0.18)], np.float32)
    chor = smooth_noise(rng, cv.shape, 40)
    img = np.broadcast_to(base, (cv.h, cv.w, 3)).copy()
    img *= (1.0 + 0.025 * chor + 0.05 * smooth_noise(rng, cv.shape, 5))[:, :, None]
    vign = 1.0 - u(0.35, 0.55) * (rr / R) ** 2.5
    img *= vign[:, :, None]
    md = np.sqrt((X - mac[0]) ** 2 + (Y - mac[1]) ** 2)
    img *= (1.0 - 0.35 * np.exp(-((md / u(0.12, 0.18)) ** 2)))[:, :, None]
    img += (0.25 * np.exp(-((md / 0.012) ** 2)))[:, :, None] * np.array([1, 1, 0.8], np.float32)

    # ---------------------------------------------------------------- disc and cup
    dl = disc_b.level(cv)
    disc_w = smoothstep(1.08, 0.9, dl)[:, :, None]
    disc_col = np.array([u(0.95, 1.0), u(0.72, 0.82), u(0.45, 0.55)], np.float32)
    img = img * (1 - disc_w) + disc_col * disc_w * (1 + 0.04 * chor[:, :, None])
    cl = cup_b.level(cv)
    cup_w = (smoothstep(1.15, 0.75, cl) * (dl <= 1.0))[:, :, None]
    cup_col = np.array([1.0, u(0.9, 0.97), u(0.72, 0.82)], np.float32)
    img = img * (1 - cup_w * u(0.6, 0.85)) + cup_col * cup_w * u(0.6, 0.85)

    # ---------------------------------------------------------------- vessels
    veins, arteries = [], []
    temporal = math.pi if side > 0 else 0.0  # direction from the disc toward the macula
    for vert in (-1.0, 1.0):  # superior / inferior arcades bending around the macula
        start = temporal - side * vert * u(1.25, 1.45)
        curl = side * vert * u(0.1, 0.14)
        for lst, w in ((veins, 0.02), (arteries, 0.014)):
            lst += branch_tree(
                rng,
                (dc[0], dc[1] + vert * 0.02),
                start + u(-0.15, 0.15),
                u(0.7, 0.85),
                w,
                depth=4,
                spread=0.45,
                wiggle=0.08,
                steps=8,
                curl=curl,
            )
        for lst, w in ((veins, 0.012), (arteries, 0.009)):  # nasal branches
            ang = (temporal + math.pi) + side * vert * u(0.4, 0.9)
            lst += branch_tree(
                rng, (dc[0], dc[1]), ang, u(0.3, 0.45), w, depth=3, spread=0.5, wiggle=0.15, steps=5
            )
    for lst, col, strength in (
        (veins, (0.45, 0.06, 0.04), 0.8),
        (arteries, (0.7, 0.16, 0.08), 0.65),
    ):
        cov = blur(draw_paths(cv, lst, min_px=0.7), 0.002 * cv.s)[:, :, None] * strength
        img = img * (1 - cov) + np.asarray(col, np.float32) * cov

    # ---------------------------------------------------------------- lesions (no masks)
    if u() < 0.35:
        for _ in range(int(rng.integers(2, 8))):
            p = (fc[0] + u(-0.6, 0.6), fc[1] + u(-0.6, 0.6))
            hb = Blob(p[0], p[1], u(0.01, 0.03), u(0.01, 0.03))
            w = smoothstep(1.1, 0.7, hb.level(cv))[:, :, None] * (~disc)[:, :, None]
            col = (0.45, 0.05, 0.03) if u() < 0.5 else (0.95, 0.85, 0.35)
            img = img * (1 - w) + np.asarray(col, np.float32) * w

    img = blur(img, 0.7 * min(cv.h, cv.w) / 512)
    img += 0.01 * fine_noise(rng, (cv.h, cv.w, 3), 0.0)
    img *= smoothstep(R, R - 0.01, rr)[:, :, None]
    img = np.clip(img, 0, 1)
    return {
        "image": to_uint8(img),
        "masks": finish({"optic disc": disc, "optic cup": cup}),
        "modality": "fundus",
        "modality_label": "fundus",
        "site": "retinal",
        "fov": fov,
        "meta": {"eye": eye, "cup_to_disc": round(cdr, 3)},
    }
