"""The tracker protocol and the SAM-1 family's box propagation (the LiteMedSAM challenge recipe:
each slice / frame is prompted with the bounding box of the previous mask).

A tracker is started on one frame with a mask (from an agent episode or a person) and then
stepped frame by frame; its memory is bounded (BoxTracker keeps only the previous mask; the
segmenter's embedding cache is LRU-bounded). ``score`` is the segmenter's predicted IoU; 0 when
the target is lost (empty mask), after which the tracker keeps returning empty masks — the place
where a caller can re-invoke the agent on that frame and ``start`` again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class TrackStep:
    """mask (H, W) bool; score in [0, 1] (0: target lost)."""

    mask: np.ndarray
    score: float


class Tracker(Protocol):
    def start(self, frame: np.ndarray, mask: np.ndarray) -> None:
        """frame (H, W) or (H, W, 3) uint8; mask (H, W) bool of the target on that frame."""
        ...

    def step(self, frame: np.ndarray) -> TrackStep:
        """The target's mask on the next frame (same size as the start frame)."""
        ...


def mask_box(mask: np.ndarray, margin: float = 0.0) -> np.ndarray | None:
    """(4,) x1 y1 x2 y2 px (pixel-edge convention, x2 = last column + 1) of a mask, grown by
    ``margin`` px per side and clipped to the image; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    h, w = mask.shape
    return np.array(
        [
            max(xs.min() - margin, 0.0),
            max(ys.min() - margin, 0.0),
            min(xs.max() + 1 + margin, float(w)),
            min(ys.max() + 1 + margin, float(h)),
        ]
    )


def _rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError(
            f"frame must be (H, W) or (H, W, 3) uint8, got {frame.dtype} {frame.shape}"
        )
    return np.repeat(frame[..., None], 3, 2) if frame.ndim == 2 else frame


class BoxTracker:
    """Box-from-previous-mask propagation over any Segmenter (stateless ``encode`` / ``decode``,
    so a tracker shares a loaded segmenter and its encoding store with episodes).

    margin: px added around the previous mask's box (the target moves/grows between frames);
    min_area: masks smaller than this (px) count as lost; largest_component: keep the largest
    connected component of each mask (MedSAM2's CT post-processing, per slice here)."""

    def __init__(
        self, segmenter: Any, margin: float = 3.0, min_area: int = 4, largest_component: bool = True
    ) -> None:
        self.segmenter = segmenter
        self.margin = float(margin)
        self.min_area = int(min_area)
        self.largest_component = largest_component
        self._prev: np.ndarray | None = None
        self._size: tuple[int, int] | None = None

    def start(self, frame: np.ndarray, mask: np.ndarray) -> None:
        rgb = _rgb(frame)
        mask = np.asarray(mask, bool)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask must be (H, W) = {rgb.shape[:2]}, got {mask.shape}")
        if not mask.any():
            raise ValueError("start(frame, mask): the mask is empty; nothing to track")
        self._prev, self._size = mask, mask.shape

    def step(self, frame: np.ndarray) -> TrackStep:
        if self._prev is None or self._size is None:
            raise RuntimeError("step() before start(frame, mask)")
        rgb = _rgb(frame)
        if rgb.shape[:2] != self._size:
            raise ValueError(
                f"frame must be {self._size} like the start frame, got {rgb.shape[:2]}"
            )
        box = mask_box(self._prev, self.margin)
        if box is None:
            return TrackStep(self._prev, 0.0)
        encoded = self.segmenter.encode(rgb)
        pred = self.segmenter.decode(encoded, box=box, multimask_output=False)
        mask = np.asarray(pred.masks[0], bool)
        if self.largest_component and mask.any():
            from medsam_agent_rt.ops import keep_largest_component

            mask = np.asarray(keep_largest_component(mask), bool)
        if mask.sum() < self.min_area:
            self._prev = np.zeros(self._size, bool)
            return TrackStep(self._prev, 0.0)
        self._prev = mask
        return TrackStep(mask, float(pred.scores[0]))


TRACKERS = ("box", "sam2")


def tracker_factory(segmenter: Any, kind: str | None = None) -> tuple[str, Any]:
    """(kind, make) where ``make()`` returns a fresh tracker over ``segmenter``: "sam2" (SAM2's
    memory tracker; SAM2 / MedSAM2 torch segmenters, the default for them) or "box" (box from
    the previous mask; any segmenter, the default otherwise). Raises ValueError for "sam2" over
    another family or backend."""
    family = getattr(segmenter, "family", None)
    kind = kind or (
        "sam2" if family in ("sam2", "medsam2") and hasattr(segmenter, "model") else "box"
    )
    if kind not in TRACKERS:
        raise ValueError(f"tracker must be one of {TRACKERS}, got {kind!r}")
    if kind == "box":
        return kind, lambda: BoxTracker(segmenter)
    if family not in ("sam2", "medsam2") or not hasattr(segmenter, "model"):
        raise ValueError(
            "the sam2 tracker needs a SAM2 / MedSAM2 checkpoint on the torch backend as the "
            f"segmenter (got family {family!r})"
        )
    from medsam_agent_rt.segmenters.sam2.tracking import Sam2Tracker

    return kind, lambda: Sam2Tracker(segmenter.model)
