"""The model's 512x512 observation view and the ONE 0..999 grid <-> pixel mapping (PROTOCOL.md).

Geometry. An image of H rows x W columns is letterboxed into a square of side S = max(H, W)
image pixels: the image sits centred, with ``pad_x = (S - W) // 2`` columns of padding on the
left and ``pad_y = (S - H) // 2`` rows on top (odd padding puts the extra pixel right/bottom).
The grid value v in 0..999 covers that padded square, in image pixel units:

    pixel  = round_half_up(v * (S - 1) / 999) - pad          (per axis)
    grid   = round_half_up((pixel + pad) * 999 / (S - 1))

computed in exact integer arithmetic. A square image has pad = 0 and S = W, so this is the
plain ``px = round(v / 999 * (W - 1))`` of PROTOCOL.md. A grid value that lands in the padding (or a
pixel outside the image) is clamped to the nearest valid pixel and the result says so.
S = 1 (a single pixel) maps every grid value to pixel 0 and every pixel to grid 0.

Round trips (proved by the rounding bounds, property-tested in tests/protocol/test_view.py):
- pixel -> grid -> pixel is the identity when S <= 1000 (grid steps are >= 1 px apart);
- grid -> pixel -> grid is the identity when S >= 1000 (pixel steps are >= 1 grid unit apart);
- S == 1000 makes both maps the identity shifted by the padding.

The view image is the RGB image resized with Pillow's BICUBIC filter (Pillow's default for
``Image.resize``) into ``content_box`` of a black V x V canvas (V = 512). ``content_box`` =
(x0, y0, w, h) view pixels is the image rectangle [pad, pad + W) scaled by V / S with both edges
rounded half up (at least 1 px). The overlay after an action is
``ops.render_overlay(view, mask, content_box)``: pure green (0, 255, 0) at alpha 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsam_agent_rt.protocol.text import GRID_MAX

VIEW_SIZE = 512  # side of the square observation image (Qwen3-VL: 256 visual tokens)


def _round_div(num: int, den: int) -> int:
    """round_half_up(num / den) for integers num >= 0, den > 0, exactly."""
    return (2 * num + den) // (2 * den)


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ViewGeometry:
    """Where an (height, width) image sits in the square view and on the 0..999 grid.

    side: S = max(height, width); pad_x, pad_y: padding (image px) left / top of the image in the
    padded square; content_box: (x0, y0, w, h) of the image inside the view (view px).
    """

    height: int
    width: int
    view_size: int = VIEW_SIZE

    def __post_init__(self) -> None:
        object.__setattr__(self, "height", _check_size(self.height, "height"))
        object.__setattr__(self, "width", _check_size(self.width, "width"))
        object.__setattr__(self, "view_size", _check_size(self.view_size, "view_size"))

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def pad_x(self) -> int:
        return (self.side - self.width) // 2

    @property
    def pad_y(self) -> int:
        return (self.side - self.height) // 2

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        x0, w = self._content_span(self.pad_x, self.width)
        y0, h = self._content_span(self.pad_y, self.height)
        return x0, y0, w, h

    def _content_span(self, pad: int, length: int) -> tuple[int, int]:
        v, s = self.view_size, self.side
        start = _round_div(pad * v, s)
        stop = _round_div((pad + length) * v, s)
        if stop <= start:  # extreme aspect ratio: keep at least one view pixel
            start, stop = min(start, v - 1), min(start, v - 1) + 1
        return start, stop - start

    # ------------------------------------------------------------------ grid <-> pixel, one axis

    def _axis(self, axis: str) -> tuple[int, int]:
        if axis == "x":
            return self.pad_x, self.width
        if axis == "y":
            return self.pad_y, self.height
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")

    def grid_to_pixel_1d(self, v: int, axis: str) -> tuple[int, bool]:
        """Grid value -> (pixel, clamped). v outside 0..999 or landing in the padding is
        clamped to the nearest valid value (clamped=True)."""
        pad, length = self._axis(axis)
        v = int(v)
        clamped = not 0 <= v <= GRID_MAX
        v = min(max(v, 0), GRID_MAX)
        s = self.side
        px = (_round_div(v * (s - 1), GRID_MAX) if s > 1 else 0) - pad
        if px < 0 or px > length - 1:
            px, clamped = min(max(px, 0), length - 1), True
        return px, clamped

    def pixel_to_grid_1d(self, px: int, axis: str) -> tuple[int, bool]:
        """Pixel -> (grid value, clamped); pixels outside the image are clamped first."""
        pad, length = self._axis(axis)
        px = int(px)
        clamped = not 0 <= px <= length - 1
        px = min(max(px, 0), length - 1)
        s = self.side
        return (_round_div((px + pad) * GRID_MAX, s - 1) if s > 1 else 0), clamped

    # ------------------------------------------------------------------ points

    def grid_to_pixel(self, x: int, y: int) -> tuple[int, int, bool]:
        """Grid point -> (x_px, y_px, clamped)."""
        px, cx = self.grid_to_pixel_1d(x, "x")
        py, cy = self.grid_to_pixel_1d(y, "y")
        return px, py, cx or cy

    def pixel_to_grid(self, x: int, y: int) -> tuple[int, int, bool]:
        """Pixel point (x = column, y = row) -> (x_grid, y_grid, clamped)."""
        gx, cx = self.pixel_to_grid_1d(x, "x")
        gy, cy = self.pixel_to_grid_1d(y, "y")
        return gx, gy, cx or cy

    def to_dict(self) -> dict[str, int]:
        return {"height": self.height, "width": self.width, "view_size": self.view_size}


def view_geometry(image_shape: tuple[int, ...], view_size: int = VIEW_SIZE) -> ViewGeometry:
    """The geometry of an image of shape (H, W) or (H, W, C)."""
    if len(image_shape) not in (2, 3):
        raise ValueError(f"image_shape must be (H, W) or (H, W, C), got {tuple(image_shape)}")
    return ViewGeometry(int(image_shape[0]), int(image_shape[1]), view_size)


def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 from (H, W, 3), (H, W) or (H, W, 1) gray (replicated) or (H, W, 4) RGBA
    (alpha dropped). Other dtypes are refused: convert/window them first (medsam_agent_rt.io)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 RGB (H, W, 3), got dtype {a.dtype}; window or rescale it to "
            "0..255 first (medsam_agent_rt.io does this for DICOM/NIfTI/16-bit files)"
        )
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be (H, W, 3) uint8 RGB, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def render_view(image: np.ndarray, geometry: ViewGeometry | None = None) -> np.ndarray:
    """The (V, V, 3) uint8 observation image of turn 1 (see the module docstring)."""
    from PIL import Image

    rgb = as_rgb(image)
    geo = geometry or view_geometry(rgb.shape)
    if (geo.height, geo.width) != rgb.shape[:2]:
        raise ValueError(
            f"geometry is for a {geo.height}x{geo.width} image, got an image of {rgb.shape[:2]}"
        )
    x0, y0, w, h = geo.content_box
    resized = Image.fromarray(rgb, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    view = np.zeros((geo.view_size, geo.view_size, 3), np.uint8)
    view[y0 : y0 + h, x0 : x0 + w] = np.asarray(resized, np.uint8)
    return view


def render_observation(view: np.ndarray, mask: np.ndarray, geometry: ViewGeometry) -> np.ndarray:
    """The overlay image shown after an action: ``mask`` ((H, W) at image resolution) blended in
    green (0, 255, 0), alpha 0.5, over ``view``. Returns a new (V, V, 3) uint8 array."""
    from medsam_agent_rt import ops

    m = np.asarray(mask)
    if m.shape != (geometry.height, geometry.width):
        raise ValueError(
            f"mask must be (H, W) = ({geometry.height}, {geometry.width}) at image resolution, "
            f"got {m.shape}"
        )
    return ops.render_overlay(view, m, geometry.content_box)
