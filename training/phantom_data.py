"""Phantom samples with disjoint train / val / test seeds, and the SFT conversations made from
them: whole expert episodes through the real Episode and segmenter, plus (cheap, no segmenter)
opening turns -- the expert's first action on a fresh phantom, i.e. the first assistant turn of
the episode the expert would play there. Both are written with training/conversations.py and
resume where they stopped (ids already in the file are skipped).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLIT_SEED_BASE = {"train": 0, "val": 1_000_000, "test": 2_000_000}  # seed ranges never overlap


@dataclass(frozen=True)
class PhantomSpec:
    """Which phantoms a preset draws: modalities, image size, targets kept."""

    modalities: tuple[str, ...] = (
        "CT",
        "MRI",
        "X-Ray",
        "ultrasound",
        "endoscope",
        "fundus",
        "dermoscopy",
    )
    size: int = 256  # phantom side in pixels (the policy sees the 512 view of it)
    min_target_fraction: float = 0.01  # drop targets smaller than this fraction of the image
    max_targets_per_image: int = 3  # at most this many targets per image (the largest first)

    def __post_init__(self) -> None:
        from medsam_agent_rt.data.phantoms import phantom_modality

        for m in self.modalities:
            phantom_modality(m)  # raises naming the unknown modality
        if not 0 <= self.min_target_fraction < 1:
            raise ValueError(
                f"min_target_fraction must be in [0, 1), got {self.min_target_fraction}"
            )
        if self.max_targets_per_image < 1:
            raise ValueError(
                f"max_targets_per_image must be >= 1, got {self.max_targets_per_image}"
            )


def split_seeds(split: str, count: int) -> range:
    """Seeds of ``split`` ("train" | "val" | "test"): disjoint ranges of width 1,000,000."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"split must be one of {sorted(SPLIT_SEED_BASE)}, got {split!r}")
    if not 0 <= count <= 1_000_000:
        raise ValueError(f"count must be in 0..1000000 per split, got {count}")
    base = SPLIT_SEED_BASE[split]
    return range(base, base + count)


def phantom_samples(spec: PhantomSpec, split: str, images: int, *, offset: int = 0) -> list[Any]:
    """Samples (data.Sample, in memory) of ``images`` phantoms of ``split``, modalities in turn:
    image i is modality i % M with seed split_seeds(split)[offset + i]."""
    return list(iter_phantom_samples(spec, split, images, offset=offset))


def iter_phantom_samples(
    spec: PhantomSpec, split: str, images: int, *, offset: int = 0
) -> Iterator[Any]:
    from medsam_agent_rt.data.modality import modality_slug
    from medsam_agent_rt.data.phantoms import generate

    seeds = split_seeds(split, offset + images)
    for i in range(offset, offset + images):
        modality = spec.modalities[i % len(spec.modalities)]
        ph = generate(modality, seeds[i], spec.size)
        dataset = f"phantom-{modality_slug(ph.modality)}"
        samples = ph.to_samples(dataset, split, f"{seeds[i]:07d}")
        area = spec.min_target_fraction * spec.size * spec.size
        keep = [s for s in samples if s.load_mask().sum() >= area]
        keep.sort(key=lambda s: -int(s.load_mask().sum()))
        yield from keep[: spec.max_targets_per_image]


# ----------------------------------------------------------------------------- conversations


def write_expert_episodes(
    samples: Sequence[Any],
    segmenter: Any,
    out_dir: str | Path,
    *,
    expert: str = "expert:box_prob=1.0",
    min_final_iou: float = 0.5,
    session_config: Any = None,
    progress: bool = True,
) -> dict[str, int]:
    """One expert episode per sample through the real Episode; episodes whose final IoU passes
    ``min_final_iou`` are written as conversations. Resumable. Returns counts."""
    from medsam_agent_rt.training.conversations import ConversationWriter, read_conversation_ids
    from tqdm import tqdm

    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.policies import build_policy

    writer = ConversationWriter(out_dir, "episodes.jsonl")
    done = read_conversation_ids(writer.path)
    skipped_path = Path(out_dir) / "episodes.rejected"
    rejected = set(skipped_path.read_text().split()) if skipped_path.is_file() else set()
    counts = {"written": 0, "rejected": 0, "resumed": 0}
    episode = Episode(segmenter, build_policy(expert), session_config)
    for s in tqdm(samples, desc="expert episodes", disable=not progress, dynamic_ncols=True):
        if s.sample_id in done or s.sample_id in rejected:
            counts["resumed"] += 1
            continue
        image, gt = s.load()
        _, rec = episode.run(image, s.description, gt, s.sample_id)
        iou = rec.final.get("iou") or 0.0
        if iou < min_final_iou or rec.end_reason != "stop":
            with open(skipped_path, "a") as f:
                f.write(s.sample_id + "\n")
            counts["rejected"] += 1
            continue
        meta = {"final_iou": iou, "actions": rec.totals.get("actions"), "seed": s.meta.get("seed")}
        writer.write(
            s.sample_id,
            rec.conversation(image),
            meta=meta,
            target=s.description,
            modality=s.modality,
            dataset=s.dataset,
            split=s.split,
        )
        counts["written"] += 1
    return counts


def opening_turn(sample: Any, expert: str = "expert:box_prob=1.0") -> list[dict[str, Any]]:
    """The conversation up to the expert's first action on ``sample`` (system, user turn with the
    512 view, the assistant's opening call); no segmenter needed."""
    from medsam_agent_rt.policies import build_policy
    from medsam_agent_rt.policies.base import Observation, Task
    from medsam_agent_rt.protocol import build_messages, render_view, view_geometry

    image, gt = sample.load()
    geo = view_geometry(image.shape, 512)
    view = render_view(image, geo)
    policy = build_policy(expert)
    policy.reset(Task(image, geo, sample.description, gt, sample.sample_id))

    def no_preview(action: Any) -> np.ndarray:
        raise RuntimeError("the opening turn needs no preview")

    obs = Observation(
        build_messages(sample.description, [view], []),
        0,
        0,
        mask=np.zeros(gt.shape, bool),
        preview=no_preview,
    )
    return build_messages(sample.description, [view], [policy.act(obs).text])


def write_opening_turns(
    samples: Sequence[Any],
    out_dir: str | Path,
    *,
    expert: str = "expert:box_prob=1.0",
    progress: bool = True,
) -> int:
    """Opening-turn conversations of ``samples`` (resumable); returns how many exist now."""
    from medsam_agent_rt.training.conversations import ConversationWriter, read_conversation_ids
    from tqdm import tqdm

    writer = ConversationWriter(out_dir, "openings.jsonl")
    done = read_conversation_ids(writer.path)
    for s in tqdm(samples, desc="opening turns", disable=not progress, dynamic_ncols=True):
        if s.sample_id in done:
            continue
        writer.write(
            s.sample_id,
            opening_turn(s, expert),
            meta={"seed": s.meta.get("seed")},
            target=s.description,
            modality=s.modality,
            dataset=s.dataset,
            split=s.split,
        )
        done.add(s.sample_id)
    return len(done)
