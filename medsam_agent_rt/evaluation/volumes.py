"""3-D evaluation on volume datasets: per volume and target, the agent episode on the key slice
(the largest GT area, MedSAM2's protocol) and propagation through the volume (mode
``"propagate"``), or one agent episode on every slice the GT covers (mode ``"slices"``, the
slice-by-slice baseline); 3-D Dice and NSD (``propagation.nsd_3d`` at ``NSD_TOLERANCE_MM`` with
the volume's spacing) per volume, their means, and the time per volume.

Dataset specs (``medsam-agent eval --dataset``):

- a folder written by ``medsam-agent data sequences`` (or laid out like it):
  ``<name>.nii.gz`` volumes with their masks ``<name>_<target>.nii.gz`` (same voxel grid);
- ``sequences:KEY=VALUE,...``: phantom volumes made on the fly (``data.sequences``), keys ``n``
  (volumes, default 2), ``seed`` (default 0), ``depth`` (default 16), ``size`` (default 96),
  ``targets`` (``+``-separated, default ``organ``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEQUENCES_PREFIX = "sequences"
MODES = ("propagate", "slices")
RESULTS_FORMAT = "medsam-agent-eval-volumes/1"
NSD_TOLERANCE_MM = 2.0


@dataclass
class VolumeCase:
    """One target of one volume: slices (D, H, W, 3) uint8, gt (D, H, W) bool, spacing
    (slice, row, col) mm or None."""

    volume_id: str
    target: str
    slices: np.ndarray
    gt: np.ndarray
    spacing: tuple[float, float, float] | None


def is_volume_dataset(spec: str) -> bool:
    """Whether ``spec`` names volumes (``sequences:...`` or a folder of NIfTI volume + mask)."""
    if spec.split(":", 1)[0] == SEQUENCES_PREFIX:
        return True
    p = Path(spec)
    return p.is_dir() and bool(_volume_files(p))


def _volume_files(folder: Path) -> dict[Path, list[tuple[str, Path]]]:
    """{volume file: [(target, mask file)]}: a NIfTI file is a mask of volume ``<name>`` when it
    is named ``<name>_<target>``; volumes are the files that are nobody's mask."""
    names = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")))
    stem = {p: re.sub(r"\.nii(\.gz)?$", "", p.name) for p in names}
    masks = {
        p: [(stem[m][len(stem[p]) + 1 :], m) for m in names if stem[m].startswith(stem[p] + "_")]
        for p in names
    }
    is_mask = {m for listed in masks.values() for _, m in listed}
    return {p: listed for p, listed in masks.items() if listed and p not in is_mask}


def _sequence_options(spec: str) -> dict[str, Any]:
    opts: dict[str, Any] = {"n": 2, "seed": 0, "depth": 16, "size": 96, "targets": ("organ",)}
    _, _, rest = spec.partition(":")
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in opts:
            raise ValueError(
                f"dataset {spec!r}: expected KEY=VALUE items with keys {sorted(opts)}, got {item!r}"
            )
        try:
            opts[key] = tuple(value.split("+")) if key == "targets" else int(value)
        except ValueError:
            raise ValueError(f"dataset {spec!r}: {key} must be an integer, got {value!r}") from None
    return opts


def volume_cases(spec: str, limit: int | None = None) -> Iterator[VolumeCase]:
    """The cases of a volume dataset spec (module docstring), at most ``limit`` of them."""
    count = 0
    for case in _cases(spec):
        if limit is not None and count >= limit:
            return
        count += 1
        yield case


def _cases(spec: str) -> Iterator[VolumeCase]:
    if spec.split(":", 1)[0] == SEQUENCES_PREFIX:
        from medsam_agent_rt.data.sequences import phantom_volume

        o = _sequence_options(spec)
        for seed in range(o["seed"], o["seed"] + o["n"]):
            vol = phantom_volume(seed, o["depth"], o["size"])
            rgb = np.repeat(vol.frames[..., None], 3, axis=3)
            for target in o["targets"]:
                if target not in vol.masks:
                    raise ValueError(f"dataset {spec!r}: unknown target {target!r}")
                yield VolumeCase(f"volume_{seed}", target, rgb, vol.masks[target], vol.spacing)
        return
    from medsam_agent_rt.io.volume import read_mask_volume, read_volume

    files = _volume_files(Path(spec))
    if not files:
        raise ValueError(f"dataset {spec!r}: no NIfTI volume with <name>_<target>.nii.gz masks")
    for path, masks in files.items():
        volume = read_volume(path)
        vid = re.sub(r"\.nii(\.gz)?$", "", path.name)
        for target, mask_path in masks:
            gt = read_mask_volume(mask_path, volume)
            yield VolumeCase(vid, target, volume.slices, gt, volume.spacing)


