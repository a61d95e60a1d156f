"""Abdominal CT phantom (axial slice at the kidneys, portal-venous phase, soft-tissue window).

Body outline with subcutaneous fat and abdominal wall, liver (with a caudate bridge that
wraps the inferior vena cava), spleen, stomach with an air-fluid level, pancreas, both kidneys
(bean-shaped with sinus fat), aorta, postcava (IVC), vertebra with spinal canal, psoas and
paraspinal muscles, bowel loops, the scanner table. Lesions: hypo- or hyperdense liver tumours
and a renal cyst, always inside their organ. Radiological convention: the patient's right is on
the image left. The liver always touches the right kidney and the postcava.
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
from medsam_agent_rt.data.phantoms._components import (
    keep_largest,
)
from medsam_agent_rt.data.phantoms._draw import (
    chain_mask,
    polyline_mask,
)
from medsam_agent_rt.data.phantoms._filters import (
    blur,
    fine_noise,
    smooth_noise,
)
from medsam_agent_rt.data.phantoms.base import Scene, finish, place_inside

LABEL = "CT"
SITE = "abdomen"
ORGANS = (
    "liver",
    "spleen",
    "right kidney",
    "left kidney",
    "aorta",
    "postcava",
    "pancreas",
    "stomach",
    "gallbladder",
)


def _touch(cv: Canvas, blob: Blob, other: np.ndarray, toward: tuple[float, float]) -> Blob:
    """Move ``blob`` toward ``toward`` in small steps until it overlaps ``other``."""
    for _ in range(40):
        if (blob.mask(cv) & other).any():
            return blob
        dx, dy = toward[0] - blob.cx, toward[1] - blob.cy
        n = math.hypot(dx, dy) or 1.0
        blob = blob.moved(0.015 * dx / n, 0.015 * dy / n)
    return blob


def render(rng: np.random.Generator, cv: Canvas) -> dict:
    X, Y = cv.grid()
    sc = Scene(cv)
    u = rng.uniform

    # ---------------------------------------------------------------- body and wall
    bw, bh, by = u(0.80, 0.93), u(0.56, 0.68), u(-0.02, 0.06)
    k = bw / 0.86  # patient size factor
    body = random_blob(rng, 0.0, by, bw, bh, 0.0, rough=0.05, k_max=4)
    y_back = by + bh * u(0.84, 0.9)
    body_m = body.mask(cv) & (Y < y_back)
    fat_t = u(0.05, 0.15)
    wall_b = random_blob(
        rng, 0.0, by - 0.01, bw * (1 - fat_t), bh * (1 - fat_t), 0.0, rough=0.06, k_max=5
    )
    wall_m = wall_b.mask(cv) & body_m
    inner = wall_b.moved(scale=1 - u(0.035, 0.055)).mask(cv) & body_m
    sc.paint("fat_sc", body_m)
    sc.paint("muscle", wall_m)
    sc.paint("fat", inner)
    y_v = y_back - u(0.27, 0.33)  # vertebral body centre

    # ---------------------------------------------------------------- bowel loops
    loops = np.zeros(cv.shape, bool)
    air = np.zeros(cv.shape, bool)
    for _ in range(int(rng.integers(5, 12))):
        r = u(0.035, 0.075) * k
        b = random_blob(
            rng,
            u(-0.5, 0.5) * k,
            u(by - bh * 0.7, y_v - 0.05),
            r,
            r * u(0.7, 1.0),
            u(0, math.pi),
            rough=0.1,
        )
        m = b.mask(cv) & inner
        if not m.any() or (m & loops).any():
            continue
        loops |= m
        lumen = b.moved(scale=u(0.6, 0.8)).mask(cv) & m
        sc.paint("bowel_wall", m)
        kind = u()
        if kind < 0.45:
            air |= lumen
            sc.paint("bowel_air", lumen)
        elif kind < 0.8:
            sc.paint("bowel_fluid", lumen)
        else:
            sc.paint("bowel_contrast", lumen)

    # ---------------------------------------------------------------- solid organs
    stomach = random_blob(
        rng,
        u(0.15, 0.3) * k,
        by - bh * u(0.3, 0.45),
        u(0.15, 0.22) * k,
        u(0.1, 0.14) * k,
        u(-0.5, 0.1),
        rough=0.12,
    )
    st_m = stomach.mask(cv) & inner
    sc.paint("stomach", st_m)

    lcx, lcy = u(-0.5, -0.42) * k, by - u(0.0, 0.1)
    liver = random_blob(
        rng, lcx, lcy, u(0.25, 0.33) * k, u(0.32, 0.42) * k, u(-0.25, 0.25), rough=0.12
    )
    ivc_c = (u(-0.13, -0.09) * k, y_v - u(0.13, 0.17))
    ivc = random_blob(
        rng, ivc_c[0], ivc_c[1], u(0.045, 0.06) * k, u(0.03, 0.04) * k, u(-0.3, 0.3), rough=0.05
    )
    # the caudate lobe wraps the IVC: a cuff around it that the liver body reaches
    cuff_b = random_blob(
        rng,
        ivc_c[0] - 0.025,
        ivc_c[1] - 0.015,
        ivc.rx * u(1.6, 2.0),
        ivc.ry * u(1.8, 2.4),
        u(-0.5, 0.5),
        rough=0.1,
    )
    cuff = cuff_b.mask(cv)
    liver = _touch(cv, liver.moved(scale=1.0), cuff, ivc_c)
    liver_region = (liver.mask(cv) | cuff) & inner
    lcx, lcy = liver.cx, liver.cy
    sc.paint("liver", liver_region)

    gb = None
    if u() < 0.6:
        gb = random_blob(
            rng,
            lcx + u(0.3, 0.4) * k,
            lcy - u(0.1, 0.25),
            u(0.05, 0.08) * k,
            u(0.035, 0.05) * k,
            u(-0.8, 0.8),
            rough=0.06,
        )
        gb = _touch(cv, gb, sc.mask("liver"), (lcx, lcy))
        sc.paint("gallbladder", gb.mask(cv) & inner)

    spleen = random_blob(
        rng,
        u(0.45, 0.55) * k,
        y_v - u(0.15, 0.28),
        u(0.08, 0.11) * k,
        u(0.16, 0.22) * k,
        u(0.3, 0.8),
        rough=0.12,
    )
    notch = Blob(spleen.cx - spleen.rx * 0.9, spleen.cy, spleen.rx * 0.6, spleen.ry * 0.6)
    sc.paint("spleen", spleen.mask(cv) & ~notch.mask(cv) & inner)

    py = y_v - u(0.24, 0.3)
    pts = np.array(
        [
            [0.42 * k, py - u(0.02, 0.08)],
            [0.2 * k, py + u(-0.03, 0.03)],
            [0.03 * k, py - u(0.0, 0.04)],
            [ivc_c[0] + 0.03, ivc_c[1] - u(0.09, 0.12)],
        ]
    )
    widths = np.array([u(0.04, 0.055), u(0.05, 0.07), u(0.05, 0.07), u(0.08, 0.1)]) * k
    sc.paint("pancreas", chain_mask(rng, cv, pts, widths) & inner)

    kidneys = {}
    for side, sx in (("right kidney", -1.0), ("left kidney", 1.0)):
        kb = random_blob(
            rng,
            sx * u(0.24, 0.3) * k,
            y_v - u(-0.02, 0.05),
            u(0.065, 0.08) * k,
            u(0.095, 0.115) * k,
            sx * u(0.3, 0.6),
            rough=0.06,
            k_max=4,
        )
        if side == "right kidney":
            kb = _touch(cv, kb, sc.mask("liver"), (lcx, lcy))
        sinus = Blob(
            kb.cx - sx * kb.rx * 0.75 * math.cos(kb.angle),
            kb.cy - sx * kb.rx * 0.75 * math.sin(kb.angle),
            kb.rx * 0.55,
            kb.ry * 0.4,
            kb.angle,
        )
        region = kb.mask(cv) & ~sinus.mask(cv) & inner
        sc.paint(side, region)
        kidneys[side] = kb

    sc.paint("postcava", ivc.mask(cv) & inner)
    ra = u(0.038, 0.05) * k
    aorta = Blob(u(0.02, 0.06) * k, y_v - u(0.13, 0.17), ra, ra)
    sc.paint("aorta", aorta.mask(cv) & inner)

    # ---------------------------------------------------------------- spine and muscles
    for sx in (-1.0, 1.0):
        ps = random_blob(rng, sx * 0.1 * k, y_v - 0.01, 0.045 * k, 0.055 * k, 0.0, rough=0.05)
        sc.paint("psoas", ps.mask(cv) & body_m)
        pa = random_blob(rng, sx * 0.13 * k, y_v + 0.2, 0.1 * k, 0.075, 0.0, rough=0.05)
        sc.paint("paraspinal", pa.mask(cv) & body_m)
    vb = Blob(0.0, y_v, 0.1 * k, 0.085 * k)
    arch = Blob(0.0, y_v + 0.13, 0.075 * k, 0.07)
    bone = vb.mask(cv) | arch.mask(cv)
    bone |= polyline_mask(cv, np.array([[0, y_v + 0.17], [0, y_v + 0.24]]), 0.028 * k)
    for sx in (-1.0, 1.0):
        bone |= polyline_mask(
            cv, np.array([[sx * 0.05, y_v + 0.11], [sx * 0.115 * k, y_v + 0.1]]), 0.022 * k
        )
    sc.paint("bone", bone & body_m)
    sc.paint("marrow", vb.moved(scale=0.82).mask(cv))
    sc.paint("canal", Blob(0.0, y_v + 0.135, 0.045 * k, 0.04).mask(cv))

    # ---------------------------------------------------------------- lesions
    meta: dict = {}
    margin = 2 if cv.s >= 100 else 1
    organs = {t: keep_largest(sc.mask(t)) for t in ORGANS}
    liver_m = organs["liver"]
    for _ in range(int(rng.integers(1, 3)) if u() < 0.85 else 0):
        r = u(0.035, 0.11) * k
        got = place_inside(rng, cv, liver_m, r, r * u(0.7, 1.0), rough=0.18, margin_px=margin)
        if got is not None:
            sc.add_lesion("liver tumor", got[1], liver_m)
    if "liver tumor" in sc.lesions:
        meta["liver_tumor"] = "hypodense" if u() < 0.75 else "hyperdense"
    if u() < 0.5:
        side = "right kidney" if u() < 0.5 else "left kidney"
        r = u(0.025, 0.045) * k
        organ = organs[side]
        got = place_inside(rng, cv, organ, r, r * u(0.85, 1.0), rough=0.03, margin_px=margin)
        if got is not None:
            sc.add_lesion("kidney cyst", got[1], organ)

    # ---------------------------------------------------------------- Hounsfield units
    hu_of = {
        "background": -1000,
        "fat_sc": -100,
        "muscle": 55,
        "fat": -95,
        "bowel_wall": 50,
        "bowel_air": -950,
        "bowel_fluid": 12,
        "bowel_contrast": u(200, 320),
        "gallbladder": u(0, 20),
        "stomach": 35,
        "liver": u(90, 115),
        "spleen": u(100, 125),
        "pancreas": u(80, 105),
        "right kidney": u(150, 190),
        "left kidney": u(150, 190),
        "postcava": u(115, 150),
        "aorta": u(150, 200),
        "psoas": 55,
        "paraspinal": 50,
        "bone": u(600, 900),
        "marrow": u(180, 260),
        "canal": 15,
    }
    hu = sc.lut(hu_of)[sc.labels]
    # stomach: gas above a fluid level, a thin wall
    level = stomach.cy + u(-0.3, 0.3) * stomach.ry
    st_in = stomach.moved(scale=0.86).mask(cv) & sc.mask("stomach")
    hu[st_in & (Y < level)] = -950
    hu[st_in & (Y >= level)] = 15
    # organ texture
    tex = smooth_noise(rng, cv.shape, 10)
    solid = np.isin(sc.labels, [sc.names.index(n) for n in ("liver", "spleen", "pancreas")])
    hu += np.where(solid, 4.0, 10.0) * tex * (hu > -500)
    # mesenteric vessels: small enhancing dots in the intra-abdominal fat
    fat_id = sc.names.index("fat")
    for _ in range(int(rng.integers(10, 25))):
        x0, y0 = u(-0.6, 0.6) * k, u(by - bh * 0.7, y_v)
        d = Blob(x0, y0, u(0.006, 0.014), u(0.006, 0.014)).mask(cv) & (sc.labels == fat_id)
        hu[d] = u(80, 160)
    # vessels inside the liver: branching dark/bright lines at low contrast
    for _ in range(int(rng.integers(3, 7))):
        p0 = (lcx + u(-0.15, 0.15), lcy + u(-0.2, 0.2))
        ang = u(0, 2 * math.pi)
        pts = [p0]
        for _ in range(4):
            ang += u(-0.6, 0.6)
            pts.append((pts[-1][0] + 0.06 * math.cos(ang), pts[-1][1] + 0.06 * math.sin(ang)))
        v = polyline_mask(cv, np.array(pts), np.linspace(0.02, 0.008, len(pts)))
        v &= liver_m
        hu[v] += u(20, 45)
    if "liver tumor" in sc.lesions:
        m = sc.lesions["liver tumor"]
        sign = -1.0 if meta["liver_tumor"] == "hypodense" else 1.0
        hu[m] = hu_of["liver"] + sign * u(20, 45) + 6.0 * tex[m]
    if "kidney cyst" in sc.lesions:
        hu[sc.lesions["kidney cyst"]] = u(0, 12)
    # scanner table
    xs_t = np.linspace(-0.95, 0.95, 24) * cv.half_w
    table = polyline_mask(
        cv, np.stack([xs_t, y_back + 0.08 + 0.12 * (xs_t / cv.half_w) ** 2], 1), 0.025
    )
    hu[table & ~body_m] = 120
    table2 = polyline_mask(
        cv, np.stack([xs_t, y_back + 0.125 + 0.12 * (xs_t / cv.half_w) ** 2], 1), 0.012
    )
    hu[table2 & ~body_m] = 300

    # ---------------------------------------------------------------- acquisition
    sig_pv = 0.7 * min(cv.h, cv.w) / 512
    hu = blur(hu, sig_pv)
    hu += u(9, 18) * fine_noise(rng, cv.shape, 0.6 * min(cv.h, cv.w) / 512)
    wl, ww = u(30, 60), u(350, 450)
    img = to_uint8((hu - (wl - ww / 2)) / ww)

    masks = dict(organs)
    for t in ("liver tumor", "kidney cyst"):
        if t in sc.lesions:
            masks[t] = sc.lesions[t]
    meta["window"] = [round(wl, 1), round(ww, 1)]
    return {
        "image": grey_to_rgb(img),
        "masks": finish(masks),
        "modality": "CT",
        "modality_label": LABEL,
        "site": SITE,
        "fov": body_m,
        "meta": meta,
    }
