"""Zoom-in for corrective clicks: run a correction on a crop around the object.

A SAM-family model sees the whole image at its input size (256 px for LiteMedSAM), so a 20-px
adrenal gland of a 512-px CT slice spans 10 model pixels and a click can move its mask only as
finely as that. Interactive-segmentation models therefore refine on a crop (RITM's "ZoomIn",
FocalClick's focus crop): once a mask exists, the correction runs on a square crop around the
object, the whole mask, the box and every click, enlarged by ``expansion``, encoded at full
model resolution. The box step (the first turn) always sees the whole image, and an episode
without a box never zooms: the box is what says where the object ends (a crop around a first
click's partial mask can cut the target off; measured in the README).

Frames are rectangles of the ORIGINAL image, ``Frame(x0, y0, w, h)`` px; ``None`` stands for the
whole image. Low-res logits (h_lr, w_lr) always belong to one frame: the model input frame of
that rectangle (resized per ``Preprocessing``, padded bottom/right to S) at h_lr x w_lr.
``resample_logits`` moves them between frames (bilinear, in original-image coordinates), so the
previous mask still goes in as ``mask_input`` after the crop changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsam_agent_rt.segmenters.base import Preprocessing


@dataclass(frozen=True)
class Frame:
    """A rectangle of the original image: top-left (x0, y0) and size (w, h), integer px."""

    x0: int
    y0: int
    w: int
    h: int

    @property
    def window(self) -> tuple[slice, slice]:
        """``array[frame.window]``: the (rows, cols) of an (H, W, ...) image array it covers."""
        return slice(self.y0, self.y0 + self.h), slice(self.x0, self.x0 + self.w)

    def contains(self, x1: float, y1: float, x2: float, y2: float) -> bool:
        """Whether the box x1, y1, x2, y2 (px, inclusive) lies inside this frame."""
        return (
            x1 >= self.x0
            and y1 >= self.y0
            and x2 <= self.x0 + self.w - 1
            and (y2 <= self.y0 + self.h - 1)
        )


@dataclass(frozen=True)
class ZoomConfig:
    """When and how far a correction zooms in.

    expansion: crop side / longer side of the region (the bbox of mask, box and clicks);
    min_gain: zoom only when the crop is at least this many times smaller than the image's
    longer side (a smaller gain is not worth one more image-encoder run);
    max_gain: the crop is never smaller than longer side / max_gain (limits upsampling);
    """

    expansion: float = 4.0  # selected on the realpack val splits + held-out phantoms (README)
    min_gain: float = 1.5
    max_gain: float = 8.0

    def __post_init__(self) -> None:
        if not self.expansion >= 1.0:
            raise ValueError(f"zoom expansion must be >= 1, got {self.expansion}")
        if not 1.0 <= self.min_gain <= self.max_gain:
            raise ValueError(
                f"zoom gains must satisfy 1 <= min_gain <= max_gain, got {self.min_gain}, "
                f"{self.max_gain}"
            )

    @classmethod
    def from_spec(cls, spec: str) -> ZoomConfig | None:
        """``"off"`` -> None; ``"on"`` -> defaults; ``"expansion=2,min_gain=1.5"`` -> those."""
        spec = spec.strip()
        if spec in ("off", "none", "0"):
            return None
        if spec in ("on", "", "1"):
            return cls()
        kwargs: dict[str, float] = {}
        names = ("expansion", "min_gain", "max_gain")
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in names:
                raise ValueError(
                    f"zoom option {item!r}: expected 'on', 'off' or key=value with key in {names}"
                )
            try:
                kwargs[key.strip()] = float(value)
            except ValueError:
                raise ValueError(f"zoom option {item!r}: {value!r} is not a number") from None
        return cls(**kwargs)


def region_bbox(
    mask: np.ndarray, box: np.ndarray | None, points: np.ndarray | None
) -> tuple[float, float, float, float] | None:
    """(x1, y1, x2, y2) px of mask (H, W) bool, box (4,) and points (N, 2) together; None if
    all are empty."""
    xs: list[float] = []
    ys: list[float] = []
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size:
        cols = np.flatnonzero(mask.any(axis=0))
        xs += [float(cols[0]), float(cols[-1])]
        ys += [float(rows[0]), float(rows[-1])]
    if box is not None:
        xs += [float(box[0]), float(box[2])]
        ys += [float(box[1]), float(box[3])]
    if points is not None and len(points):
        xs += [float(points[:, 0].min()), float(points[:, 0].max())]
        ys += [float(points[:, 1].min()), float(points[:, 1].max())]
    if not xs:
        return None
    return min(xs), min(ys), max(xs), max(ys)


def zoom_frame(
    region: tuple[float, float, float, float], image_size: tuple[int, int], config: ZoomConfig
) -> Frame | None:
    """The square crop (clipped to the image) around ``region`` for an (H, W) image, or None when
    it would not zoom by at least ``config.min_gain``."""
    h, w = image_size
    x1, y1, x2, y2 = region
    longer = max(h, w)
    side = config.expansion * max(x2 - x1 + 1, y2 - y1 + 1)
    side = max(side, longer / config.max_gain)
    if longer / side < config.min_gain:
        return None
    side_x = int(min(np.ceil(side), w))
    side_y = int(min(np.ceil(side), h))
    cx, cy = (x1 + x2 + 1) / 2, (y1 + y2 + 1) / 2
    x0 = int(np.clip(np.floor(cx - side_x / 2), 0, w - side_x))
    y0 = int(np.clip(np.floor(cy - side_y / 2), 0, h - side_y))
    return Frame(x0, y0, side_x, side_y)


def _lowres_axis(frame_len: int, resized_len: int, origin: int, n_lr: int, s: int) -> np.ndarray:
    """Original-image coordinate of the centre of each of n_lr low-res cells along one axis."""
    return origin + (np.arange(n_lr) + 0.5) * (s / n_lr) * (frame_len / resized_len) - 0.5


def resample_logits(
    logits: np.ndarray,
    src: Frame,
    dst: Frame,
    pre: Preprocessing,
    fill: float | None = None,
) -> np.ndarray:
    """Low-res logits (h_lr, w_lr) of frame ``src`` -> the same grid for frame ``dst``.

    Each dst cell takes the bilinear value of the src logits at its centre (original-image
    coordinates); cells outside src's image area, or in dst's padding, get ``fill`` (default:
    min(src logits, -1), "background")."""
    x = np.asarray(logits, np.float32)
    n_y, n_x = x.shape
    s = pre.input_size
    fill_value = float(min(float(x.min()), -1.0)) if fill is None else float(fill)
    src_rh, src_rw = pre.resized_size((src.h, src.w))
    dst_rh, dst_rw = pre.resized_size((dst.h, dst.w))
    # dst cell centres in original-image px
    gy = _lowres_axis(dst.h, dst_rh, dst.y0, n_y, s)
    gx = _lowres_axis(dst.w, dst_rw, dst.x0, n_x, s)
    # ... as fractional src cell indices
    fy = (gy + 0.5 - src.y0) * (src_rh / src.h) * (n_y / s) - 0.5
    fx = (gx + 0.5 - src.x0) * (src_rw / src.w) * (n_x / s) - 0.5
    edge_y = src_rh * n_y / s - 0.5  # src image area, fractional cell index of its far edge
    edge_x = src_rw * n_x / s - 0.5
    ok_y = (fy >= -0.5) & (fy <= edge_y) & ((np.arange(n_y) + 0.5) * s / n_y <= dst_rh)
    ok_x = (fx >= -0.5) & (fx <= edge_x) & ((np.arange(n_x) + 0.5) * s / n_x <= dst_rw)
    fy = np.clip(fy, 0.0, np.ceil(src_rh * n_y / s) - 1)
    fx = np.clip(fx, 0.0, np.ceil(src_rw * n_x / s) - 1)
    y0 = np.floor(fy).astype(np.int64)
    x0 = np.floor(fx).astype(np.int64)
    y1 = np.minimum(y0 + 1, n_y - 1)
    x1 = np.minimum(x0 + 1, n_x - 1)
    wy = (fy - y0)[:, None].astype(np.float32)
    wx = (fx - x0)[None, :].astype(np.float32)
    top = x[y0][:, x0] * (1 - wx) + x[y0][:, x1] * wx
    bottom = x[y1][:, x0] * (1 - wx) + x[y1][:, x1] * wx
    out = top * (1 - wy) + bottom * wy
    out[~ok_y, :] = fill_value
    out[:, ~ok_x] = fill_value
    return out.astype(np.float32)


def crop_image(image: np.ndarray, frame: Frame) -> np.ndarray:
    """The (h, w, 3) pixels of ``frame`` (a contiguous copy, so the store keys it by content)."""
    return np.ascontiguousarray(image[frame.window])
