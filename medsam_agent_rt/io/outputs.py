"""The outputs of one episode, written for everyone (the CLI, evaluation galleries, the server):
mask.png (0/255, original size), mask.nii.gz (NIfTI input: aligned to its affine), overlay.png
(the views the policy saw, one tile per executed action) and trajectory.json, written all at
once or not at all (``io.atomic_directory``).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.io.loaded import LoadedImage


def strip_columns(n_tiles: int) -> int:
    """Columns of the overlay strip: one row up to 3 tiles, then a balanced grid of <= 3
    columns (4 -> 2x2, 5 and 6 -> 3 + 2 / 3 + 3), so the figure stays legible when shrunk."""
    rows = math.ceil(n_tiles / 3)
    return math.ceil(n_tiles / rows)


def strip_tiles(rgb: np.ndarray, record: Any) -> tuple[list[np.ndarray], list[str]]:
    """The tiles of the overlay strip: the 512 view the policy saw first, then the overlay after
    each executed action (exactly the observation images), with captions (action, Dice)."""
    from medsam_agent_rt.io.strip import action_label, turn_caption
    from medsam_agent_rt.protocol import render_observation, render_view

    geo = record.geometry
    view = render_view(rgb, geo)
    tiles, captions = [view], [turn_caption(0)]
    for k, (turn, mask) in enumerate(zip(record.executed(), record.masks()), start=1):
        a = turn.action or {}
        polarity = "positive" if a.get("positive", True) else "negative"
        tiles.append(render_observation(view, mask, geo))
        captions.append(turn_caption(k, action_label(a.get("name", "?"), polarity), turn.dice))
    return tiles, captions


def write_outputs(
    out: str | Path,
    image: LoadedImage,
    mask: np.ndarray,
    record: Any,
    overwrite: bool = False,
    protect: tuple = (),
    extra: dict[str, Callable[[Path], Any]] | None = None,
) -> list[str]:
    """Write mask.png (0/255, original size), mask.nii.gz (NIfTI input: aligned to its affine,
    the mask in the slice it came from), overlay.png and trajectory.json into ``out``, all or
    nothing (``io.atomic_directory``; parent folders created here are removed on failure; the
    folder must not hold any of ``protect``, re-checked right before it is replaced).
    ``extra``: {file name: writer(path)} written in the same step (a name given there replaces
    the file of that name above, e.g. the 3-D mask.nii.gz of a propagated volume).
    Returns the file names written."""
    from medsam_agent_rt.io import (  # through the package: one patch point for tests
        atomic_directory,
        write_json,
        write_mask_nifti,
        write_mask_png,
        write_overlay_strip,
    )

    out = Path(out)
    tiles, captions = strip_tiles(image.rgb, record)
    created = _make_parents(out.parent)
    extra = dict(extra or {})
    names = ["mask.png"] + (["mask.nii.gz"] if image.format == "nifti" else [])
    names += ["overlay.png", "trajectory.json"]
    names += [n for n in extra if n not in names]
    try:
        with atomic_directory(out, overwrite=overwrite, protect=protect) as tmp:
            write_mask_png(tmp / "mask.png", mask, like=image)
            if image.format == "nifti" and "mask.nii.gz" not in extra:
                write_mask_nifti(tmp / "mask.nii.gz", mask, like=image)
            write_overlay_strip(
                tmp / "overlay.png", tiles, captions, max_columns=strip_columns(len(tiles))
            )
            write_json(tmp / "trajectory.json", record.to_dict())
            for name, writer in extra.items():
                writer(tmp / name)
    except BaseException:
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise
    return names


def _make_parents(parent: Path) -> list[Path]:
    """mkdir -p ``parent``; returns the folders it created (outermost first)."""
    missing = []
    p = parent.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    missing.reverse()
    for d in missing:
        d.mkdir()
    return missing
