"""The overlay strip: every turn of an episode side by side, the image a reviewer looks at first.

Tile 0 is the 512 view the policy saw first; tile k is the overlay after the k-th action.
Each tile gets a caption band above it (white text on a dark band, Pillow's default font — no
font files or downloads), e.g. ``turn 2: +point  Dice 0.843``. Tiles run left to right and wrap
to a new row after ``max_columns``. Captions longer than a tile are cut with "...".
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsam_agent_rt.io.atomic import atomic_write_bytes
from medsam_agent_rt.io.writers import encode_png

BACKGROUND = (24, 24, 24)
TEXT = (255, 255, 255)
_TOOL_LABELS = {
    "add_bbox": "box",
    "stop_action": "stop",
    "add_positive_point": "+point",
    "add_negative_point": "-point",
}


def action_label(tool: str, point_type: str | None = None) -> str:
    """Short caption label of a tool call: "box", "+point", "-point", "stop" (others as is)."""
    if tool == "add_point":
        return "-point" if point_type == "negative" else "+point"
    return _TOOL_LABELS.get(tool, tool)


def turn_caption(turn: int, action: str | None = None, dice: float | None = None) -> str:
    """``turn 0: image``, ``turn 3: -point  Dice 0.912`` (ASCII only: the default font has a
    limited character set)."""
    text = f"turn {int(turn)}: {action if action else 'image'}"
    if dice is not None:
        text += f"  Dice {float(dice):.3f}"
    return text


def _font(tile_width: int):
    from PIL import ImageFont

    size = max(12, round(tile_width / 22))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def compose_overlay_strip(
    tiles: Sequence[np.ndarray],
    captions: Sequence[str],
    *,
    max_columns: int = 6,
    gutter: int | None = None,
) -> np.ndarray:
    """Lay ``tiles`` ((V, V, 3) uint8, all the same shape) out with their ``captions``.

    Returns (H, W, 3) uint8 with ``columns = min(n, max_columns)``,
    ``rows = ceil(n / columns)``, W = columns * V + (columns + 1) * gutter and
    H = rows * (band + V) + (rows + 1) * gutter; tile k's pixels are copied unchanged to
    row k // columns, column k % columns, below its caption band.
    """
    from PIL import Image, ImageDraw

    tiles = list(tiles)
    captions = list(captions)
    if not tiles:
        raise ValueError("tiles must hold at least one image, got none")
    if len(captions) != len(tiles):
        raise ValueError(f"captions must match tiles: {len(tiles)} tiles, {len(captions)} captions")
    if max_columns < 1:
        raise ValueError(f"max_columns must be >= 1, got {max_columns}")
    first = np.asarray(tiles[0])
    for k, tile in enumerate(tiles):
        t = np.asarray(tile)
        if t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] != 3 or t.shape != first.shape:
            raise ValueError(
                f"tiles[{k}] must be (V, V, 3) uint8 like tiles[0] {first.shape}, got "
                f"{t.ndim}-D {t.dtype} {t.shape}"
            )
    h, w = first.shape[:2]
    gutter = max(4, w // 64) if gutter is None else int(gutter)
    font = _font(w)
    ascent, descent = font.getmetrics()
    pad = max(3, (ascent + descent) // 4)
    band = ascent + descent + 2 * pad
    columns = min(len(tiles), max_columns)
    rows = math.ceil(len(tiles) / columns)
    canvas = Image.new(
        "RGB",
        (columns * w + (columns + 1) * gutter, rows * (band + h) + (rows + 1) * gutter),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(canvas)
    for k, (tile, caption) in enumerate(zip(tiles, captions)):
        x = gutter + (k % columns) * (w + gutter)
        y = gutter + (k // columns) * (band + h + gutter)
        text = _fit(draw, str(caption), font, w - 2 * pad)
        draw.text((x + pad, y + pad), text, fill=TEXT, font=font)
        canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (x, y + band))
    return np.asarray(canvas)


def write_overlay_strip(
    path: str | os.PathLike[str],
    tiles: Sequence[np.ndarray],
    captions: Sequence[str],
    *,
    max_columns: int = 6,
) -> Path:
    """Compose the strip (``compose_overlay_strip``) and write it as PNG atomically."""
    strip = compose_overlay_strip(tiles, captions, max_columns=max_columns)
    return atomic_write_bytes(path, encode_png(strip))
