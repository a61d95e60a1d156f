"""Running a tracker through a volume (forward then backward from a key slice) or a stream, and
3-D Dice."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from medsam_agent_rt.propagation.tracker import Tracker, TrackStep


def propagate_volume(
    volume: np.ndarray,
    key_index: int,
    key_mask: np.ndarray,
    make_tracker: Callable[[], Tracker],
    stop_when_lost: bool = True,
    reprompt: Callable[[int, np.ndarray], np.ndarray | None] | None = None,
    min_score: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """volume (D, H, W) or (D, H, W, 3) uint8; key_mask (H, W) bool on slice ``key_index``.
    A fresh tracker goes forward (key+1 .. D-1), another backward (key-1 .. 0). Where a step's
    score is <= ``min_score`` (0: lost), ``reprompt(index, slice)`` (e.g. an agent episode) may
    return a new mask for that slice: it is kept and the tracker restarts from it; None (or no
    reprompt) stops that direction when ``stop_when_lost``. Returns the 3-D mask (D, H, W) bool
    and per-slice scores (D,) float32 (1 on the key and re-prompted slices, 0 where lost)."""
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4) or volume.dtype != np.uint8:
        raise ValueError(f"volume must be (D, H, W[, 3]) uint8, got {volume.dtype} {volume.shape}")
    d = volume.shape[0]
    if not 0 <= key_index < d:
        raise ValueError(f"key_index must be in [0, {d}), got {key_index}")
    out = np.zeros((d, *volume.shape[1:3]), bool)
    scores = np.zeros(d, np.float32)
    out[key_index], scores[key_index] = np.asarray(key_mask, bool), 1.0
    for order in (range(key_index + 1, d), range(key_index - 1, -1, -1)):
        if len(order) == 0:
            continue
        tracker = make_tracker()
        tracker.start(volume[key_index], out[key_index])
        for i in order:
            step = tracker.step(volume[i])
            out[i], scores[i] = step.mask, step.score
            if step.score <= min_score and reprompt is not None:
                fresh = reprompt(i, volume[i])
                if fresh is not None and np.asarray(fresh).any():
                    out[i], scores[i] = np.asarray(fresh, bool), 1.0
                    tracker.start(volume[i], out[i])
                    continue
            if stop_when_lost and step.score == 0.0:
                break
    return out, scores


def track_stream(
    frames: Iterable[np.ndarray], first_mask: np.ndarray, tracker: Tracker
) -> Iterator[TrackStep]:
    """Streaming: the tracker starts on the first frame with ``first_mask`` and yields one
    TrackStep per following frame (a device's frame loop can call ``tracker.step`` directly)."""
    it = iter(frames)
    tracker.start(next(it), first_mask)
    for frame in it:
        yield tracker.step(frame)


def dice_3d(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two (D, H, W) masks over the whole volume (1.0 when both are empty)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    denom = int(pred.sum()) + int(gt.sum())
    return 1.0 if denom == 0 else 2.0 * int((pred & gt).sum()) / denom


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, np.ones((3,) * mask.ndim, bool), border_value=0)


def nsd_3d(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
    tolerance: float = 2.0,
) -> float:
    """Normalised surface Dice at ``tolerance`` mm: the fraction of surface voxels (26-connected
    boundary voxels of both masks) lying within ``tolerance`` of the other mask's surface,
    distances in mm with ``spacing`` (z, y, x). Voxel-count version (no surfel areas); 1.0 when
    both are empty, 0.0 when exactly one is. Needs scipy."""
    from scipy import ndimage

    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    if not pred.any() and not gt.any():
        return 1.0
    if not pred.any() or not gt.any():
        return 0.0
    sp, sg = _surface(pred), _surface(gt)
    d_to_g = ndimage.distance_transform_edt(~sg, sampling=spacing)
    d_to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    close = int((d_to_g[sp] <= tolerance).sum()) + int((d_to_p[sg] <= tolerance).sum())
    return close / float(sp.sum() + sg.sum())
