"""Connected components: labels with per-component area and box, keep-largest, fill holes, count.

Every function takes a (H, W) bool/uint8 mask (non-zero = foreground): a NumPy array (or any
CPU DLPack array), or a CUDA tensor (torch, CuPy) that stays on its device and its current
stream. Labels are 1..K in raster order of each component's first pixel, exactly as
``scipy.ndimage.label`` numbers them, on every backend. Host arrays whose columns are not
adjacent in memory (e.g. ``mask[:, ::2]`` or a transposed view) are copied once before the
kernel runs; row strides (crops, ``mask[::2]``) are read in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medsam_agent_rt._ext import require_ext
from medsam_agent_rt.ops import _validate as V
from medsam_agent_rt.ops import reference as ref
from medsam_agent_rt.ops._dispatch import (
    as_host_array,
    cuda_call,
    cuda_stream_of,
    empty_like_framework,
    select,
)


@dataclass(frozen=True)
class Components:
    """labels (H, W) int32, 0 = background, 1..K in raster order of first pixel;
    areas (K,) int64; boxes (K, 4) int64 inclusive (x0, y0, x1, y1).
    Arrays of the input's framework, on its device (NumPy for host inputs)."""

    labels: Any
    areas: Any
    boxes: Any

    @property
    def count(self) -> int:
        return int(len(self.areas))


def check_connectivity(connectivity: Any) -> int:
    if isinstance(connectivity, bool) or connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    return int(connectivity)


def check_mask(mask: Any, name: str = "mask") -> None:
    V.check_ndim(mask, name, 2)
    V.check_mask_dtype(mask, name)


def host_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """A host (H, W) array the CPU kernels read in place: unit column stride (copied otherwise)."""
    m = as_host_array(mask, name)
    if m.shape[1] > 1 and m.strides[1] != m.itemsize:
        m = np.ascontiguousarray(m)
    return m


def _cuda_label(mask: Any, connectivity: int, invert: bool, stats: bool) -> tuple:
    """(labels, areas, boxes, scratch, k) of a CUDA mask; areas/boxes None unless ``stats``."""
    ext = require_ext()
    stream = cuda_stream_of(mask)
    h, w = (int(s) for s in mask.shape)
    labels = empty_like_framework(mask, (h, w), "int32")
    scratch = empty_like_framework(mask, (int(ext.label_scratch_elems(h, w)),), "int32")
    k = int(
        cuda_call(
            ext.label_components_cuda, mask, labels, scratch, connectivity, invert, stream=stream
        )
    )
    areas = boxes = None
    if stats:
        areas = empty_like_framework(mask, (k,), "int64")
        boxes = empty_like_framework(mask, (k, 4), "int64")
        cuda_call(ext.component_stats_cuda, labels, areas, boxes, stream=stream)
    return labels, areas, boxes, scratch, k


def _prepare(op: str, mask: Any, connectivity: Any) -> tuple[str, int]:
    """Checks the arguments of every function here; returns (backend, connectivity)."""
    check_mask(mask)
    connectivity = check_connectivity(connectivity)
    backend = select(op, mask, exact_fallback=True)
    if backend != "cuda" and any(int(s) == 0 for s in mask.shape):
        return "reference", connectivity  # an empty mask: nothing for a kernel to do
    return backend, connectivity


def label_components(mask: Any, connectivity: int = 8) -> Components:
    """Label the non-zero pixels of a (H, W) bool/uint8 mask with 4- or 8-connectivity."""
    backend, connectivity = _prepare("label_components", mask, connectivity)
    if backend == "cuda":
        labels, areas, boxes, _, _ = _cuda_label(mask, connectivity, False, True)
        return Components(labels, areas, boxes)
    m = host_mask(mask)
    if backend == "cpu":
        return Components(*require_ext().label_components_cpu(m, connectivity))
    return Components(*ref.label_components(m, connectivity))


def count_components(mask: Any, connectivity: int = 8) -> int:
    """Number of connected foreground components."""
    backend, connectivity = _prepare("count_components", mask, connectivity)
    if backend == "cuda":
        return _cuda_label(mask, connectivity, False, False)[4]
    m = host_mask(mask)
    if backend == "cpu":
        return int(require_ext().count_components_cpu(m, connectivity))
    return ref.count_components(m, connectivity)


def keep_largest_component(mask: Any, connectivity: int = 8) -> Any:
    """(H, W) bool: the largest component only (ties: first in raster order)."""
    backend, connectivity = _prepare("keep_largest_component", mask, connectivity)
    if backend == "cuda":
        labels, areas, _, scratch, _ = _cuda_label(mask, connectivity, False, True)
        out = empty_like_framework(mask, tuple(labels.shape), "bool")
        cuda_call(
            require_ext().keep_largest_component_cuda,
            *(labels, areas, scratch, out),
            stream=cuda_stream_of(mask),
        )
        return out
    m = host_mask(mask)
    if backend == "cpu":
        return require_ext().keep_largest_component_cpu(m, connectivity)
    return ref.keep_largest_component(m, connectivity)


def fill_holes(mask: Any, max_area: int | None = None, connectivity: int = 8) -> Any:
    """(H, W) bool with enclosed background regions of area <= max_area filled (None: all).

    Holes are background components, with the complementary connectivity, that do not touch the
    image border (see ``reference.fill_holes``)."""
    if max_area is not None and (
        isinstance(max_area, bool) or not isinstance(max_area, (int, np.integer))
    ):
        raise ValueError(f"max_area must be an int or None, got {max_area!r}")
    backend, connectivity = _prepare("fill_holes", mask, connectivity)
    # -1 asks the kernels for no limit; a negative limit fills nothing, as 0 does.
    limit = -1 if max_area is None else max(int(max_area), 0)
    if backend == "cuda":
        hole_conn = 4 if connectivity == 8 else 8
        bg, areas, boxes, _, _ = _cuda_label(mask, hole_conn, True, True)
        out = empty_like_framework(mask, tuple(bg.shape), "bool")
        cuda_call(
            require_ext().fill_holes_cuda,
            *(mask, bg, areas, boxes, limit, out),
            stream=cuda_stream_of(mask),
        )
        return out
    m = host_mask(mask)
    if backend == "cpu":
        return require_ext().fill_holes_cpu(m, connectivity, limit)
    return ref.fill_holes(m, max_area, connectivity)
