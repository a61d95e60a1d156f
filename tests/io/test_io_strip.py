"""The overlay strip: tiles copied unchanged to the documented positions, captions drawn in
their bands (legible size), wrapping to rows, and the PNG written atomically."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.io import (
    action_label,
    compose_overlay_strip,
    turn_caption,
    write_overlay_strip,
)
from medsam_agent_rt.io.strip import BACKGROUND


def _tiles(n, v=64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (v, v, 3), dtype=np.uint8) for _ in range(n)]


def _find_tiles(strip, tiles):
    """Top-left corner of each tile in the strip, found by exact search on its first row."""
    corners = []
    for t in tiles:
        hits = [
            (y, x)
            for y in range(strip.shape[0] - t.shape[0] + 1)
            for x in range(strip.shape[1] - t.shape[1] + 1)
            if (strip[y, x] == t[0, 0]).all() and np.array_equal(strip[y, x : x + t.shape[1]], t[0])
        ]
        matches = [
            (y, x)
            for y, x in hits
            if np.array_equal(strip[y : y + t.shape[0], x : x + t.shape[1]], t)
        ]
        assert len(matches) == 1
        corners.append(matches[0])
    return corners


def test_layout_and_tiles_unchanged():
    tiles = _tiles(4)
    captions = [turn_caption(0), turn_caption(1, "box", 0.8123), turn_caption(2, "+point"), ""]
    strip = compose_overlay_strip(tiles, captions, max_columns=3, gutter=5)
    corners = _find_tiles(strip, tiles)
    ys = sorted({y for y, _ in corners})
    band = ys[0] - 5
    assert band > 10
    assert corners == [
        (5 + band, 5),
        (5 + band, 74),
        (5 + band, 143),
        (5 + band + 64 + 5 + band, 5),
    ]
    assert strip.shape == (2 * (band + 64) + 3 * 5, 3 * 64 + 4 * 5, 3)
    # caption bands: text drawn where a caption is given, plain background where it is not
    for k, (y, x) in enumerate(corners):
        region = strip[y - band : y, x : x + 64]
        has_text = (region.astype(int) - BACKGROUND).any(axis=2)
        assert has_text.any() == bool(captions[k])
    # the empty slot of the second row is background
    assert (strip[corners[3][0] :, 74 + 64 :] == BACKGROUND).all()


def test_captions_differ_and_are_readable():
    tiles = _tiles(2, v=512)
    strip = compose_overlay_strip(tiles, ["turn 1: box  Dice 0.812", "turn 2: -point  Dice 0.911"])
    (y0, x0), (y1, x1) = _find_tiles(strip, tiles)
    band0 = strip[:y0, x0 : x0 + 512]
    band1 = strip[:y1, x1 : x1 + 512]
    assert not np.array_equal(band0, band1)
    rows = np.nonzero((band0 > 128).all(axis=2).any(axis=1))[0]
    cols = np.nonzero((band0 > 128).all(axis=2).any(axis=0))[0]
    assert rows.max() - rows.min() >= 14  # glyphs at least ~15 px tall on a 512 tile
    assert cols.max() - cols.min() > 150  # the caption spans a good part of the tile


def test_long_caption_is_cut_to_the_tile():
    tiles = _tiles(1, v=64)
    strip = compose_overlay_strip(tiles, ["x" * 500], gutter=4)
    ((y, x),) = _find_tiles(strip, tiles)
    band = strip[4:y, :]
    cols = np.nonzero((band > 128).all(axis=2).any(axis=0))[0]
    assert cols.max() < x + 64  # nothing drawn past the tile's right edge


def test_wraps_many_turns():
    tiles = _tiles(8, v=32, seed=1)
    strip = compose_overlay_strip(tiles, [f"turn {k}" for k in range(8)], max_columns=3)
    corners = _find_tiles(strip, tiles)
    assert len({y for y, _ in corners}) == 3 and len({x for _, x in corners}) == 3
    assert corners[3][1] == corners[0][1] and corners[3][0] > corners[2][0]


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="captions must match tiles: 2 tiles, 1 captions"):
        compose_overlay_strip(_tiles(2), ["a"])
    with pytest.raises(ValueError, match=r"tiles\[1\] must be \(V, V, 3\) uint8"):
        compose_overlay_strip([_tiles(1)[0], np.zeros((64, 64, 3))], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        compose_overlay_strip([], [])


def test_captions_and_labels():
    assert turn_caption(0) == "turn 0: image"
    assert turn_caption(3, "-point", 0.91234) == "turn 3: -point  Dice 0.912"
    assert action_label("add_bbox") == "box" and action_label("stop_action") == "stop"
    assert action_label("add_point", "positive") == "+point"
    assert action_label("add_point", "negative") == "-point"


def test_write_overlay_strip(tmp_path):
    tiles = _tiles(3)
    captions = ["turn 0: image", "turn 1: box", "turn 2: stop"]
    out = write_overlay_strip(tmp_path / "strip.png", tiles, captions)
    np.testing.assert_array_equal(
        np.asarray(Image.open(out)), compose_overlay_strip(tiles, captions)
    )
    assert [p.name for p in tmp_path.iterdir()] == ["strip.png"]
