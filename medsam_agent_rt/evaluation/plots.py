"""Figures of an evaluation: Dice versus turn per modality (matplotlib, imported lazily: extra
``train`` or ``dev``) and a gallery of the best and worst episodes as overlay strips
(``io.strip``: the view, the overlay after each action, and the ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GALLERY_TILE = 256  # px per strip tile


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "plots need matplotlib (pip install 'medsam-agent-rt[train]' or '[dev]')"
        ) from exc
    return plt


def dice_vs_turn(metrics: dict[str, Any], path: Path) -> Path:
    """Mean Dice after each action (carried forward) per modality and overall, as PNG."""
    from medsam_agent_rt.io.atomic import atomic_write_bytes

    plt = _pyplot()
    import io

    overall = metrics["rounds"]["dice"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    try:
        xs = list(range(1, len(overall) + 1))
        for name, cur in metrics["rounds_per_modality"].items():
            n = metrics["per_modality"].get(name, {}).get("n", 0)
            ax.plot(xs, cur["dice"], marker="o", linewidth=1.2, label=f"{name} (n={n})")
        if overall:
            ax.plot(xs, overall, color="black", linewidth=2.5, marker="s", label="all")
        ax.set_xlabel("executed actions")
        ax.set_ylabel("mean Dice")
        ax.set_xticks(xs)
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2)
        ax.set_title("Dice versus turn (carried forward after stop)")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def episode_strip(row: dict[str, Any], tile: int = GALLERY_TILE) -> tuple[list, list[str]]:
    """(tiles, captions) of one evaluated row: view, overlay per executed action, GT overlay."""
    from PIL import Image

    from medsam_agent_rt.evaluation.datasets import SampleRef
    from medsam_agent_rt.io.strip import turn_caption
    from medsam_agent_rt.protocol import render_observation, render_view
    from medsam_agent_rt.trajectory import EpisodeRecord, rle_decode

    image, gt = SampleRef.from_info(row).load()
    rec = EpisodeRecord.from_dict(row["record"])
    geo = rec.geometry
    view = render_view(image, geo)
    tiles, caps = [view], [turn_caption(0)]
    for k, (t, label) in enumerate(zip(rec.executed(), row["actions"]), start=1):
        if t.mask is None:
            raise ValueError("the record has no masks (keep_records was off)")
        tiles.append(render_observation(view, rle_decode(t.mask), geo))
        caps.append(turn_caption(k, label, t.dice))
    tiles.append(render_observation(view, gt, geo))
    caps.append("ground truth")

    def small(a: np.ndarray) -> np.ndarray:
        if a.shape[0] == tile:
            return a
        return np.asarray(Image.fromarray(a).resize((tile, tile), Image.Resampling.BILINEAR))

    return [small(a) for a in tiles], caps


def gallery(rows: list[dict[str, Any]], folder: Path, n: int = 3) -> tuple[list[Path], list[str]]:
    """Strips of the ``n`` best and ``n`` worst evaluated rows by Dice (ties by index) under
    ``folder``; returns (files written, notes about rows that could not be drawn)."""
    from medsam_agent_rt.io.strip import write_overlay_strip

    ev = [r for r in rows if not r.get("skipped") and r.get("record")]
    if not ev:
        return [], ["no episode records in the shards (run with records kept)"]
    order = sorted(ev, key=lambda r: (r["dice"], r["index"]))
    best = list(reversed(order[-n:]))
    worst = [r for r in order[:n] if r not in best]
    folder.mkdir(parents=True, exist_ok=True)
    made, notes = [], []
    for kind, chosen in (("best", best), ("worst", worst)):
        for k, row in enumerate(chosen, start=1):
            try:
                tiles, caps = episode_strip(row)
            except (OSError, ValueError) as exc:
                notes.append(f"{row['sample_id']}: {exc}")
                continue
            caps[0] = f"{row['description']}"
            made.append(write_overlay_strip(folder / f"{kind}-{k}.png", tiles, caps, max_columns=8))
    return made, notes
