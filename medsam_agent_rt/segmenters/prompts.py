"""Validation of ``Segmenter.predict`` prompts, shared by every backend.

Coordinates are (x, y) pixels of the original (H, W) image, continuous: pixel (i, j) covers
[j, j + 1) x [i, i + 1), so a point must satisfy 0 <= x < W and 0 <= y < H, and a box
0 <= x1 < x2 <= W, 0 <= y1 < y2 <= H. Nothing is clamped silently: clamping (e.g. of the
policy's 0..999 grid) belongs to the action parser, which records it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _finite(x: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(x)):
        shown = x.tolist() if x.size <= 8 else f"{int((~np.isfinite(x)).sum())} NaN/inf values"
        raise ValueError(f"{name} must be finite, got {shown}")


def check_prompts(
    point_coords: Any,
    point_labels: Any,
    box: Any,
    mask_input: Any,
    image_size: tuple[int, int],
    mask_size: tuple[int, int],
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Check and normalise one predict() call. Returns points (N, 2) float64 or None, labels
    (N,) int32 or None, box (4,) float64 or None, mask (h, w) float32 or None; raises ValueError
    naming the argument, what was expected and what arrived."""
    h, w = image_size
    pts = labels = bx = mask = None
    if point_coords is not None or point_labels is not None:
        if point_coords is None or point_labels is None:
            raise ValueError("point_coords and point_labels must be given together")
        pts = np.asarray(point_coords, np.float64)
        if pts.size == 0:
            pts = pts.reshape(0, 2)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"point_coords must be (N, 2) (x, y) pixels, got shape {pts.shape}")
        labels = np.asarray(point_labels)
        if labels.shape != (pts.shape[0],):
            raise ValueError(
                f"point_labels must be ({pts.shape[0]},) to match point_coords, got {labels.shape}"
            )
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError(
                f"point_labels must be 0 (negative) or 1 (positive), got {labels.tolist()}"
            )
        labels = labels.astype(np.int32)
        _finite(pts, "point_coords")
        for x, y in pts:
            if not (0 <= x < w and 0 <= y < h):
                raise ValueError(
                    f"point ({x:g}, {y:g}) is outside the image of {w}x{h} (W x H) pixels; "
                    f"expected 0 <= x < {w} and 0 <= y < {h}"
                )
        if pts.shape[0] == 0:
            pts = labels = None
    if box is not None:
        bx = np.asarray(box, np.float64)
        if bx.shape not in ((4,), (1, 4)):
            raise ValueError(f"box must be (4,) x1, y1, x2, y2 pixels, got shape {bx.shape}")
        bx = bx.reshape(4)
        _finite(bx, "box")
        x1, y1, x2, y2 = bx
        if not (x1 < x2 and y1 < y2):
            raise ValueError(f"box must have x1 < x2 and y1 < y2, got {bx.tolist()}")
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            raise ValueError(
                f"box {bx.tolist()} is outside the image of {w}x{h} (W x H) pixels; expected "
                f"0 <= x1 < x2 <= {w} and 0 <= y1 < y2 <= {h}"
            )
    if pts is None and bx is None:
        raise ValueError("predict() needs at least one point or a box; got an empty prompt list")
    if mask_input is not None:
        mask = np.asarray(mask_input)
        if mask.shape not in ((1, *mask_size), tuple(mask_size)) or not np.issubdtype(
            mask.dtype, np.floating
        ):
            raise ValueError(
                f"mask_input must be float low-res logits of shape (1, {mask_size[0]}, "
                f"{mask_size[1]}) (a previous Prediction.low_res_logits[i:i+1]), got "
                f"{mask.dtype} {mask.shape}"
            )
        mask = np.ascontiguousarray(mask.reshape(mask_size), np.float32)
        _finite(mask, "mask_input")
    return pts, labels, bx, mask
