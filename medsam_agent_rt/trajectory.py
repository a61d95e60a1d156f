"""The record of one episode: every policy call, what was parsed and executed, the masks, scores
and timings. JSON round-trips exactly, and the chat messages the policy saw (texts and images)
are rebuilt from the record + the image, byte for byte (training reuses episodes this way).

Masks are stored as run-length encodings of the row-major flattened (H, W) mask:
``{"shape": [H, W], "counts": [n0, n1, ...]}`` with alternating runs of False and True starting
with False (n0 may be 0), summing to H * W.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.protocol import (
    Action,
    AddBox,
    Stop,
    ViewGeometry,
    as_rgb,
    build_messages,
    render_observation,
    render_view,
    to_pixels,
)
from medsam_agent_rt.protocol.messages import Message

SCHEMA_VERSION = 1
END_REASONS = ("stop", "budget", "invalid_output", "tool_error", "accepted", "cancelled",
               "turn_deadline", "episode_deadline")  # fmt: skip
# What became of one turn (source "agent": a policy call; otherwise a person's action):
#   executed      a box/point ran on the tool (mask stored)
#   stop          stop_action accepted (the episode ends)
#   refused_stop  stop_action in the first turn, refused (the question is asked again)
#   invalid       unparsable output (retried, or the episode ends with invalid_output)
#   tool_error    the tool raised on a parsed action (the episode ends with tool_error)
#   late          the answer came after a deadline (discarded; the episode ends)
#   cancelled     the episode was cancelled while the policy answered (discarded)
#   undo          a person undid the last box/click (the mask after it is stored)
#   accept        a person accepted the current mask (the episode ends with "accepted")
TURN_OUTCOMES = ("executed", "stop", "refused_stop", "invalid", "tool_error", "late",
                 "cancelled", "undo", "accept")  # fmt: skip


# ============================================================================ masks


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool/0-1 mask -> {"shape": [H, W], "counts": [...]} (see module docstring)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    flat = np.ravel(m != 0).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"shape": [int(m.shape[0]), int(m.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`rle_encode`: (H, W) bool."""
    try:
        h, w = (int(v) for v in rle["shape"])
        counts = np.asarray(rle["counts"], np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"rle must be {{'shape': [H, W], 'counts': [...]}}, got {rle!r:.80}"
        ) from exc
    if (counts < 0).any() or int(counts.sum()) != h * w:
        raise ValueError(f"rle counts must be >= 0 and sum to H * W = {h * w}, got {counts.sum()}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(h, w)


def mask_stats(
    mask: np.ndarray, gt: np.ndarray | None = None, connectivity: int = 8
) -> dict[str, Any]:
    """area (px), components (ops.label_components count) and, with a GT, iou and dice (ops)."""
    from medsam_agent_rt import ops

    m = np.asarray(mask, bool)
    out: dict[str, Any] = {
        "area": int(m.sum()),
        "components": int(ops.label_components(m, connectivity).count) if m.any() else 0,
        "iou": None,
        "dice": None,
    }
    if gt is not None:
        mm = ops.mask_metrics(m, np.asarray(gt, bool))
        out["iou"], out["dice"] = float(mm.iou[0]), float(mm.dice[0])
    return out


def image_digest(image: np.ndarray) -> str:
    """SHA-256 of the RGB image bytes and shape (identifies the image a record belongs to)."""
    rgb = as_rgb(image)
    h = hashlib.sha256(f"{rgb.shape}".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def jsonable(obj: Any) -> Any:
    """A JSON-safe copy: NumPy scalars/arrays -> Python numbers/lists, tuples -> lists, non-finite
    floats -> None, other objects -> repr."""
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return repr(obj)


def action_record(action: Action, geo: ViewGeometry) -> dict[str, Any]:
    """The record of a parsed action: name, grid and pixel coordinates, polarity, clamped flag."""
    px = to_pixels(action, geo)
    out: dict[str, Any] = {
        "name": action.name,
        "clamped": bool(action.clamped or (px is not None and px.clamped)),
    }
    if isinstance(action, AddBox):
        out["grid"], out["pixels"] = [action.x1, action.y1, action.x2, action.y2], px.as_array()
    elif not isinstance(action, Stop):
        out["grid"], out["pixels"], out["positive"] = (
            [action.x, action.y],
            [px.x, px.y],
            action.positive,
        )
    return out


# ============================================================================ records


@dataclass
class TurnRecord:
    """One policy call, or (``source`` != "agent") a person's box / click / undo / accept;
    ``index``: its place in ``EpisodeRecord.turns``. ``step``: actions executed before it (its place in the conversation);
    ``retry``: None, or why this call repeats the previous question ("invalid_output" /
    "refused_stop"); ``action``: {"name", "grid", "pixels", "positive", "clamped"} when parsed;
    ``mask``: RLE of the tool's mask after an executed action; ``prompts``: the prompts the
    chained tool state sent (points, box, mask input, multimask); timings in seconds."""

    index: int
    step: int
    text: str
    outcome: str
    retry: str | None = None
    phrase: str = ""
    parse_error: str | None = None
    parse_detail: str = ""
    repairs: list[str] = field(default_factory=list)
    action: dict[str, Any] | None = None
    tool_error: str | None = None
    tool_score: float | None = None
    prompts: dict[str, Any] | None = None  # exactly what the tool sent to the segmenter, if told
    mask: dict[str, Any] | None = None
    mask_area: int | None = None
    components: int | None = None
    iou: float | None = None
    dice: float | None = None
    timings: dict[str, float] = field(
        default_factory=lambda: {"policy": 0.0, "tool": 0.0, "render": 0.0}
    )
    info: dict[str, Any] = field(default_factory=dict)
    source: str = "agent"  # "agent": a policy call; else who applied it ("human")


@dataclass
class EpisodeRecord:
    """One episode: inputs, specs, every turn, how it ended, final mask stats and totals."""

    image_id: str
    image_shape: list[int]
    image_sha256: str
    target: str
    policy: str
    segmenter: str
    backend: str
    strategy: str
    config: dict[str, Any]
    view: dict[str, int]
    turns: list[TurnRecord] = field(default_factory=list)
    end_reason: str | None = None
    error: str | None = None  # the tool error that ended the episode, if any
    final: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # input file metadata (io.LoadedImage)
    version: int = SCHEMA_VERSION

    # ------------------------------------------------------------------ views of the turns

    @property
    def geometry(self) -> ViewGeometry:
        return ViewGeometry(**self.view)

    def executed(self) -> list[TurnRecord]:
        """The policy's executed actions, in order (a person's actions are not included)."""
        return [t for t in self.turns if t.outcome == "executed" and t.source == "agent"]

    def human(self) -> list[TurnRecord]:
        """What people applied (boxes, clicks, undos, accept), in order."""
        return [t for t in self.turns if t.source != "agent"]

    def masks(self) -> list[np.ndarray]:
        """The tool's mask after each executed action, (H, W) bool each."""
        return [rle_decode(t.mask) for t in self.executed() if t.mask is not None]

    def summarize(self, seconds: dict[str, float]) -> None:
        """Fill ``totals`` from the turns (call once the episode has ended)."""
        calls = [t for t in self.turns if t.source == "agent"]
        count = {o: sum(t.outcome == o for t in calls) for o in TURN_OUTCOMES}
        per_turn = {
            k: sum(t.timings.get(k, 0.0) for t in self.turns)
            for k in ("policy", "preview", "tool", "render", "stats")
        }
        self.totals = {
            "policy_calls": len(calls),
            "human_actions": len(self.turns) - len(calls),
            "actions": count["executed"],
            "invalid": count["invalid"],
            "refused_stops": count["refused_stop"],
            "tool_errors": count["tool_error"],
            "seconds": {**per_turn, **seconds},
        }

    # ------------------------------------------------------------------ messages

    def _images_and_texts(self, image: np.ndarray, upto: int) -> tuple[list[np.ndarray], list[str]]:
        if image_digest(image) != self.image_sha256:
            raise ValueError(
                f"image does not match the record (sha256 {self.image_sha256[:12]}..., shape "
                f"{self.image_shape}); pass the exact image the episode ran on"
            )
        geo = self.geometry
        view = render_view(image, geo)
        images, texts = [view], []
        for t in self.turns[:upto]:
            changed = t.outcome == "executed" or t.outcome == "undo"
            if changed and t.mask is None:
                raise ValueError(f"turn {t.index} has no stored mask (record_masks was off)")
            if changed and t.source == "agent":
                images.append(render_observation(view, rle_decode(t.mask), geo))
                texts.append(t.text)
            elif changed:  # a person's action: seen only through the latest overlay
                images[-1] = render_observation(view, rle_decode(t.mask), geo)
        return images, texts

    def messages(self, image: np.ndarray, turn: int) -> list[Message]:
        """The exact messages the policy call at ``turns[turn]`` received (views re-rendered from the
        stored masks; byte-identical to what the policy saw)."""
        if not 0 <= turn < len(self.turns):
            raise ValueError(f"turn must be in 0..{len(self.turns) - 1}, got {turn}")
        images, texts = self._images_and_texts(image, turn)
        return build_messages(self.target, images, texts)

    def conversation(self, image: np.ndarray) -> list[Message]:
        """The whole conversation for training: every accepted assistant text (executed actions,
        then the final stop when the episode stopped), ending with the last assistant turn."""
        images, texts = self._images_and_texts(image, len(self.turns))
        if self.end_reason == "stop" and self.turns and self.turns[-1].outcome == "stop":
            texts.append(self.turns[-1].text)
        return build_messages(self.target, images[: max(len(texts), 1)], texts)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeRecord:
        if not isinstance(data, dict) or "turns" not in data:
            raise ValueError("not an episode record: expected a JSON object with 'turns'")
        version = data.get("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"record schema version {version} is not supported (expected {SCHEMA_VERSION})"
            )
        names = {f.name for f in fields(cls)}
        turn_names = {f.name for f in fields(TurnRecord)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown episode record fields: {unknown[:5]}")
        turns = []
        for i, t in enumerate(data["turns"]):
            extra = sorted(set(t) - turn_names) if isinstance(t, dict) else ["<not an object>"]
            if extra:
                raise ValueError(f"turn {i}: unknown turn record fields: {extra[:5]}")
            turns.append(TurnRecord(**t))
        return cls(**{**data, "turns": turns})

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> EpisodeRecord:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically (temporary file + rename: no partial file on failure)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EpisodeRecord:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
