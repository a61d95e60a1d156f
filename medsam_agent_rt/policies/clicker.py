"""``clicker:K``: K clicks of the interactive-segmentation simulator (ops.next_click), no box,
then stop (the RITM / SimpleClick protocol; NoC and mIoU@k baselines)."""

from __future__ import annotations

from medsam_agent_rt.policies.base import Observation, PolicyTurn, Task
from medsam_agent_rt.protocol import (
    PHRASE_FIRST_POINT,
    PHRASE_REFINE,
    PixelPoint,
    Stop,
    format_action,
    to_grid,
)


class ClickerPolicy:
    """Click k (k = 1..K) goes to the centre (farthest-from-boundary pixel) of the larger error
    region of the current mask, never on an already-clicked pixel; positive on a false negative.
    Stops after K clicks or when the mask equals the GT."""

    requires_gt = True

    def __init__(self, clicks: int = 5) -> None:
        if isinstance(clicks, bool) or not isinstance(clicks, int) or clicks < 1:
            raise ValueError(f"clicker needs K >= 1 clicks (spec 'clicker:K'), got {clicks!r}")
        self.clicks = clicks
        self.name = f"clicker:{clicks}"
        self._clicked: list[list[int]] = []

    def reset(self, task: Task) -> None:
        if task.gt_mask is None:
            raise ValueError(f"{self.name} is GT-driven: the task needs gt_mask")
        self._gt, self._geo, self._clicked = task.gt_mask, task.geometry, []

    def act(self, observation: Observation) -> PolicyTurn:
        from medsam_agent_rt import ops

        if observation.step >= self.clicks or observation.mask is None:
            return PolicyTurn(format_action(Stop()), {"reason": "clicks_done"})
        click = ops.next_click(observation.mask, self._gt, self._clicked or None)
        if click is None:
            return PolicyTurn(format_action(Stop()), {"reason": "perfect"})
        action = to_grid(PixelPoint(click.x, click.y, click.positive), self._geo)
        ex, ey, _ = self._geo.grid_to_pixel(action.x, action.y)
        self._clicked += [[click.x, click.y], [ex, ey]]
        phrase = PHRASE_FIRST_POINT if observation.step == 0 else PHRASE_REFINE
        info = {"click_px": [click.x, click.y], "distance": click.distance}
        return PolicyTurn(format_action(action, phrase), info)
