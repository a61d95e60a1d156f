"""MRI phantoms: an axial brain slice (FLAIR, T2 or T1 post-gadolinium) with a glioma, or a
cardiac short-axis cine (bSSFP) slice.

Brain: scalp, skull, cerebrospinal fluid, cortex with sulci (zero crossings of smooth noise),
white matter, deep grey nuclei, interhemispheric fissure, lateral ventricles pushed away by the
tumour; a tumour core (enhancing rim and necrosis on T1-Gd) wrapped by peritumoral edema that
touches it. Heart: chest wall, lungs, liver, spine, descending aorta, the left-ventricular blood
pool with papillary muscles, the myocardial ring around it and the right-ventricular crescent
against the septum (LV-myocardium and myocardium-RV touch). Rician noise and a smooth bias field.
"""

from __future__ import annotations

import math

import numpy as np

from medsam_agent_rt.data.phantoms._canvas import (
    Blob,
    Canvas,
    grey_to_rgb,
    random_blob,
    to_uint8,
)
from medsam_agent_rt.data.phantoms._filters import (
    blur,
    smooth_noise,
)
from medsam_agent_rt.data.phantoms.base import finish

SEQUENCES = ("FLAIR", "T2", "T1-Gd")

# tissue -> signal (0..1) per sequence
_BRAIN_SIGNAL = {
    "FLAIR": dict(
        scalp=0.5,
        skull=0.04,
        csf=0.07,
        gm=0.55,
        wm=0.41,
        deep=0.5,
        core=0.66,
        necrosis=0.55,
        edema=0.83,
    ),
    "T2": dict(
        scalp=0.45,
        skull=0.04,
        csf=0.93,
        gm=0.56,
        wm=0.38,
        deep=0.5,
        core=0.7,
        necrosis=0.88,
        edema=0.78,
    ),
    "T1-Gd": dict(
        scalp=0.78,
        skull=0.05,
        csf=0.12,
        gm=0.43,
        wm=0.6,
        deep=0.46,
        core=0.93,
        necrosis=0.2,
        edema=0.37,
    ),
}


