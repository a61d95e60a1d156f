"""The ``Phantom`` result type and the small scene builder the modalities share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsam_agent_rt.data.modality import describe, parse_modality
from medsam_agent_rt.data.phantoms._canvas import Canvas, random_blob
from medsam_agent_rt.data.phantoms._components import keep_largest
from medsam_agent_rt.data.phantoms._filters import erode
from medsam_agent_rt.data.samples import Sample


@dataclass(frozen=True, eq=False)
class Phantom:
    """One procedural image and its ground truth.

    Attributes:
        image: RGB uint8 (H, W, 3).
        masks: target name -> bool (H, W), non-empty, in a fixed order.
        modality: canonical modality ("CT", "endoscope", ...).
        modality_label: spelling in file names / descriptions ("MRI-FLAIR", "CT").
        site: anatomical site ("abdomen", "colon", "retinal", ...).
        seed: the seed it was generated from.
        fov: bool (H, W), the field of view (body, fan, retina disc, scope circle): outside it
            the image carries no anatomy.
        meta: generator facts (lesion kinds, MRI sequence, eye side, ...).
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    modality: str
    modality_label: str
    site: str
    seed: int
    fov: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        return list(self.masks)

    def description(self, target: str) -> str:
        """ "<target> in <site> <modality>", e.g. "left kidney in abdomen CT"."""
        if target not in self.masks:
            raise KeyError(f"target: {target!r} is not in this phantom ({self.targets})")
        return describe(target, self.site, self.modality_label)

    def to_samples(self, dataset: str, split: str, stem: str) -> list[Sample]:
        """In-memory samples, one per target (ids "<dataset>/<split>/<stem>_<target+>")."""
        meta = {"seed": self.seed, **self.meta}
        return [
            Sample(
                sample_id=f"{dataset}/{split}/{stem}_{t.replace(' ', '+')}",
                image_id=f"{dataset}/{split}/{stem}",
                dataset=dataset,
                split=split,
                target=t,
                description=self.description(t),
                modality=self.modality,
                site=self.site,
                meta=meta,
                image_array=self.image,
                mask_array=m,
            )
            for t, m in self.masks.items()
        ]


class Scene:
    """A label map built by painting regions in order (later paint wins), so overlapping
    organs come out touching, plus lesions kept strictly inside their organ."""

    def __init__(self, cv: Canvas) -> None:
        self.cv = cv
        self.labels = np.zeros(cv.shape, np.int16)
        self.names: list[str] = ["background"]
        self.lesions: dict[str, np.ndarray] = {}

    def paint(self, name: str, region: np.ndarray) -> int:
        """Paint ``region`` with label ``name`` (created on first use); returns its id."""
        if name not in self.names:
            self.names.append(name)
        k = self.names.index(name)
        self.labels[region] = k
        return k

    def mask(self, name: str) -> np.ndarray:
        if name not in self.names:
            return np.zeros(self.cv.shape, bool)
        return self.labels == self.names.index(name)

    def lut(self, values: dict[str, float], default: float = 0.0) -> np.ndarray:
        """Per-label values as an array indexed by label id (float32)."""
        return np.asarray([values.get(n, default) for n in self.names], np.float32)

    def add_lesion(
        self, name: str, region: np.ndarray, organ: np.ndarray, margin_px: int = 2
    ) -> bool:
        """Record ``region`` as (part of) lesion ``name`` when it lies inside ``organ`` eroded
        by ``margin_px`` and is non-empty; returns whether it was accepted."""
        if not region.any() or (region & ~erode(organ, margin_px)).any():
            return False
        prev = self.lesions.get(name)
        self.lesions[name] = region if prev is None else (prev | region)
        return True


def finish(
    masks: dict[str, np.ndarray], single: tuple[str, ...] = (), min_pixels: int = 12
) -> dict[str, np.ndarray]:
    """Reduce the ``single`` targets to their largest connected component (painting order can
    leave slivers) and drop masks smaller than ``min_pixels`` (a structure clipped away at
    small sizes)."""
    out = {}
    for k, v in masks.items():
        v = keep_largest(v) if k in single else v
        if int(v.sum()) >= min_pixels:
            out[k] = np.ascontiguousarray(v)
    return out


def modality_parts(label: str) -> tuple[str, str]:
    """(canonical modality, label) of a modality label such as "MRI-FLAIR"."""
    return parse_modality(label).name, label


def random_point_in(
    rng: np.random.Generator, cv: Canvas, mask: np.ndarray
) -> tuple[float, float] | None:
    """A uniformly random pixel of ``mask`` as a unit point (None when the mask is empty)."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None
    i = int(idx[int(rng.integers(idx.size))])
    r, c = divmod(i, cv.w)
    return (c - cv.cx) / cv.s, (r - cv.cy) / cv.s


def place_inside(
    rng: np.random.Generator,
    cv: Canvas,
    organ: np.ndarray,
    rx: float,
    ry: float,
    rough: float = 0.12,
    margin_px: int = 2,
    tries: int = 8,
    k_max: int = 6,
):
    """A random blob lying inside ``organ`` (eroded by ``margin_px``); shrinks by 0.8 after each
    failed try. Returns (Blob, mask) or None when nothing fits."""
    inner = erode(organ, margin_px)
    for _ in range(tries):
        r_px = int(max(rx, ry) * cv.s) + 1
        core = erode(inner, r_px)
        p = random_point_in(rng, cv, core if core.any() else inner)
        if p is None:
            return None
        b = random_blob(rng, p[0], p[1], rx, ry, rng.uniform(0, np.pi), rough, k_max)
        m = b.mask(cv)
        if m.any() and not (m & ~inner).any():
            return b, m
        rx, ry = rx * 0.8, ry * 0.8
    return None
