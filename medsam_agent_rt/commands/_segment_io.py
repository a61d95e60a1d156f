"""Arguments of ``medsam-agent segment`` that name files: the output folder (its name and the
check made before any work) and the ground-truth mask (read by ``io.read_mask``). The outputs
themselves are written by ``io.outputs.write_outputs``.

Every problem with a user-supplied path raises :class:`UsageError` (exit code 2) whose message
names the argument, what was expected and what arrived.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medsam_agent_rt.io import LoadedImage


class UsageError(Exception):
    """Bad arguments or input: the command prints the message and exits with code 2."""


# ----------------------------------------------------------------------------- names
def image_stem(path: str | os.PathLike[str]) -> str:
    """The output folder name of an input: ``ct.nii.gz`` -> ``ct``, ``series/`` -> ``series``."""
    p = Path(path)
    name = p.name or p.resolve().name
    if p.is_dir():
        return name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def default_out_dir(image: str | os.PathLike[str]) -> Path:
    """./medsam-agent-out/<image stem>."""
    return Path.cwd() / "medsam-agent-out" / image_stem(image)


def check_out_dir(out: Path, overwrite: bool, inputs: tuple = ()) -> None:
    """Refuse a file, a non-empty folder unless ``overwrite``, a folder that is or holds the
    working directory or one of ``inputs`` (as given or through symlinks), or one that cannot
    be created (``io.atomic.check_output_dir``); checked before any work."""
    from medsam_agent_rt.io.atomic import UnsafeOutputError, check_output_dir

    try:
        check_output_dir(out, inputs=[p for p in inputs if p], overwrite=overwrite)
    except UnsafeOutputError as exc:
        raise UsageError(str(exc)) from None


# ----------------------------------------------------------------------------- GT
def read_gt(path: str | os.PathLike[str], image: LoadedImage) -> np.ndarray:
    """The ground-truth mask for ``image`` as (H, W) bool (``io.read_mask``: a mask image of the
    image's size, or a NIfTI mask volume for a NIfTI input); problems become UsageError."""
    from medsam_agent_rt.io import ImageReadError, read_mask

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--gt {p}: no such file")
    try:
        return read_mask(p, like=image)
    except (ImageReadError, OSError) as exc:
        raise UsageError(f"--gt {exc}") from None