def _acquire(rng: np.random.Generator, cv: Canvas, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Blur, bias field, Rician noise, normalise: float (H, W) -> uint8 (H, W)."""
    signal = blur(signal, 0.6 * min(cv.h, cv.w) / 512)
    signal = signal * (1.0 + 0.12 * smooth_noise(rng, cv.shape, 2.0))
    n1 = rng.standard_normal(cv.shape, dtype=np.float32)
    n2 = rng.standard_normal(cv.shape, dtype=np.float32)
    mag = np.sqrt((signal + sigma * n1) ** 2 + (sigma * n2) ** 2)
    hi = float(np.percentile(mag, 99.7)) or 1.0
    return to_uint8(mag / hi)


def _brain(rng: np.random.Generator, cv: Canvas) -> dict:
    X, Y = cv.grid()
    u = rng.uniform
    seq = SEQUENCES[int(rng.integers(len(SEQUENCES)))]
    sig = _BRAIN_SIGNAL[seq]
    head = random_blob(
        rng,
        u(-0.03, 0.03),
        u(-0.02, 0.04),
        u(0.66, 0.74),
        u(0.84, 0.92),
        u(-0.08, 0.08),
        rough=0.03,
        k_max=4,
    )
    L = head.level(cv)
    scalp_t, skull_t = u(0.04, 0.07), u(0.04, 0.06)
    s_in = 1.0 - scalp_t  # skull outer
    k_in = s_in - skull_t  # skull inner
    b_out = k_in - u(0.012, 0.025)  # brain surface
    n_surf = smooth_noise(rng, cv.shape, 24)
    n_gyr = smooth_noise(rng, cv.shape, 26)
    n_wm = smooth_noise(rng, cv.shape, 10)
    head_m = L <= 1.0
    brain = L <= b_out + 0.01 * n_surf
    img = np.zeros(cv.shape, np.float32)
    img[head_m] = sig["scalp"]
    img[L <= s_in] = sig["skull"]
    img[L <= k_in] = sig["csf"]
    img[brain] = sig["gm"]
    # cortex: sulci are zero crossings of a smooth field, each lined by grey matter; white
    # matter fills the gyral cores below the cortical ribbon
    depth = (b_out - L) / b_out  # 0 at the surface, 1 at the centre
    g = np.abs(n_gyr)
    reach = 0.16 + 0.05 * n_wm
    sulci = brain & (g < 0.06) & (depth < reach)
    wm = brain & (depth > 0.05) & ((g > 0.4) | (depth > reach + 0.02))
    img[wm] = sig["wm"]
    x_mid = head.cx + (Y - head.cy) * math.tan(head.angle)
    fissure = brain & (np.abs(X - x_mid) < 0.012) & ((Y < head.cy - 0.3) | (Y > head.cy + 0.45))
    img[sulci | fissure] = sig["csf"]
    for sx in (-1.0, 1.0):
        deep = random_blob(
            rng,
            head.cx + sx * u(0.14, 0.18),
            head.cy + u(0.0, 0.08),
            u(0.06, 0.08),
            u(0.09, 0.12),
            sx * 0.3,
            rough=0.08,
        )
        img[deep.mask(cv)] = sig["deep"]

    # tumour, placed in one hemisphere; its mass effect pushes the ventricles
    side = -1.0 if u() < 0.5 else 1.0
    r = u(0.06, 0.13)
    tc = (head.cx + side * u(0.2, 0.42), head.cy + u(-0.45, 0.45))
    core_b = random_blob(rng, tc[0], tc[1], r, r * u(0.75, 1.0), u(0, math.pi), rough=0.18)
    core = core_b.mask(cv) & (L <= b_out - 0.02)
    ed_b = random_blob(
        rng, tc[0], tc[1], r * u(1.5, 2.3), r * u(1.4, 2.2), u(0, math.pi), rough=0.45, k_max=9
    )
    edema = (ed_b.mask(cv) | core_b.moved(scale=1.25).mask(cv)) & brain & ~core
    push = -side * (r * 0.5)
    vent = np.zeros(cv.shape, bool)
    for sx in (-1.0, 1.0):
        vb = random_blob(
            rng,
            head.cx + sx * u(0.055, 0.08) + push,
            head.cy + u(-0.1, -0.02),
            u(0.035, 0.055),
            u(0.17, 0.24),
            -sx * u(0.1, 0.3),
            rough=0.12,
        )
        vent |= vb.mask(cv)
    vent &= brain & ~edema & ~core
    img[vent] = sig["csf"]
    img[edema] = sig["edema"] + 0.04 * n_gyr[edema]
    masks = {"lateral ventricle": vent}
    if seq == "T1-Gd":
        nec = core_b.moved(scale=u(0.45, 0.7)).mask(cv) & core
        img[core] = sig["core"]
        img[nec] = sig["necrosis"]
        masks.update({"tumor core": core, "enhancing tumor": core & ~nec, "edema": edema})
    else:
        img[core] = sig["core"] + 0.06 * n_wm[core]
        nec = core_b.moved(scale=u(0.3, 0.6)).mask(cv) & core
        img[nec] = sig["necrosis"]
        masks.update({"tumor core": core, "edema": edema})
    return {
        "image": grey_to_rgb(_acquire(rng, cv, img, u(0.015, 0.03))),
        "masks": finish(masks, single=("tumor core", "edema")),
        "modality": "MRI",
        "modality_label": f"MRI-{seq}",
        "site": "brain",
        "fov": head_m,
        "meta": {"sequence": seq, "tumor_side": "left" if side > 0 else "right"},
    }


def _heart(rng: np.random.Generator, cv: Canvas) -> dict:
    X, Y = cv.grid()
    u = rng.uniform
    body = random_blob(rng, 0.0, u(0.0, 0.05), u(0.85, 0.95), u(0.6, 0.7), 0.0, rough=0.04)
    body_m = body.mask(cv)
    img = np.zeros(cv.shape, np.float32)
    img[body_m] = 0.85  # subcutaneous fat
    inner_b = body.moved(scale=u(0.88, 0.92))
    img[inner_b.mask(cv)] = 0.32  # chest wall muscle
    cav = body.moved(scale=u(0.8, 0.84)).mask(cv)
    img[cav] = 0.3
    lung_tex = smooth_noise(rng, cv.shape, 12)
    for sx in (-1.0, 1.0):
        lb = random_blob(
            rng,
            sx * u(0.42, 0.52),
            u(-0.08, 0.05),
            u(0.3, 0.38),
            u(0.4, 0.5),
            sx * u(-0.2, 0.2),
            rough=0.1,
        )
        lm = lb.mask(cv) & cav
        img[lm] = 0.05 + 0.02 * lung_tex[lm]
    liver = random_blob(
        rng, u(-0.6, -0.45), u(0.3, 0.45), u(0.35, 0.45), u(0.25, 0.3), 0.3, rough=0.08
    )
    img[liver.mask(cv) & cav] = 0.33
    spine_y = body.cy + body.ry * u(0.62, 0.72)
    img[Blob(0.0, spine_y, 0.1, 0.085).mask(cv)] = 0.45
    img[Blob(0.0, spine_y, 0.075, 0.062).mask(cv)] = 0.65
    dao = Blob(u(0.08, 0.14), spine_y - u(0.16, 0.2), 0.055, 0.055)
    img[dao.mask(cv)] = 0.9

    # heart: pericardial fat, RV crescent, myocardium ring, LV pool with papillary muscles
    cx, cy = u(0.02, 0.16), u(-0.1, 0.05)
    r_lv = u(0.13, 0.19)
    t_my = u(0.05, 0.075)
    lv_b = random_blob(rng, cx, cy, r_lv, r_lv * u(0.88, 1.0), u(0, math.pi), rough=0.05)
    outer_b = random_blob(
        rng, cx, cy, r_lv + t_my, (r_lv + t_my) * u(0.9, 1.0), u(0, math.pi), rough=0.03
    )
    lv = lv_b.mask(cv)
    outer = outer_b.mask(cv) | lv_b.moved(scale=1.0 + 0.7 * t_my / r_lv).mask(cv)
    ang = u(2.6, 3.5)  # RV sits on the image-left (patient right), anterior side
    d = r_lv + t_my + u(0.0, 0.04)
    rv_b = random_blob(
        rng,
        cx + d * math.cos(ang) * 0.8,
        cy + d * math.sin(ang) * 0.8 - 0.03,
        u(0.16, 0.22),
        u(0.22, 0.3),
        u(-0.5, 0.2),
        rough=0.08,
    )
    peri = (rv_b.moved(scale=1.12).mask(cv) | outer_b.moved(scale=1.12).mask(cv)) & cav
    img[peri] = 0.75
    rv = rv_b.mask(cv) & ~outer & cav
    myo = outer & ~lv
    img[rv] = u(0.82, 0.92)
    img[myo] = u(0.24, 0.32)
    img[lv] = u(0.85, 0.95)
    for a in (u(0.6, 1.2), u(1.9, 2.5)):
        pr = r_lv * u(0.15, 0.22)
        pm = Blob(cx + (r_lv - pr) * math.cos(a), cy + (r_lv - pr) * math.sin(a), pr, pr)
        img[pm.mask(cv) & lv] = 0.3
    img *= 1.0 + 0.05 * smooth_noise(rng, cv.shape, 14)
    masks = {"left heart ventricle": lv, "myocardium": myo, "right heart ventricle": rv}
    return {
        "image": grey_to_rgb(_acquire(rng, cv, img, u(0.015, 0.03))),
        "masks": finish(masks, single=tuple(masks)),
        "modality": "MRI",
        "modality_label": "MRI",
        "site": "heart",
        "fov": body_m,
        "meta": {"sequence": "cine"},
    }


def render(rng: np.random.Generator, cv: Canvas) -> dict:
    return _brain(rng, cv) if rng.uniform() < 0.6 else _heart(rng, cv)
