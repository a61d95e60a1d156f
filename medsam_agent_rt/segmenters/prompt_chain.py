"""The tool side of one episode (PROTOCOL.md): one chained prompt state over one Segmenter.

The image is encoded once (``segmenter.encode`` at construction, through the segmenter's shared
store; later turns only run ``segmenter.decode`` against this chain's own ``Encoded``, so any
number of chains may share one segmenter, interleaved or in threads).
Each action (a box or a click) builds the prompts the carrying STRATEGY prescribes, runs the
segmenter, keeps one mask and becomes the new state:

- ``"newest_click+prev_logits"`` (the MedSAM-Agent authors): only the newest prompt plus the
  previous turn's low-res logits as ``mask_input`` — the box is kept only until a mask exists
  (a box action sends that box; a click sends just that click);
- ``"box+newest_click+prev_logits"``: the current box, the newest click (the last one made, also
  when the action is a new box), the previous logits;
- ``"box+all_clicks+prev_logits"``: the current box, every click so far, the previous logits;
- ``"box+all_clicks"``: the current box and every click so far, no mask input.

Any strategy may end in ``+zoom`` (``+zoom:expansion=2,min_gain=1.5``, ``segmenters.zoom``):
a click made once a mask AND a box exist then runs on a square crop around the mask, box and
clicks, encoded at the model's full input size (RITM's ZoomIn); the previous logits are
resampled into the crop's frame and the crop's mask is pasted back into the image. Box steps see
the whole image. (Zoom runs on the host: a chain kept ``on_device`` does not zoom.)

A new box replaces the old one (clicks are kept). The first prompt of an episode asks for
multimask output when the family's ``multimask_first`` says so and keeps the highest-scoring
mask; later prompts ask for a single mask. Masks are the logits binarised at > 0.

``preview_box`` / ``preview_point`` run a step WITHOUT changing the state (the expert policy's
ΔIoU acceptance tries candidates); ``commit(step)`` adopts a preview; ``add_box`` / ``add_point``
do both; ``undo()`` returns to the state before the last committed step. Bad prompts raise
ValueError from the segmenter and leave the state unchanged.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field, replace
from typing import Any

import numpy as np

from medsam_agent_rt.segmenters.base import Segmenter
from medsam_agent_rt.segmenters.families import FAMILIES
from medsam_agent_rt.segmenters.zoom import (
    Frame,
    ZoomConfig,
    crop_image,
    region_bbox,
    resample_logits,
    zoom_frame,
)
from medsam_agent_rt.transfers import to_host

STRATEGIES = (
    "newest_click+prev_logits",
    "box+newest_click+prev_logits",
    "box+all_clicks+prev_logits",
    "box+all_clicks",
)
ZOOM_SUFFIX = "+zoom"


def parse_strategy(strategy: str) -> tuple[str, ZoomConfig | None]:
    """``"box+all_clicks+prev_logits+zoom:expansion=2"`` -> (base strategy, its ZoomConfig);
    no ``+zoom`` suffix -> (strategy, None). A clear ValueError for anything else."""
    base, sep, zoom_spec = strategy.partition(ZOOM_SUFFIX)
    if base not in STRATEGIES or (sep and zoom_spec and not zoom_spec.startswith(":")):
        raise ValueError(
            f"strategy must be one of {', '.join(STRATEGIES)}, optionally followed by "
            f"'{ZOOM_SUFFIX}' or '{ZOOM_SUFFIX}:key=value,...'; got {strategy!r}"
        )
    if not sep:
        return base, None
    return base, ZoomConfig.from_spec(zoom_spec[1:] or "on")


@dataclass(frozen=True)
class SentPrompts:
    """Exactly what one step sent: point_coords (N, 2) float px and point_labels (N,) int or
    None, box (4,) float px or None (original-image px; a zoomed step shifted them into its
    ``StepResult.frame``), whether the previous low-res logits went in as mask_input,
    and the multimask flag."""

    point_coords: np.ndarray | None
    point_labels: np.ndarray | None
    box: np.ndarray | None
    used_mask_input: bool
    multimask_output: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "point_coords": None if self.point_coords is None else self.point_coords.tolist(),
            "point_labels": None if self.point_labels is None else self.point_labels.tolist(),
            "box": None if self.box is None else self.box.tolist(),
            "used_mask_input": self.used_mask_input,
            "multimask_output": self.multimask_output,
        }


@dataclass(frozen=True)
class _State:
    box: np.ndarray | None = None
    clicks: tuple[tuple[float, float, int], ...] = ()
    logits: np.ndarray | None = None  # (h, w) float32 low-res logits of the kept mask
    mask: np.ndarray | None = None
    steps: int = 0
    frame: Frame | None = None  # the crop the logits belong to (None: the whole image)


@dataclass(frozen=True)
class StepResult:
    """One step: action "box" | "point"; mask (H, W) bool; score (the kept mask's predicted
    IoU); low_res_logits (h, w) float32; prompts sent; mask_index among the returned masks;
    the strategy used; committed tells whether it became the episode state; frame: the crop
    the step ran on and its low_res_logits belong to (``segmenters.zoom.Frame``; None: the
    whole image)."""

    action: str
    mask: np.ndarray
    score: float
    low_res_logits: np.ndarray
    prompts: SentPrompts
    mask_index: int
    strategy: str
    committed: bool = False
    frame: Frame | None = None
    _base: _State = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    _next: _State = field(default=None, repr=False, compare=False)  # type: ignore[assignment]


class PromptChain:
    """Chained prompt state of one episode over ``segmenter`` for ``image`` (H, W, 3) uint8.

    strategy: one of STRATEGIES (default: the segmenter family's measured default);
    multimask_first: multimask output on the first prompt (default: the family's setting);
    on_device: on a CUDA segmenter (``segmenter.on_device``), keep the low-res logits and the
    masks on the device (StepResult.mask / low_res_logits are then torch CUDA tensors).
    """

    def __init__(
        self,
        segmenter: Segmenter,
        image: np.ndarray,
        strategy: str | None = None,
        multimask_first: bool | None = None,
        on_device: bool = False,
    ) -> None:
        spec = FAMILIES.get(getattr(segmenter, "family", ""), None)
        if strategy is None:
            strategy = spec.default_strategy if spec else "box+all_clicks+prev_logits"
        self._base_strategy, self.zoom = parse_strategy(strategy)
        if multimask_first is None:
            multimask_first = spec.multimask_first if spec else True
        self.segmenter = segmenter
        self.strategy = strategy
        self.multimask_first = bool(multimask_first)
        self.on_device = bool(on_device) and bool(getattr(segmenter, "on_device", False))
        if self.on_device:
            self.zoom = None  # the crop logic runs on host arrays
        self._image = image
        self.encoded = segmenter.encode(image)
        self._crops: dict[Frame, Any] = {}  # zoom crops encoded so far in this episode
        self.image_size: tuple[int, int] = tuple(self.encoded.original_size)
        self._state = _State()
        self.history: list[StepResult] = []

    # ------------------------------------------------------------------ state
    @property
    def box(self) -> np.ndarray | None:
        return None if self._state.box is None else self._state.box.copy()

    @property
    def clicks(self) -> list[tuple[float, float, bool]]:
        """[(x, y, positive), ...] in order."""
        return [(x, y, bool(lab)) for x, y, lab in self._state.clicks]

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: the current mask (empty before the first step)."""
        if self._state.mask is None:
            return np.zeros(self.image_size, np.bool_)
        return self._state.mask

    @property
    def low_res_logits(self) -> np.ndarray | None:
        """(h, w) float32 logits of the current mask, in the frame ``logits_frame``."""
        return self._state.logits

    @property
    def logits_frame(self) -> Frame | None:
        """The zoom crop the current logits belong to (None: the whole image)."""
        return self._state.frame

    @property
    def num_steps(self) -> int:
        return self._state.steps

    # ------------------------------------------------------------------ steps
    def _prompts(self, base: _State, action: str, nxt: _State):
        """(points, labels, box, mask_input) for the step from ``base`` to ``nxt``."""
        has_mask = base.logits is not None
        clicks = list(nxt.clicks)
        if self._base_strategy == "newest_click+prev_logits":
            box = nxt.box if action == "box" else None
            sent = clicks[-1:] if action == "point" else []
            use_logits = has_mask
        elif self._base_strategy == "box+newest_click+prev_logits":
            box, sent, use_logits = nxt.box, clicks[-1:], has_mask
        elif self._base_strategy == "box+all_clicks+prev_logits":
            box, sent, use_logits = nxt.box, clicks, has_mask
        else:  # "box+all_clicks"
            box, sent, use_logits = nxt.box, clicks, False
        pts = np.array([[x, y] for x, y, _ in sent], np.float64).reshape(-1, 2) if sent else None
        labs = np.array([lab for _, _, lab in sent], np.int32) if sent else None
        mask_input = base.logits[None] if use_logits else None
        return pts, labs, box, mask_input

    def _frame(self, base: _State, action: str, nxt: _State) -> Frame | None:
        """The crop this step runs on (None: the whole image); see ``segmenters.zoom``."""
        if self.zoom is None or action != "point" or base.mask is None or nxt.box is None:
            return None  # without a box the mask's extent is a guess: a crop could cut it off
        clicks = np.array([[x, y] for x, y, _ in nxt.clicks], np.float64).reshape(-1, 2)
        h, w = self.image_size
        if ((clicks < 0) | (clicks > [w - 1, h - 1])).any():
            return None  # the segmenter's own error names the click in image pixels
        region = region_bbox(np.asarray(base.mask, bool), nxt.box, clicks)
        if region is None:
            return None
        # a box may end on the image's far edge (x2 == W); no crop pixel lies beyond W - 1
        region = (*np.maximum(region[:2], 0.0), min(region[2], w - 1.0), min(region[3], h - 1.0))
        if base.frame is not None and base.frame.contains(*region):
            return base.frame  # the crop still holds everything: no new encoding
        return zoom_frame(region, self.image_size, self.zoom)

    def _encoded(self, frame: Frame | None) -> Any:
        if frame is None:
            return self.encoded
        if frame not in self._crops:
            # kept by this chain only: crops must not evict the images other episodes share
            self._crops[frame] = self.segmenter.encode(crop_image(self._image, frame), keep=False)
        return self._crops[frame]

    def _full(self) -> Frame:
        h, w = self.image_size
        return Frame(0, 0, w, h)

    def _step(self, action: str, nxt: _State) -> StepResult:
        base = self._state
        pts, labs, box, mask_input = self._prompts(base, action, nxt)
        multimask = self.multimask_first and base.steps == 0
        frame = self._frame(base, action, nxt)
        if mask_input is not None and frame != base.frame:
            mask_input = resample_logits(
                mask_input[0],
                base.frame or self._full(),
                frame or self._full(),
                self.segmenter.preprocessing,
            )[None]
        pts_in, box_in = pts, box
        if frame is not None:
            shift = np.array([frame.x0, frame.y0], np.float64)
            pts_in = None if pts is None else pts - shift
            if box is not None:
                lo, hi = shift, shift + [frame.w - 1, frame.h - 1]
                box_in = np.concatenate([np.clip(box[:2], lo, hi), np.clip(box[2:], lo, hi)])
                box_in = box_in - np.concatenate([shift, shift])
        pred = self.segmenter.decode(
            self._encoded(frame),
            point_coords=pts_in,
            point_labels=labs,
            box=box_in,
            mask_input=mask_input,
            multimask_output=multimask,
            **({"on_device": True} if self.on_device else {}),
        )
        scores = np.asarray(to_host(pred.scores), np.float32)  # the choice is made on the host
        idx = int(np.argmax(scores)) if multimask else 0
        logits, mask = pred.low_res_logits[idx], pred.masks[idx]  # device tensors on_device
        if not self.on_device:
            logits, mask = np.asarray(logits, np.float32), np.asarray(mask, np.bool_)
        if frame is not None:
            full = np.zeros(self.image_size, np.bool_)
            full[frame.window] = mask
            mask = full
        done = _State(nxt.box, nxt.clicks, logits, mask, base.steps + 1, frame)
        sent = SentPrompts(
            None if pts is None else pts.copy(),
            None if labs is None else labs.copy(),
            None if box is None else np.asarray(box, np.float64).copy(),
            mask_input is not None,
            multimask,
        )
        return StepResult(
            action,
            mask,
            float(scores[idx]),
            logits,
            sent,
            idx,
            self.strategy,
            False,
            frame,
            base,
            done,
        )

    def preview_box(self, xyxy_px: Any) -> StepResult:
        """The step a box (x1, y1, x2, y2) px would give, without changing the state."""
        box = np.asarray(xyxy_px, np.float64).reshape(-1)
        if box.shape != (4,):
            raise ValueError(f"box must be 4 numbers x1, y1, x2, y2 (px), got {np.shape(xyxy_px)}")
        return self._step("box", replace(self._state, box=box))

    def preview_point(self, xy_px: Any, positive: bool) -> StepResult:
        """The step a click at (x, y) px would give, without changing the state."""
        xy = np.asarray(xy_px, np.float64).reshape(-1)
        if xy.shape != (2,):
            raise ValueError(f"point must be 2 numbers x, y (px), got {np.shape(xy_px)}")
        s = self._state
        click = (float(xy[0]), float(xy[1]), 1 if positive else 0)
        return self._step("point", replace(s, clicks=(*s.clicks, click)))

    def commit(self, step: StepResult) -> StepResult:
        """Adopt a preview of the CURRENT state as the new state; returns it marked committed."""
        if step._base is not self._state:
            raise ValueError("commit(step): the step was not previewed from the current state")
        self._state = step._next
        done = StepResult(
            step.action,
            step.mask,
            step.score,
            step.low_res_logits,
            step.prompts,
            step.mask_index,
            step.strategy,
            True,
            step.frame,
            step._base,
            step._next,
        )
        self.history.append(done)
        return done

    def undo(self) -> StepResult | None:
        """Return to the state before the last committed step; returns that step (None when
        there is nothing to undo)."""
        if not self.history:
            return None
        step = self.history.pop()
        self._state = step._base
        return step

    def add_box(self, xyxy_px: Any) -> StepResult:
        """Run and commit a box step (a new box replaces the old one)."""
        return self.commit(self.preview_box(xyxy_px))

    def add_point(self, xy_px: Any, positive: bool) -> StepResult:
        """Run and commit a click step."""
        return self.commit(self.preview_point(xy_px, positive))

    def to_record(self) -> dict[str, Any]:
        """JSON-able summary for the trajectory: strategy, multimask rule and each step."""
        return {
            "strategy": self.strategy,
            "multimask_first": self.multimask_first,
            "segmenter": {
                "family": getattr(self.segmenter, "family", None),
                "backend": getattr(self.segmenter, "backend", None),
            },
            "steps": [
                {
                    "action": s.action,
                    "score": s.score,
                    "mask_index": s.mask_index,
                    "mask_area": int(s.mask.sum()),
                    "prompts": s.prompts.to_dict(),
                    "frame": None if s.frame is None else list(astuple(s.frame)),
                }
                for s in self.history
            ],
        }
