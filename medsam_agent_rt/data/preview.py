"""Contact sheets: a grid of phantoms (one row per modality) with every mask outlined in its
own colour, to look at what the generator makes."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from medsam_agent_rt.data.phantoms._filters import dilate

PALETTE = np.array(
    [
        (255, 64, 64),
        (64, 255, 64),
        (64, 160, 255),
        (255, 220, 0),
        (255, 0, 255),
        (0, 255, 255),
        (255, 140, 0),
        (180, 120, 255),
        (255, 255, 255),
        (120, 255, 160),
    ],
    np.uint8,
)


def outline(image: np.ndarray, masks: Sequence[np.ndarray], width: int = 1) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with each mask's boundary drawn in a palette colour."""
    out = image.copy()
    for i, m in enumerate(masks):
        edge = dilate(m, width) & ~m
        out[edge] = PALETTE[i % len(PALETTE)]
    return out


def contact_sheet(
    modalities: Sequence[str],
    n: int = 4,
    size: int = 256,
    seed: int = 0,
    outlines: bool = True,
) -> np.ndarray:
    """(rows * (size + pad), n * 2 * size ...) uint8 RGB: per modality a row of ``n`` phantoms
    (seeds ``seed .. seed + n - 1``), each shown plain and, when ``outlines``, outlined."""
    from medsam_agent_rt.data.phantoms import generate

    pad = 4
    cols = n * (2 if outlines else 1)
    sheet = np.zeros((len(modalities) * (size + pad) + pad, cols * (size + pad) + pad, 3), np.uint8)
    sheet[:] = 40
    for r, mod in enumerate(modalities):
        for i in range(n):
            ph = generate(mod, seed + i, size)
            tiles = [ph.image]
            if outlines:
                tiles.append(outline(ph.image, list(ph.masks.values())))
            for j, t in enumerate(tiles):
                c = i * len(tiles) + j
                y0, x0 = pad + r * (size + pad), pad + c * (size + pad)
                sheet[y0 : y0 + size, x0 : x0 + size] = t
    return sheet


def save_contact_sheet(path: str | os.PathLike, modalities: Sequence[str], **kw) -> None:
    """Write ``contact_sheet(modalities, **kw)`` as a PNG."""
    from medsam_agent_rt.io.writers import write_png

    write_png(path, contact_sheet(modalities, **kw))
