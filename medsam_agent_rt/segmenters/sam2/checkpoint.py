"""Load SAM2.1 / MedSAM2 checkpoints UNCHANGED (strict keys) and recognise them.

A SAM2-family file is a flat state dict (under ``"model"`` in the official ``.pt`` files, or a
``.safetensors`` of the same keys) whose trunk key is ``image_encoder.trunk.patch_embed.proj.
weight``. The trunk size is read from shapes (width, blocks per stage); heads, windows and global
blocks are not visible in shapes, so only the released trunks (tiny, small, base_plus, large) are
recognised. The input size is NOT in the weights: 1024 by default (SAM2.1, and the released
MedSAM-Agent's MedSAM2 tool), ``image_size=512`` for MedSAM2's own config. Family: "medsam2" when
the file name contains "medsam2" (case-insensitive), else "sam2"; ``family=`` overrides.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from medsam_agent_rt.segmenters.sam2.config import Sam2Config, hiera_from_shapes

TRUNK_KEY = "image_encoder.trunk.patch_embed.proj.weight"
SAM2_FAMILIES = ("sam2", "medsam2")


def is_sam2_state(state: dict[str, Any]) -> bool:
    return TRUNK_KEY in state


def infer_sam2_config(state: dict[str, Any], image_size: int = 1024) -> tuple[Sam2Config, str]:
    """(Sam2Config, variant e.g. "sam2.1_hiera_tiny") from the trunk's shapes."""
    from medsam_agent_rt.segmenters.checkpoints import CheckpointError

    embed = int(state[TRUNK_KEY].shape[0])
    blocks = {
        int(m.group(1))
        for k in state
        if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k))
    }
    if not blocks:
        raise CheckpointError("SAM2 checkpoint without trunk blocks (image_encoder.trunk.blocks.*)")
    depth = max(blocks) + 1
    starts = [i for i in range(depth) if f"image_encoder.trunk.blocks.{i}.proj.weight" in state]
    bounds = [0, *starts, depth]
    stages = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))
    try:
        name, hiera = hiera_from_shapes(embed, stages)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    cfg = Sam2Config(f"sam2.1_hiera_{name}", 1024, hiera).at_size(image_size)
    return cfg, cfg.name


def build_sam2(state: dict[str, Any], config: Sam2Config, what: str) -> Any:
    """A Sam2Model of ``config`` with ``state`` loaded strictly (differences reported)."""
    from medsam_agent_rt.segmenters.checkpoints import load_strict
    from medsam_agent_rt.segmenters.sam2.model import Sam2Model

    return load_strict(Sam2Model(config), state, what)


def load_sam2_state(
    state: dict[str, Any],
    path: str | Path,
    family: str | None = None,
    image_size: int | None = None,
    config: Sam2Config | None = None,
):
    """LoadedCheckpoint of a SAM2-family state dict read from ``path``."""
    from medsam_agent_rt.segmenters.checkpoints import CheckpointError, LoadedCheckpoint
    from medsam_agent_rt.segmenters.families import family_spec

    path = Path(path)
    if family is not None and family not in SAM2_FAMILIES:
        raise CheckpointError(
            f"{path}: family={family!r} does not fit this SAM2 (Hiera) checkpoint; it can be "
            f"{' or '.join(SAM2_FAMILIES)}"
        )
    how = "family=" if family else "filename"
    fam = family or ("medsam2" if "medsam2" in path.name.lower() else "sam2")
    if config is None:
        config, _ = infer_sam2_config(state, image_size or 1024)
    elif image_size is not None:
        config = config.at_size(image_size)
    model = build_sam2(
        state, config, f"{path} (assumed {fam}, {config.name} at {config.image_size})"
    )
    spec = family_spec(fam)
    spec = replace(spec, preprocessing=replace(spec.preprocessing, input_size=config.image_size))
    return LoadedCheckpoint(model, spec, config.name, str(path), how, None)
