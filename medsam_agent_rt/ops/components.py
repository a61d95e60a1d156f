"""Connected components: labels with per-component area and box, keep-largest, fill holes, count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsam_agent_rt.ops import _validate as V
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import as_host_array


@dataclass(frozen=True)
class Components:
    """labels (H, W) int32, 0 = background, 1..K in raster order of first pixel;
    areas (K,) int64; boxes (K, 4) int64 inclusive (x0, y0, x1, y1)."""

    labels: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray

    @property
    def count(self) -> int:
        return int(len(self.areas))


def _mask(mask: Any) -> np.ndarray:
    V.check_ndim(mask, "mask", 2)
    V.check_mask_dtype(mask, "mask")
    return as_host_array(mask, "mask")


def label_components(mask: Any, connectivity: int = 8) -> Components:
    """Label the non-zero pixels of a (H, W) bool/uint8 mask with 4- or 8-connectivity."""
    return Components(*ref.label_components(_mask(mask), connectivity))


def count_components(mask: Any, connectivity: int = 8) -> int:
    """Number of connected foreground components."""
    return label_components(mask, connectivity).count


def keep_largest_component(mask: Any, connectivity: int = 8) -> np.ndarray:
    """(H, W) bool: the largest component only (ties: first in raster order)."""
    return ref.keep_largest_component(_mask(mask), connectivity)


def fill_holes(mask: Any, max_area: int | None = None, connectivity: int = 8) -> np.ndarray:
    """(H, W) bool with enclosed background regions of area <= max_area filled (None: all)."""
    return ref.fill_holes(_mask(mask), max_area, connectivity)
