"""``oracle-box``: the tight GT bounding box once, then stop (the paper's oracle baseline)."""

from __future__ import annotations

from medsam_agent_rt.policies._gt import gt_box
from medsam_agent_rt.policies.base import Observation, PolicyTurn, Task
from medsam_agent_rt.protocol import PixelBox, Stop, format_action, to_grid


class OracleBoxPolicy:
    """Turn 1: ``add_bbox`` of the GT box (tight, no jitter); afterwards ``stop_action``. An
    empty GT gets stop_action right away (refused once by the session, then accepted: empty mask).
    """

    name = "oracle-box"
    requires_gt = True

    def __init__(self) -> None:
        self._box = None

    def reset(self, task: Task) -> None:
        if task.gt_mask is None:
            raise ValueError("oracle-box is GT-driven: the task needs gt_mask")
        px = gt_box(task.gt_mask)
        self._box = None if px is None else to_grid(PixelBox(*px), task.geometry)
        self._px = px

    def act(self, observation: Observation) -> PolicyTurn:
        if observation.step == 0 and self._box is not None:
            return PolicyTurn(format_action(self._box), {"gt_box_px": list(self._px)})
        return PolicyTurn(format_action(Stop()))
