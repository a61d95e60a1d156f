"""Cheap stand-ins for the adversarial tests: a geometric segmentation tool (the mask is the
filled box, clicks add / remove a 3-px square), image and mask files on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Step:
    mask: np.ndarray
    score: float = 0.5
    prompts: dict = field(default_factory=dict)


class BoxTool:
    """The chained tool state of one episode (``episode_tool.ToolState``), pixel coordinates."""

    strategy = "box+all_clicks"
    backend = "fake"

    def __init__(self, image: np.ndarray) -> None:
        self.h, self.w = image.shape[:2]
        self.mask = np.zeros((self.h, self.w), bool)

    def _box(self, box) -> np.ndarray:
        x1, y1, x2, y2 = (int(v) for v in box)
        m = np.zeros((self.h, self.w), bool)
        m[y1 : y2 + 1, x1 : x2 + 1] = True
        return m

    def _point(self, xy, positive) -> np.ndarray:
        x, y = int(xy[0]), int(xy[1])
        m = self.mask.copy()
        m[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = bool(positive)
        return m

    def add_box(self, box):
        self.mask = self._box(box)
        return Step(self.mask.copy())

    def add_point(self, xy, positive):
        self.mask = self._point(xy, positive)
        return Step(self.mask.copy())

    def preview_box(self, box):
        return Step(self._box(box))

    def preview_point(self, xy, positive):
        return Step(self._point(xy, positive))


class BoxToolFactory:
    """image -> BoxTool (what ``Episode`` accepts as a tool); counts the episodes."""

    spec = "fake-box"

    def __init__(self) -> None:
        self.episodes = 0

    def __call__(self, image: np.ndarray) -> BoxTool:
        self.episodes += 1
        return BoxTool(image)


def write_case(folder: Path, h: int = 48, w: int = 64) -> tuple[Path, Path]:
    """(image.png, gt.png): a noisy grey image and a rectangular GT mask."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    gt = np.zeros((h, w), np.uint8)
    gt[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    Image.fromarray(img).save(folder / "image.png")
    Image.fromarray(gt).save(folder / "gt.png")
    return folder / "image.png", folder / "gt.png"
