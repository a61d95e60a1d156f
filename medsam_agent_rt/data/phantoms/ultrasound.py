"""B-mode ultrasound phantoms in a curvilinear sector fan: breast (a hypoechoic tumour and
sometimes an anechoic cyst) or thyroid (both lobes joined by the isthmus, a nodule inside a
lobe, the carotid arteries against the lobes, the trachea with its acoustic shadow).

The echo map is built in image space; beams are the fan's radial lines. Speckle is fully
developed: a complex Gaussian field, correlated axially and laterally in beam coordinates, whose
magnitude (Rayleigh distributed) multiplies the echogenicity. Along each beam, tissue behind a
lesion is brightened (posterior enhancement: cysts, benign masses) or darkened (shadowing:
malignant masses, calcified trachea); depth attenuation with partial time-gain compensation;
log compression to 8 bits. Outside the fan the image is black.
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
)
from medsam_agent_rt.data.phantoms._filters import (
    blur,
    smooth_noise,
)
from medsam_agent_rt.data.phantoms.base import finish


class Fan:
    """Sector geometry: apex above the image, radii r0..r1, half-angle ``half`` (radians)."""

    def __init__(self, cv: Canvas, rng: np.random.Generator) -> None:
        u = rng.uniform
        self.apex = (0.0, -cv.half_h - u(0.15, 0.3))
        self.r0 = -self.apex[1] - cv.half_h + u(0.03, 0.08)  # first echo just inside the top
        self.r1 = self.r0 + cv.half_h * 2 * u(0.88, 0.95)
        self.half = math.radians(u(30, 38))
        X, Y = cv.grid()
        dx, dy = X - self.apex[0], Y - self.apex[1]
        self.r = np.sqrt(dx * dx + dy * dy)
        self.theta = np.arctan2(dx, dy)  # 0 straight down, + to the image right
        self.inside = (self.r >= self.r0) & (self.r <= self.r1) & (np.abs(self.theta) <= self.half)

    def point(self, depth: float, theta: float) -> tuple[float, float]:
        """Unit point at fraction ``depth`` (0..1) of the fan and angle ``theta`` (radians)."""
        r = self.r0 + depth * (self.r1 - self.r0)
        return self.apex[0] + r * math.sin(theta), self.apex[1] + r * math.cos(theta)

    def depth(self) -> np.ndarray:
        """(H, W) fraction of the fan depth (0 at the transducer)."""
        return (self.r - self.r0) / (self.r1 - self.r0)


def _speckle(rng: np.random.Generator, cv: Canvas, fan: Fan) -> np.ndarray:
    """Rayleigh speckle (mean ~1) correlated along beams: generated on a (depth, angle) grid
    and scan-converted by nearest-neighbour lookup."""
    nr, nt = cv.h, max(cv.w, 64)
    scale = min(cv.h, cv.w) / 512
    re = blur(rng.standard_normal((nr, nt), dtype=np.float32), 0.9 * scale, 1.6 * scale)
    im = blur(rng.standard_normal((nr, nt), dtype=np.float32), 0.9 * scale, 1.6 * scale)
    mag = np.sqrt(re * re + im * im)
    mag /= float(mag.mean()) or 1.0
    ri = np.clip(((fan.r - fan.r0) / (fan.r1 - fan.r0) * (nr - 1)).round(), 0, nr - 1).astype(int)
    ti = np.clip(((fan.theta / fan.half + 1) / 2 * (nt - 1)).round(), 0, nt - 1).astype(int)
    return mag[ri, ti]


def _behind(fan: Fan, lesion: np.ndarray, ramp: float = 0.06, nbins: int = 256) -> np.ndarray:
    """(H, W) float in [0, 1]: 0 in front of / beside ``lesion`` and inside it, ramping to 1
    over ``ramp`` units behind its far edge along each beam."""
    bins = np.clip(((fan.theta / fan.half + 1) / 2 * (nbins - 1)).round(), 0, nbins - 1).astype(int)
    far = np.full(nbins, np.inf, np.float32)
    if lesion.any():
        mx = np.full(nbins, -np.inf, np.float32)
        np.maximum.at(mx, bins[lesion], fan.r[lesion])
        ok = np.isfinite(mx)
        far[ok] = mx[ok]
        # widen by one bin each side so the shadow edges are not jagged
        far = np.minimum(far, np.minimum(np.roll(far, 1), np.roll(far, -1)))
    f = far[bins]
    out = np.zeros(fan.r.shape, np.float32)
    ok = np.isfinite(f)
    out[ok] = np.clip((fan.r[ok] - f[ok]) / ramp, 0, 1)
    return out


def _finish_image(
    rng: np.random.Generator, cv: Canvas, fan: Fan, echo: np.ndarray, gain: np.ndarray
) -> np.ndarray:
    u = rng.uniform
    scale = min(cv.h, cv.w) / 512
    echo = blur(echo * gain, 1.0 * scale)
    depth = fan.depth()
    atten = np.exp(-u(0.6, 1.2) * depth) * (1 + u(0.3, 0.6) * depth)  # attenuation, partial TGC
    amp = echo * atten * _speckle(rng, cv, fan)
    db = 20 * np.log10(np.maximum(amp, 1e-4))
    rng_db = u(45, 60)
    img = (db - (float(np.percentile(db[fan.inside], 99.5)) - rng_db)) / rng_db
    img = np.clip(img, 0, 1) ** u(1.0, 1.4)
    img[~fan.inside] = 0.0
    return to_uint8(img)


def _breast(rng: np.random.Generator, cv: Canvas) -> dict:
    u = rng.uniform
    fan = Fan(cv, rng)
    depth = fan.depth()
    n1 = smooth_noise(rng, cv.shape, 6)
    n2 = smooth_noise(rng, cv.shape, 18)
    # layers: skin, subcutaneous fat (with Cooper ligaments), fibroglandular, retromammary fat,
    # pectoralis muscle
    skin = depth < 0.035
    fat_end = u(0.15, 0.28) + 0.05 * n1
    gland_end = fat_end + u(0.3, 0.45) + 0.06 * n1
    muscle_start = gland_end + u(0.04, 0.1)
    echo = np.full(cv.shape, 0.35, np.float32)  # fat: dark-mid grey
    echo += 0.12 * (np.abs(n2) < 0.12) * (depth < fat_end)  # ligaments
    gl = (depth >= fat_end) & (depth < gland_end)
    echo[gl] = 0.75 + 0.2 * n2[gl]
    mus = depth >= muscle_start
    stria = 0.5 + 0.5 * np.sin(fan.r * 90.0 + 3 * n1)
    echo[mus] = 0.4 + 0.25 * stria[mus]
    echo[skin] = 1.0
    echo = np.clip(echo, 0.05, None)
    gain = np.ones(cv.shape, np.float32)

    masks: dict[str, np.ndarray] = {}
    malignant = u() < 0.5
    d0 = u(0.3, 0.55)
    c = fan.point(d0, u(-0.5, 0.5) * fan.half)
    r = u(0.1, 0.2)
    if malignant:
        b = random_blob(rng, c[0], c[1], r, r * u(0.7, 1.0), u(-0.3, 0.3), rough=0.35, k_max=12)
    else:
        b = random_blob(
            rng, c[0], c[1], r * u(1.1, 1.4), r * u(0.6, 0.8), u(-0.2, 0.2), rough=0.08, k_max=4
        )
    tumor = b.mask(cv) & fan.inside
    lvl = b.level(cv)
    echo = np.where(tumor, u(0.05, 0.14) * (1 + 0.5 * np.clip(n2, -1, 1)), echo)
    if malignant:  # echogenic halo around a spiculated mass
        halo = (lvl > 1.0) & (lvl < 1.2) & fan.inside
        echo = np.where(halo, echo * 1.5, echo)
    gain *= 1.0 + (-0.6 if malignant else 0.7) * _behind(fan, tumor)
    masks["tumor"] = tumor
    meta = {"tumor": "malignant" if malignant else "benign"}
    if u() < 0.5:  # an anechoic cyst elsewhere, with posterior enhancement
        for _ in range(6):
            cc = fan.point(u(0.25, 0.6), u(-0.7, 0.7) * fan.half)
            rc = u(0.05, 0.09)
            cb = random_blob(rng, cc[0], cc[1], rc * u(1.0, 1.3), rc, u(-0.3, 0.3), rough=0.04)
            cyst = cb.mask(cv) & fan.inside
            if cyst.any() and not (cb.moved(scale=1.3).mask(cv) & tumor).any():
                echo = np.where(cyst, 0.02, echo)
                gain *= 1.0 + 0.8 * _behind(fan, cyst)
                masks["cyst"] = cyst
                break
    return {
        "image": grey_to_rgb(_finish_image(rng, cv, fan, echo, gain)),
        "masks": finish(masks, single=("tumor", "cyst")),
        "modality": "ultrasound",
        "modality_label": "ultrasound",
        "site": "breast",
        "fov": fan.inside,
        "meta": meta,
    }


def _thyroid(rng: np.random.Generator, cv: Canvas) -> dict:
    X, Y = cv.grid()
    u = rng.uniform
    fan = Fan(cv, rng)
    depth = fan.depth()
    n1 = smooth_noise(rng, cv.shape, 8)
    n2 = smooth_noise(rng, cv.shape, 20)
    echo = np.full(cv.shape, 0.45, np.float32)
    echo[depth < 0.03] = 1.0  # skin
    straps = (depth > u(0.08, 0.12)) & (depth < u(0.2, 0.25))
    echo[straps] = 0.3 + 0.1 * n2[straps]
    deep_m = depth > u(0.75, 0.85)
    echo[deep_m] = 0.35 + 0.1 * n1[deep_m]

    # trachea in the middle, lobes either side, isthmus over the trachea
    tc = fan.point(u(0.36, 0.52), u(-0.15, 0.15) * fan.half)
    tr = u(0.15, 0.23)
    trachea = Blob(tc[0], tc[1], tr, tr * 0.9)
    lobes = np.zeros(cv.shape, bool)
    lobe_blobs = []
    for sx in (-1.0, 1.0):
        lb = random_blob(
            rng,
            tc[0] + sx * (tr + u(0.14, 0.2)),
            tc[1] - u(0.02, 0.08),
            u(0.17, 0.23),
            u(0.13, 0.17),
            sx * u(-0.3, 0.1),
            rough=0.08,
        )
        lobes |= lb.mask(cv)
        lobe_blobs.append(lb)
    top = tc[1] - tr - u(0.03, 0.045)
    arc = np.array(
        [
            [lobe_blobs[0].cx, lobe_blobs[0].cy],
            [tc[0] - tr * 0.8, top + 0.02],
            [tc[0], top],
            [tc[0] + tr * 0.8, top + 0.02],
            [lobe_blobs[1].cx, lobe_blobs[1].cy],
        ]
    )
    isthmus = chain_mask(rng, cv, arc, np.full(5, u(0.055, 0.07)), rough=0.05)
    gland = (lobes | isthmus) & ~trachea.moved(scale=1.05).mask(cv) & fan.inside
    arteries = {}
    for sx, lb in zip((-1.0, 1.0), lobe_blobs):
        ra = u(0.07, 0.09)
        ac = (lb.cx + sx * (lb.rx * 0.9 + ra * 0.6), lb.cy + u(0.02, 0.08))
        art = Blob(ac[0], ac[1], ra, ra * u(0.9, 1.0)).mask(cv) & fan.inside
        arteries["right carotid artery" if sx < 0 else "left carotid artery"] = art
    for art in arteries.values():
        gland &= ~art
    echo[gland] = 0.8 + 0.12 * n2[gland]
    gain = np.ones(cv.shape, np.float32)
    for art in arteries.values():
        echo[art] = 0.02
        gain *= 1.0 + 0.4 * _behind(fan, art)
    # trachea: bright anterior wall arc, reverberation, shadow behind
    tl = trachea.level(cv)
    wall = (tl <= 1.0) & (tl > 0.85) & (Y < trachea.cy)
    echo[tl <= 1.0] = 0.05
    echo[wall] = 1.6
    behind = _behind(fan, wall, ramp=0.02)
    gain *= 1.0 - 0.85 * behind

    gland = keep_largest(gland)
    masks = {"thyroid gland": gland}
    # a nodule inside one lobe
    from medsam_agent_rt.data.phantoms.base import place_inside

    lobe = gland & (np.sign(X - tc[0]) == (1.0 if u() < 0.5 else -1.0))
    r = u(0.05, 0.1)
    got = place_inside(rng, cv, lobe, r, r * u(0.7, 1.0), rough=0.12, margin_px=2)
    meta = {}
    if got is not None:
        nod = got[1]
        kind = "hypoechoic" if u() < 0.7 else "isoechoic"
        echo[nod] = (0.18 if kind == "hypoechoic" else 0.6) + 0.1 * n2[nod]
        if kind == "isoechoic":  # a dark halo outlines it
            ring = (got[0].level(cv) > 0.85) & nod
            echo[ring] = 0.12
        masks["thyroid nodule"] = nod
        meta["nodule"] = kind
    masks.update(arteries)
    return {
        "image": grey_to_rgb(_finish_image(rng, cv, fan, np.clip(echo, 0.01, None), gain)),
        "masks": finish(masks, single=tuple(masks)),
        "modality": "ultrasound",
        "modality_label": "ultrasound",
        "site": "thyroid",
        "fov": fan.inside,
        "meta": meta,
    }


def render(rng: np.random.Generator, cv: Canvas) -> dict:
    return _breast(rng, cv) if rng.uniform() < 0.5 else _thyroid(rng, cv)