def evaluate_case(
    case: VolumeCase, segmenter: Any, policy: Any, config: Any, mode: str = "propagate"
) -> dict[str, Any]:
    """The result row of one case (module docstring): dice_3d, nsd, key-slice Dice, seconds,
    episodes run, slices with a mask."""
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.propagation import dice_3d, nsd_3d, propagate_volume
    from medsam_agent_rt.propagation.tracker import tracker_factory

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    d = len(case.slices)
    areas = case.gt.reshape(d, -1).sum(1)
    if not areas.any():
        return {"volume": case.volume_id, "target": case.target, "skipped": "empty_gt"}
    episode = Episode(segmenter, policy, config)
    t0 = time.perf_counter()
    pred = np.zeros(case.gt.shape, bool)
    key = int(np.argmax(areas))
    row: dict[str, Any] = {"volume": case.volume_id, "target": case.target, "mode": mode}
    if mode == "propagate":
        mask, record = episode.run(case.slices[key], case.target, case.gt[key], case.volume_id)
        row["key_slice"], row["key_dice"] = key, record.final.get("dice")
        episodes = 1
        if np.asarray(mask).any():
            kind, make = tracker_factory(segmenter)
            pred, _ = propagate_volume(case.slices, key, np.asarray(mask, bool), make)
            row["tracker"] = kind
        else:
            pred[key] = False
    else:
        episodes = 0
        for k in np.flatnonzero(areas):
            mask, _ = episode.run(case.slices[k], case.target, case.gt[k], case.volume_id)
            pred[k] = np.asarray(mask, bool)
            episodes += 1
    seconds = time.perf_counter() - t0
    row.update(
        skipped=None,
        slices=d,
        gt_slices=int((areas > 0).sum()),
        pred_slices=int(pred.reshape(d, -1).any(1).sum()),
        episodes=episodes,
        dice_3d=dice_3d(pred, case.gt),
        nsd=None if case.spacing is None else nsd_3d(pred, case.gt, case.spacing, NSD_TOLERANCE_MM),
        seconds=seconds,
    )
    return row


def summarise_volumes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the evaluated rows (dice_3d, nsd, seconds per volume, episodes)."""
    done = [r for r in rows if r.get("skipped") is None]

    def mean(key: str) -> float | None:
        vals = [r[key] for r in done if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    return {
        "n_evaluated": len(done),
        "n_skipped": len(rows) - len(done),
        "mean": {k: mean(k) for k in ("dice_3d", "nsd", "seconds", "episodes")},
        "nsd_tolerance_mm": NSD_TOLERANCE_MM,
    }


def results_markdown(results: dict[str, Any]) -> str:
    """A Markdown table: one line per volume and target, then the means."""
    lines = [
        f"# 3-D evaluation ({results['config']['mode']}): {results['config']['dataset']}",
        "",
        f"| volume | target | 3-D Dice | NSD@{NSD_TOLERANCE_MM:g}mm | episodes | s / volume |",
        "|---|---|---|---|---|---|",
    ]

    def f(v, fmt=".4f"):
        return "-" if v is None else format(v, fmt)

    for r in results["rows"]:
        if r.get("skipped"):
            lines.append(f"| {r['volume']} | {r['target']} | skipped: {r['skipped']} | | | |")
            continue
        lines.append(
            f"| {r['volume']} | {r['target']} | {f(r['dice_3d'])} | {f(r['nsd'])} | "
            f"{r['episodes']} | {f(r['seconds'], '.2f')} |"
        )
    m = results["metrics"]["mean"]
    lines.append(
        f"| **mean** | | {f(m['dice_3d'])} | {f(m['nsd'])} | {f(m['episodes'], '.1f')} | "
        f"{f(m['seconds'], '.2f')} |"
    )
    return "\n".join(lines) + "\n"


def evaluate_volumes(
    spec: str,
    segmenter: Any,
    policy: Any,
    config: Any,
    mode: str = "propagate",
    limit: int | None = None,
    on_row: Any = None,
) -> dict[str, Any]:
    """Evaluate every case of ``spec``; returns {"format", "config", "rows", "metrics"}."""
    rows = []
    for case in volume_cases(spec, limit):
        rows.append(evaluate_case(case, segmenter, policy, config, mode))
        if on_row is not None:
            on_row(rows[-1])
    return {
        "format": RESULTS_FORMAT,
        "config": {"dataset": spec, "mode": mode, "max_turns": config.max_actions},
        "rows": rows,
        "metrics": summarise_volumes(rows),
    }
