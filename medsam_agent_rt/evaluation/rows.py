"""One sample -> one result row: run the episode through ``episode.Episode`` and keep what the
aggregates, the report and the gallery need (see ``evaluation.metrics`` for the fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medsam_agent_rt.evaluation.datasets import SampleRef
from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER


def action_labels(record: Any) -> list[str]:
    """Labels of the executed actions of an EpisodeRecord: "box", "+point", "-point"."""
    from medsam_agent_rt.io.strip import action_label

    out = []
    for t in record.executed():
        a = t.action or {}
        polarity = None if "positive" not in a else ("positive" if a["positive"] else "negative")
        out.append(action_label(a.get("name", "?"), polarity))
    return out


def episode_row(ref: SampleRef, record: Any, keep_record: bool = True) -> dict[str, Any]:
    """The row of an evaluated sample from its EpisodeRecord."""
    ex = record.executed()
    seconds = record.totals.get("seconds", {})
    return {
        **ref.info(),
        "skipped": None,
        "dice": record.final["dice"],
        "iou": record.final["iou"],
        "round_dice": [t.dice for t in ex],
        "round_iou": [t.iou for t in ex],
        "actions": action_labels(record),
        "end_reason": record.end_reason,
        "error": record.error,
        "calls": record.totals.get("policy_calls", len(record.turns)),
        "invalid": record.totals.get("invalid", 0),
        "refused_stops": record.totals.get("refused_stops", 0),
        "policy": record.policy,
        "segmenter": record.segmenter,
        "backend": record.backend,
        "strategy": record.strategy,
        "seconds": {k: float(v) for k, v in seconds.items()},
        "record": record.to_dict() if keep_record else None,
    }


def skipped_row(ref: SampleRef, reason: str, error: str | None = None) -> dict[str, Any]:
    return {**ref.info(), "skipped": reason, "error": error}


@dataclass
class EpisodeRunner:
    """Runs samples with one policy over one segmenter; picklable before ``setup`` (workers
    build their own segmenter and policy once). ``segmenter``: a spec for ``build_segmenter``
    or a ready Segmenter (in-process only); ``policy``: a spec for ``build_policy`` or a ready
    Policy (in-process only)."""

    policy: Any
    segmenter: Any = DEFAULT_SEGMENTER
    backend: str = "torch"
    device: str = "cpu"
    strategy: str | None = None
    max_turns: int = 5
    keep_records: bool = True
    _episode: Any = field(default=None, repr=False)

    def setup(self) -> None:
        if self._episode is not None:
            return
        from medsam_agent_rt.episode import Episode
        from medsam_agent_rt.policies import build_policy
        from medsam_agent_rt.session_config import SessionConfig

        policy = build_policy(self.policy)  # first: a bad spec fails before a model loads
        seg = self.segmenter
        spec = seg if isinstance(seg, str) else None
        if isinstance(seg, str):
            from medsam_agent_rt.segmenters import build_segmenter

            seg = build_segmenter(seg, backend=self.backend, device=self.device)
        cfg = SessionConfig(
            max_actions=self.max_turns, strategy=self.strategy, record_masks=self.keep_records
        )
        self._episode = Episode(seg, policy, cfg, tool_spec=spec)

    def __getstate__(self) -> dict[str, Any]:
        if not isinstance(self.segmenter, str) or not isinstance(self.policy, str):
            raise TypeError(
                "worker processes need the segmenter and the policy as spec strings (a ready "
                "object runs in-process only: use workers=1)"
            )
        return {**self.__dict__, "_episode": None}

    def run(self, ref: SampleRef) -> dict[str, Any]:
        """The row of ``ref``: evaluated, or skipped ("empty_gt", "load_error")."""
        self.setup()
        try:
            image, gt = ref.load()
        except (OSError, ValueError) as exc:
            return skipped_row(ref, "load_error", f"{type(exc).__name__}: {exc}")
        if not gt.any():
            return skipped_row(ref, "empty_gt")
        result = self._episode.run(image, ref.description, gt, ref.sample_id)
        return episode_row(ref, result.record, self.keep_records)
