"""``expert``: GT-driven hybrid prompting (PROTOCOL.md, "Expert trajectories").

Opening (first action), drawn per episode with probability ``box_prob``:
- box-to-point: the tight GT box, each edge moved outwards or inwards (random sign) by
  U(jitter_min, jitter_max) x the box side along that axis, clipped to the image;
- sequential-click: a positive click at the GT pixel farthest from the GT boundary
  (``ops.next_click`` on an empty prediction).
Corrections (every later turn): candidate 0 is the simulator click (``ops.next_click``: centre of
the larger error region, positive for false negatives). Each candidate is tried with
``observation.preview`` on the episode's chained tool state; it is accepted when the IoU gain is
>= ``tau``. A rejected candidate is followed by up to ``retries`` resamples drawn uniformly among
the pixels of the same error region whose boundary distance is >= ``near_max`` x its maximum
(the other region's near-max pixels when that pool is empty), never a pixel already tried or
clicked. When every candidate fails, or the mask equals the GT, the expert emits stop_action.
Texts are exactly what a trained policy emits (protocol phrases + tool call). Deterministic: the
random draws come from ``seed`` and the episode's image + GT content.

Defaults (the paper publishes none): tau 0.01, 3 retries, near_max 0.8, and the tight GT box
as the opening (box_prob 1, no jitter), so that plain ``expert`` is the evaluation upper bound
of an agent with GT access. The hybrid-prompting mix of PROTOCOL.md for training data (box_prob
0.5, jitter 5-10 % of the box side) is set explicitly by ``training.trajectories`` or by a spec
such as ``expert:box_prob=0.5,jitter_min=0.05,jitter_max=0.1``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from medsam_agent_rt.policies._gt import episode_seed, gt_box
from medsam_agent_rt.policies.base import Observation, PolicyTurn, Task
from medsam_agent_rt.protocol import (
    PHRASE_BOX,
    PHRASE_FIRST_POINT,
    PHRASE_REFINE,
    PixelBox,
    PixelPoint,
    Stop,
    format_action,
    to_grid,
)


@dataclass(frozen=True)
class ExpertConfig:
    """Parameters of the expert (see the module docstring); spec form ``expert:seed=3,tau=0.02``."""

    seed: int = 0  # random draws (opening choice, jitter, resampling)
    box_prob: float = 1.0  # probability of the box-to-point opening (else sequential-click)
    jitter_min: float = 0.0  # box edge jitter, fraction of the box side (lower bound)
    jitter_max: float = 0.0  # ... (upper bound)
    tau: float = 0.01  # minimum IoU gain to accept a correction
    retries: int = 3  # resamples after a rejected candidate before stopping
    near_max: float = 0.8  # resampling pool: distance >= near_max * max distance

    def __post_init__(self) -> None:
        if not 0.0 <= self.box_prob <= 1.0:
            raise ValueError(f"box_prob must be in [0, 1], got {self.box_prob}")
        if not 0.0 <= self.jitter_min <= self.jitter_max < 0.5:
            raise ValueError(
                "jitter must satisfy 0 <= jitter_min <= jitter_max < 0.5 (fractions of the box "
                f"side), got {self.jitter_min}, {self.jitter_max}"
            )
        if not 0.0 <= self.tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {self.tau}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {self.retries!r}")
        if not 0.0 < self.near_max <= 1.0:
            raise ValueError(f"near_max must be in (0, 1], got {self.near_max}")

    @classmethod
    def from_spec(cls, args: str) -> ExpertConfig:
        """``"seed=3,tau=0.02"`` -> ExpertConfig; unknown keys and bad values name the key."""
        types = {f.name: f.type for f in fields(cls)}
        kwargs: dict[str, object] = {}
        for item in filter(None, (a.strip() for a in args.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in types:
                raise ValueError(
                    f"expert option {item!r}: expected key=value with key in {sorted(types)}"
                )
            try:
                kwargs[key] = int(value) if types[key] == "int" else float(value)
            except ValueError as exc:
                raise ValueError(f"expert option {key}={value!r}: not a {types[key]}") from exc
        return cls(**kwargs)


class ExpertPolicy:
    """Hybrid-prompting expert over the GT mask (see the module docstring)."""

    requires_gt = True

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config or ExpertConfig()
        c, d = self.config, ExpertConfig()
        changed = [
            f"{f.name}={getattr(c, f.name)}"
            for f in fields(c)
            if getattr(c, f.name) != getattr(d, f.name)
        ]
        self.name = "expert" + (":" + ",".join(changed) if changed else "")

    def reset(self, task: Task) -> None:
        if task.gt_mask is None:
            raise ValueError(f"{self.name} is GT-driven: the task needs gt_mask")
        self._gt = np.asarray(task.gt_mask, bool)
        self._geo = task.geometry
        self._rng = episode_seed(self.config.seed, task.image, self._gt)
        self._opening = "box" if self._rng.random() < self.config.box_prob else "click"
        self._clicked: list[list[int]] = []

    # ------------------------------------------------------------------ turns

    def act(self, observation: Observation) -> PolicyTurn:
        from medsam_agent_rt import ops

        if observation.mask is None or observation.preview is None:
            raise ValueError("the expert needs observation.mask and observation.preview (GT mode)")
        if not self._gt.any():
            return PolicyTurn(format_action(Stop()), {"reason": "empty_gt"})
        if observation.step == 0:
            return self._open()
        current = observation.mask
        iou_now = ops.iou(current, self._gt)
        first = ops.next_click(current, self._gt, self._clicked or None)
        if first is None:
            return PolicyTurn(format_action(Stop()), {"reason": "perfect", "iou": iou_now})
        pools: tuple[np.ndarray, np.ndarray] | None = None
        tried: set[tuple[int, int]] = set()
        previews = 0
        candidate: tuple[int, int, bool] | None = (first.x, first.y, first.positive)
        for attempt in range(self.config.retries + 1):
            if attempt > 0:
                if pools is None:
                    pools = self._pools(current)
                candidate = self._resample(pools, first.positive, tried)
                if candidate is None:
                    break
            x, y, positive = candidate
            action = to_grid(PixelPoint(x, y, positive), self._geo)
            ex, ey, _ = self._geo.grid_to_pixel(action.x, action.y)
            tried |= {(x, y), (ex, ey)}
            gain = ops.iou(observation.preview(action), self._gt) - iou_now
            previews += 1
            if gain >= self.config.tau:
                self._clicked += [[x, y], [ex, ey]]
                info = {
                    "click_px": [x, y],
                    "iou_before": iou_now,
                    "gain": gain,
                    "tried": previews,
                }
                return PolicyTurn(format_action(action, PHRASE_REFINE), info)
        info = {"reason": "no_gain", "iou": iou_now, "tried": previews}
        return PolicyTurn(format_action(Stop()), info)

    def _open(self) -> PolicyTurn:
        from medsam_agent_rt import ops

        if self._opening == "box":
            box = self._jittered_box()
            return PolicyTurn(
                format_action(to_grid(PixelBox(*box), self._geo), PHRASE_BOX),
                {"opening": "box", "box_px": list(box)},
            )
        click = ops.next_click(np.zeros_like(self._gt), self._gt)
        action = to_grid(PixelPoint(click.x, click.y, True), self._geo)
        ex, ey, _ = self._geo.grid_to_pixel(action.x, action.y)
        self._clicked += [[click.x, click.y], [ex, ey]]
        info = {"opening": "click", "click_px": [click.x, click.y]}
        return PolicyTurn(format_action(action, PHRASE_FIRST_POINT), info)

    def _jittered_box(self) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = gt_box(self._gt)
        c, h, w = self.config, *self._gt.shape
        side = (x2 - x1 + 1, y2 - y1 + 1, x2 - x1 + 1, y2 - y1 + 1)
        mag = self._rng.uniform(c.jitter_min, c.jitter_max, 4)
        sign = self._rng.choice([-1.0, 1.0], 4)
        # outward = -sign on the low edges, +sign on the high edges (sign +1 grows the box)
        moved = np.array([x1, y1, x2, y2], float) + np.array([-1, -1, 1, 1]) * sign * mag * side
        jx1, jy1, jx2, jy2 = (int(np.floor(v + 0.5)) for v in moved)
        jx1, jx2 = max(0, min(jx1, w - 1)), max(0, min(jx2, w - 1))
        jy1, jy2 = max(0, min(jy1, h - 1)), max(0, min(jy2, h - 1))
        if jx1 >= jx2:
            jx1, jx2 = x1, x2
        if jy1 >= jy2:
            jy1, jy2 = y1, y2
        return jx1, jy1, jx2, jy2

    # ------------------------------------------------------------------ resampling

    def _pools(self, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boundary-distance maps (H, W) float32 of the false-negative and false-positive regions,
        with a 1-px zero border as in ops.next_click."""
        from medsam_agent_rt import ops

        cur = np.asarray(current, bool)
        fn = np.pad(self._gt & ~cur, 1)
        fp = np.pad(cur & ~self._gt, 1)
        return (
            ops.distance_transform(fn)[1:-1, 1:-1],
            ops.distance_transform(fp)[1:-1, 1:-1],
        )

    def _resample(
        self, pools: tuple[np.ndarray, np.ndarray], positive: bool, tried: set[tuple[int, int]]
    ) -> tuple[int, int, bool] | None:
        """A uniform draw among the near-maximum pixels of the winning region (then the other)."""
        blocked = tried | {(x, y) for x, y in self._clicked}
        for pos in (positive, not positive):
            d = pools[0] if pos else pools[1]
            top = float(d.max(initial=0.0))
            if top <= 0.0:
                continue
            ys, xs = np.nonzero(d >= self.config.near_max * top)
            keep = [i for i in range(len(xs)) if (int(xs[i]), int(ys[i])) not in blocked]
            if keep:
                i = keep[int(self._rng.integers(len(keep)))]
                return int(xs[i]), int(ys[i]), pos
        return None
