"""Image pixels <-> the model's 0..999 grid, for actions, in both directions: the one place.

``ViewGeometry`` (``protocol.view``) maps single coordinates exactly (integer arithmetic, clamping
flagged); here whole actions are mapped:

- ``to_pixels(AddBox | AddPoint | Stop, geometry) -> PixelBox | PixelPoint | None``: what the
  policy asked for, in image pixels (the episode runs it on the tool);
- ``to_grid(PixelBox | PixelPoint, geometry) -> AddBox | AddPoint``: a pixel box or click as the
  grid action the policy would emit for it (GT-driven policies, a person's action shown as grid).

A box that collapses to zero width or height after mapping (tiny image, coarse grid) is widened
by one unit, inwards at the edge, and flagged (pixels) so both directions keep x1 < x2, y1 < y2.
"""

from __future__ import annotations

from dataclasses import dataclass

from medsam_agent_rt.protocol.actions import Action, AddBox, AddPoint, Stop
from medsam_agent_rt.protocol.text import GRID_MAX
from medsam_agent_rt.protocol.view import ViewGeometry


@dataclass(frozen=True)
class PixelBox:
    """A box in image pixels (x1, y1, x2, y2; x = column). ``clamped``: any coordinate was moved to
    fit (grid out of range, letterbox padding, or a box widened to keep x1 < x2 / y1 < y2)."""

    x1: int
    y1: int
    x2: int
    y2: int
    clamped: bool = False

    def as_array(self) -> list[int]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass(frozen=True)
class PixelPoint:
    """A click in image pixels."""

    x: int
    y: int
    positive: bool
    clamped: bool = False


def _widen(a: int, b: int, top: int) -> tuple[int, int, bool]:
    """(a, b) with a < b when possible on 0..top: a collapsed pair is widened by one, inwards at
    the top edge; the flag says whether it was."""
    if a < b or top < 1:
        return a, b, False
    return (a, a + 1, True) if a + 1 <= top else (a - 1, a, True)


def to_pixels(action: Action, geometry: ViewGeometry) -> PixelBox | PixelPoint | None:
    """Map a grid action to image pixels (None for Stop). A box that collapses to zero width or
    height in pixels (tiny image, coarse grid) is widened by one pixel and flagged."""
    if isinstance(action, AddPoint):
        x, y, c = geometry.grid_to_pixel(action.x, action.y)
        return PixelPoint(x, y, action.positive, c or action.clamped)
    if isinstance(action, AddBox):
        x1, y1, c1 = geometry.grid_to_pixel(action.x1, action.y1)
        x2, y2, c2 = geometry.grid_to_pixel(action.x2, action.y2)
        clamped = c1 or c2 or action.clamped
        x1, x2, cx = _widen(x1, x2, geometry.width - 1)
        y1, y2, cy = _widen(y1, y2, geometry.height - 1)
        return PixelBox(x1, y1, x2, y2, clamped or cx or cy)
    if isinstance(action, Stop):
        return None
    raise TypeError(f"action must be AddBox, AddPoint or Stop, got {type(action).__name__}")


def to_grid(pixels: PixelBox | PixelPoint, geometry: ViewGeometry) -> AddBox | AddPoint:
    """Map a pixel box / click to the grid action for it (a box with x1 < x2, y1 < y2: one
    thinner than a grid unit is widened by one unit, inwards at the grid's edge)."""
    if isinstance(pixels, PixelPoint):
        gx, gy, _ = geometry.pixel_to_grid(pixels.x, pixels.y)
        return AddPoint(gx, gy, bool(pixels.positive))
    if isinstance(pixels, PixelBox):
        x1, y1, _ = geometry.pixel_to_grid(pixels.x1, pixels.y1)
        x2, y2, _ = geometry.pixel_to_grid(pixels.x2, pixels.y2)
        x1, x2, _ = _widen(min(x1, x2), max(x1, x2), GRID_MAX)
        y1, y2, _ = _widen(min(y1, y2), max(y1, y2), GRID_MAX)
        return AddBox(x1, y1, x2, y2)
    raise TypeError(f"pixels must be a PixelBox or a PixelPoint, got {type(pixels).__name__}")
