"""Inputs and outputs of ``medsam-agent segment``: the ground-truth mask, the output folder and
its files (mask PNG / NIfTI, overlay strip, trajectory JSON), written all at once or not at all.

Every problem with a user-supplied path raises :class:`UsageError` (exit code 2) whose message
names the argument, what was expected and what arrived.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

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
    """The ground-truth mask for ``image`` as (H, W) bool.

    A mask image (PNG / TIFF / BMP / JPEG; grey, RGB, RGBA, 0/1 or 0/255: foreground where any
    colour channel is non-zero, alpha ignored) of the image's size, or, when the input is NIfTI, a
    NIfTI mask volume of the same voxel grid (the same slice is taken, non-zero = foreground)."""
    from medsam_agent_rt.io import ImageReadError, detect_format

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--gt {p}: no such file")
    try:
        fmt = detect_format(p)
    except (ImageReadError, OSError) as exc:
        raise UsageError(f"--gt {exc}") from None
    if fmt == "nifti":
        mask = _read_gt_nifti(p, image)
    elif fmt in ("png", "jpeg", "tiff", "bmp"):
        from medsam_agent_rt.data._imageio import read_mask

        try:
            mask = read_mask(p)
        except (ValueError, OSError) as exc:
            raise UsageError(f"--gt {exc}") from None
    else:
        raise UsageError(
            f"--gt {p}: a mask must be an image file (PNG, TIFF, BMP, JPEG) or, for a NIfTI "
            f"input, a NIfTI volume; got {'a directory' if p.is_dir() else fmt.upper()}"
        )
    if mask.shape != image.shape:
        (h, w), (mh, mw) = image.shape, mask.shape
        raise UsageError(
            f"--gt {p}: the mask is {mw}x{mh} (W x H) but the image {image.path} is {w}x{h}; "
            "the mask must have the image's size"
        )
    return np.ascontiguousarray(mask, bool)


def _read_gt_nifti(p: Path, image: LoadedImage) -> np.ndarray:
    from medsam_agent_rt.io.nifti import import_nibabel

    if image.format != "nifti" or image.layout is None:
        raise UsageError(
            f"--gt {p}: a NIfTI mask volume needs a NIfTI input (the same slice is cut from "
            f"both); the input {image.path} is {image.format.upper()}: pass a mask image instead"
        )
    nib = import_nibabel()
    try:
        vol = nib.load(p)
        shape = tuple(int(s) for s in vol.shape)
    except Exception as exc:  # noqa: BLE001 - ImageFileError, EOFError, zlib.error, OSError
        raise UsageError(f"--gt {p}: corrupt or unreadable NIfTI file ({exc})") from None
    layout = image.layout
    spatial = (shape + (1, 1, 1))[:3]
    if spatial != tuple(layout.volume_shape):
        raise UsageError(
            f"--gt {p}: the mask volume is {spatial} voxels but the image volume "
            f"{image.path} is {tuple(layout.volume_shape)}; they must share the voxel grid"
        )
    frames = shape[3] if len(shape) >= 4 else 1
    frame = 0 if frames == 1 else int(image.frame or 0)
    if frame >= frames:
        raise UsageError(f"--gt {p}: has {frames} volumes, the image uses volume {frame}")
    try:
        if len(shape) < 3:
            plane = np.take(np.asanyarray(vol.dataobj).reshape(spatial), layout.index, layout.axis)
        else:
            index: list[Any] = [slice(None)] * 3
            index[layout.axis] = layout.index
            index += [frame] if len(shape) >= 4 else []
            index += [0] * max(0, len(shape) - 4)
            plane = np.asanyarray(vol.dataobj[tuple(index)])
    except Exception as exc:  # noqa: BLE001 - truncated data surfaces only when read
        raise UsageError(f"--gt {p}: corrupt NIfTI data ({type(exc).__name__}: {exc})") from None
    if image.affine is not None and not np.allclose(vol.affine, image.affine, atol=1e-3):
        import warnings

        warnings.warn(
            f"--gt {p}: its affine differs from the image's; voxels are matched by index",
            stacklevel=2,
        )
    return layout.extract(np.asarray(plane)) != 0


# ----------------------------------------------------------------------------- outputs
def strip_columns(n_tiles: int) -> int:
    """Columns of the overlay strip: one row up to 3 tiles, then a balanced grid of <= 3
    columns (4 -> 2x2, 5 and 6 -> 3 + 2 / 3 + 3), so the figure stays legible when shrunk."""
    rows = math.ceil(n_tiles / 3)
    return math.ceil(n_tiles / rows)


def strip_tiles(rgb: np.ndarray, record: Any) -> tuple[list[np.ndarray], list[str]]:
    """The tiles of the overlay strip: the 512 view the policy saw first, then the overlay after
    each executed action (exactly the observation images), with captions (action, Dice)."""
    from medsam_agent_rt.io import action_label, turn_caption
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
    out: Path,
    image: LoadedImage,
    mask: np.ndarray,
    record: Any,
    overwrite: bool,
    protect: tuple = (),
) -> list[str]:
    """Write mask.png (0/255, original size), mask.nii.gz (NIfTI input: aligned to its affine,
    the mask in the slice it came from), overlay.png and trajectory.json into ``out``, all or
    nothing (``io.atomic_directory``; parent folders created here are removed on failure; the
    folder must not hold any of ``protect``). Returns the file names written."""
    from medsam_agent_rt.io import (
        atomic_directory,
        write_json,
        write_mask_nifti,
        write_mask_png,
        write_overlay_strip,
    )

    tiles, captions = strip_tiles(image.rgb, record)
    created = _make_parents(out.parent)
    names = ["mask.png"] + (["mask.nii.gz"] if image.format == "nifti" else [])
    names += ["overlay.png", "trajectory.json"]
    try:
        with atomic_directory(out, overwrite=overwrite, protect=protect) as tmp:
            write_mask_png(tmp / "mask.png", mask, like=image)
            if image.format == "nifti":
                write_mask_nifti(tmp / "mask.nii.gz", mask, like=image)
            write_overlay_strip(
                tmp / "overlay.png", tiles, captions, max_columns=strip_columns(len(tiles))
            )
            write_json(tmp / "trajectory.json", record.to_dict())
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
