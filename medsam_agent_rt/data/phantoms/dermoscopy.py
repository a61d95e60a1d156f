"""Dermoscopy phantom: a pigmented skin lesion under a contact dermoscope.

Skin of a random tone with skin-line texture and pores, the dermoscope's dark circular
vignette (sometimes), a lesion with a fuzzy low-contrast border, brown colour variegation, a
reticular pigment network, dots and (for melanoma) an irregular outline and blue-grey veil;
hairs crossing the field and the lesion (occluders the mask ignores).
Target: "melanoma" (irregular) or "nevus" (regular).
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
    hw, hh = cv.half_w, cv.half_h

    tone = u(0.0, 1.0)
    skin = np.array([0.92 - 0.35 * tone, 0.72 - 0.3 * tone, 0.62 - 0.28 * tone], np.float32)
    img = np.broadcast_to(skin, (cv.h, cv.w, 3)).copy()
    img *= (1.0 + 0.05 * smooth_noise(rng, cv.shape, 6))[:, :, None]
    lines = np.abs(smooth_noise(rng, cv.shape, 28))
    img *= (1.0 - 0.05 * (lines < 0.08))[:, :, None]
    img *= (1.0 + 0.03 * fine_noise(rng, cv.shape, 1.0 * min(cv.h, cv.w) / 512))[:, :, None]

    # ---------------------------------------------------------------- lesion
    melanoma = u() < 0.5
    r = u(0.3, 0.55)
    c = (u(-0.15, 0.15), u(-0.15, 0.15))
    if melanoma:
        b = random_blob(rng, c[0], c[1], r, r * u(0.65, 0.95), u(0, math.pi), rough=0.45, k_max=9)
    else:
        b = random_blob(
            rng, c[0], c[1], r * 0.8, r * 0.8 * u(0.75, 0.95), u(0, math.pi), rough=0.08, k_max=4
        )
    lvl = b.level(cv)
    mask = lvl <= 1.0
    n1 = smooth_noise(rng, cv.shape, 5)
    n2 = smooth_noise(rng, cv.shape, 9)
    dark = np.array([0.2, 0.11, 0.07], np.float32) * u(0.8, 1.2)
    light = np.array([0.55, 0.36, 0.24], np.float32) * u(0.9, 1.1)
    mix = np.clip(0.5 + 0.5 * n1 + 0.3 * (1 - lvl), 0, 1)[:, :, None]
    les = light * (1 - mix) + dark * mix
    if melanoma:
        veil = np.clip(n2 - 0.5, 0, 1)[:, :, None] * 0.8
        les = les * (1 - veil) + np.array([0.4, 0.42, 0.5], np.float32) * veil
    # pigment network: a honeycomb of thin dark lines
    cells = u(35, 55)
    net = (np.abs(smooth_noise(rng, cv.shape, cells)) < 0.15) | (
        np.abs(smooth_noise(rng, cv.shape, cells)) < 0.15
    )
    les *= (1.0 - u(0.15, 0.3) * blur(net.astype(np.float32), 0.5))[:, :, None]
    fade = smoothstep(1.0 + u(0.05, 0.15), 1.0 - u(0.1, 0.3), lvl)
    fade *= u(0.75, 0.95)
    w = fade[:, :, None]
    img = img * (1 - w) + les * w
    # dots and globules
    nd = int(rng.integers(5, 30))
    ang = rng.uniform(0, 2 * math.pi, nd)
    rad = r * np.sqrt(rng.uniform(0, 0.8, nd))
    centers = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1)
    sizes = rng.uniform(0.004, 0.012, nd)
    d = (draw_ellipses(cv, centers, np.stack([sizes, sizes], 1)) * (lvl <= 0.95))[:, :, None]
    img = img * (1 - 0.6 * d) + np.array([0.12, 0.07, 0.05], np.float32) * 0.6 * d

    # ---------------------------------------------------------------- hair
    paths = []
    for _ in range(int(rng.integers(0, 14))):
        p = np.array([u(-hw, hw), u(-hh, hh)])
        a = u(0, 2 * math.pi)
        curv = u(-0.08, 0.08)
        pts = [p]
        for _ in range(16):
            a += curv
            pts.append(pts[-1] + u(0.05, 0.08) * np.array([math.cos(a), math.sin(a)]))
        paths.append((np.stack(pts), u(0.004, 0.009)))
    if paths:
        hair = draw_paths(cv, paths, min_px=0.8)[:, :, None]
        img = img * (1 - 0.85 * hair) + np.array([0.12, 0.08, 0.06], np.float32) * 0.85 * hair

    # ---------------------------------------------------------------- optics
    fov = np.ones(cv.shape, bool)
    if u() < 0.6:
        rr = np.sqrt(X * X + Y * Y)
        rc = u(0.95, 1.25) * min(hw, hh) * math.sqrt(2) * 0.8
        vig = smoothstep(rc, rc - 0.15, rr)
        img *= vig[:, :, None]
        fov = vig > 0.5
    img = blur(img, 0.6 * min(cv.h, cv.w) / 512)
    img = np.clip(img * u(0.9, 1.1), 0, 1)
    name = "melanoma" if melanoma else "nevus"
    return {
        "image": to_uint8(img),
        "masks": finish({name: mask & fov}, single=(name,)),
        "modality": "dermoscopy",
        "modality_label": "dermoscopy",
        "site": "skin",
        "fov": fov,
        "meta": {"lesion": name},
    }
