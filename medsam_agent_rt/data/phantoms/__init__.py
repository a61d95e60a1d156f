"""Procedural phantoms: unlimited labelled images in eight modalities, deterministic by seed.

``generate(modality, seed, size)`` returns a ``Phantom`` (RGB uint8 image, named bool masks,
modality, site, field of view). The same (modality, seed, size) gives identical bytes; the scene
for a seed does not depend on what else is generated. Pure NumPy (+ Pillow for a few drawing
and resizing steps); roughly 50-100 images/s per core at 256 x 256.

Modalities and their targets (some optional per image):

=========== ========== ==================================================================
modality    site       targets
=========== ========== ==================================================================
CT          abdomen    liver, spleen, right/left kidney, aorta, postcava, pancreas, stomach,
                       liver tumor, kidney cyst
MRI         brain      brain, lateral ventricle, tumor core, edema (FLAIR / T2 / T1-Gd)
MRI         heart      left heart ventricle, myocardium, right heart ventricle (cine SAX)
X-Ray       chest      right lung, left lung, heart, nodule, lung opacity
ultrasound  breast     tumor, cyst  (sector fan, speckle, posterior enhancement/shadow)
ultrasound  thyroid    thyroid gland, thyroid nodule, right/left carotid artery
endoscope   colon      polyp, neoplastic polyp, non-neoplastic polyp
fundus      retinal    optic disc, optic cup
dermoscopy  skin       melanoma | nevus
pathology   colon      glandular structure
=========== ========== ==================================================================
"""

from __future__ import annotations

import importlib
import zlib

import numpy as np

from medsam_agent_rt.data.modality import modality_slug, normalise_modality
from medsam_agent_rt.data.phantoms.base import Phantom

# canonical modality -> module in this package exposing render(rng, canvas)
_MODULES: dict[str, str] = {
    "CT": "ct",
    "MRI": "mri",
    "X-Ray": "xray",
    "ultrasound": "ultrasound",
    "endoscope": "endoscopy",
    "fundus": "fundus",
    "dermoscopy": "dermoscopy",
    "pathology": "pathology",
}

#: Canonical names of the modalities the generator covers, in a fixed order.
PHANTOM_MODALITIES: tuple[str, ...] = tuple(_MODULES)

DEFAULT_SIZE = 512
MIN_SIZE = 64
MAX_SIZE = 8192


def parse_size(size: int | tuple[int, int] | str) -> tuple[int, int]:
    """(height, width) from 512, (384, 512) or "512" / "384x512" (H x W)."""
    if isinstance(size, str):
        parts = size.lower().replace(" ", "").split("x")
        try:
            size = int(parts[0]) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        except ValueError:
            raise ValueError(f"size: expected N or HxW (e.g. 512, 384x512), got {size!r}") from None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        h, w = (int(v) for v in size)
    else:
        raise ValueError(f"size: expected an int or (height, width), got {size!r}")
    if not (MIN_SIZE <= h <= MAX_SIZE and MIN_SIZE <= w <= MAX_SIZE):
        raise ValueError(f"size: each side must be in {MIN_SIZE}..{MAX_SIZE} pixels, got {h}x{w}")
    if max(h, w) > 3 * min(h, w):
        raise ValueError(f"size: aspect ratio must be at most 3:1, got {h}x{w}")
    return h, w


def phantom_modality(name: str) -> str:
    """Canonical modality of ``name`` (any alias), checked against the generator's list."""
    canon = normalise_modality(name)
    if canon not in _MODULES:
        raise ValueError(
            f"modality: no phantom generator for {name!r}; available: "
            f"{', '.join(m.lower() if m != 'X-Ray' else 'xray' for m in PHANTOM_MODALITIES)}"
        )
    return canon


def rng_for(modality: str, seed: int) -> np.random.Generator:
    """The generator of (modality, seed): independent streams per modality."""
    key = zlib.crc32(modality_slug(modality).encode("ascii"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key]))


def generate(modality: str, seed: int, size: int | tuple[int, int] | str = DEFAULT_SIZE) -> Phantom:
    """One phantom of ``modality`` (any alias: "ct", "x-ray", "endoscopy", ...) for ``seed``
    (an int >= 0) at ``size`` (N or (height, width), default 512 x 512)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    canon = phantom_modality(modality)
    h, w = parse_size(size)
    from medsam_agent_rt.data.phantoms._canvas import Canvas

    module = importlib.import_module(f"{__name__}.{_MODULES[canon]}")
    out = module.render(rng_for(canon, seed), Canvas(h, w))
    return Phantom(seed=int(seed), **out)


__all__ = [
    "DEFAULT_SIZE",
    "PHANTOM_MODALITIES",
    "Phantom",
    "generate",
    "parse_size",
    "phantom_modality",
    "rng_for",
]
