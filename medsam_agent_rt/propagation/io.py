"""Volumes and frame streams in and out for propagation: NIfTI volumes (the mask is written back
with the input's affine and header, same voxel grid), DICOM series (slices sorted by position,
each windowed by the DICOM reader), .npy stacks, folders of frames (PNG/JPEG) and MP4 (PyAV).

Volumes are handled in VOXEL layout: slices are ``data[:, :, k]`` (axis 2) transposed to (rows =
voxel axis 1, cols = voxel axis 0) so the written mask lands on the same voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class Stack:
    """frames (N, H, W) or (N, H, W, 3) uint8; kind "volume" | "video"; source path; nifti: the
    nibabel image of a NIfTI input (for writing the mask back); spacing (z, y, x) mm or None."""

    frames: np.ndarray
    kind: str
    source: str
    nifti: Any = None
    spacing: tuple[float, float, float] | None = None


def _window(data: np.ndarray) -> np.ndarray:
    """Float volume -> uint8 by its 0.5 / 99.5 percentiles (CT/MR without a given window)."""
    lo, hi = np.percentile(data, [0.5, 99.5])
    return np.clip((data - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)


def read_stack(path: str | Path) -> Stack:
    """A volume (.nii/.nii.gz, a DICOM series folder, .npy) or a video (.mp4, a frame folder)."""
    path = Path(path)
    name = path.name.lower()
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if name.endswith((".nii", ".nii.gz")):
        from medsam_agent_rt.io.nifti import import_nibabel

        img = import_nibabel().load(str(path))
        data = np.asarray(img.dataobj, np.float32)
        if data.ndim == 4:
            data = data[..., 0]
        if data.ndim != 3:
            raise ValueError(f"{path}: expected a 3-D NIfTI volume, got shape {data.shape}")
        frames = _window(data).transpose(2, 1, 0)  # (z, y, x)
        zooms = tuple(float(v) for v in img.header.get_zooms()[:3])
        return Stack(
            np.ascontiguousarray(frames), "volume", str(path), img, (zooms[2], zooms[1], zooms[0])
        )
    if name.endswith(".npy"):
        arr = np.load(path)
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4):
            raise ValueError(f"{path}: expected (N, H, W[, 3]) uint8, got {arr.dtype} {arr.shape}")
        return Stack(arr, "volume", str(path))
    if name.endswith((".mp4", ".mov", ".avi", ".mkv")):
        try:
            import av
        except ImportError:
            raise ImportError("reading video files needs PyAV: pip install av") from None
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return Stack(np.stack(frames), "video", str(path))
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if files:
            from PIL import Image

            frames = [np.asarray(Image.open(p).convert("RGB")) for p in files]
            return Stack(np.stack(frames), "video", str(path))
        from medsam_agent_rt.io.dicom_series import read_dicom_series, sort_series

        n = len(sort_series(path)[0])
        slices = [read_dicom_series(path, slice_index=k).pixels for k in range(n)]
        return Stack(np.stack(slices), "volume", str(path))
    raise ValueError(
        f"{path}: not a volume (.nii, .nii.gz, .npy, DICOM series folder) or a video (.mp4, "
        "a folder of PNG/JPEG frames)"
    )


def read_mask_stack(path: str | Path, like: Stack) -> np.ndarray:
    """A ground-truth / key mask volume in the same layout as ``like`` -> (N, H, W) bool."""
    path = Path(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        from medsam_agent_rt.io.nifti import import_nibabel

        data = np.asarray(import_nibabel().load(str(path)).dataobj)
        m = data.transpose(2, 1, 0) != 0
    elif path.suffix == ".npy":
        m = np.load(path) != 0
    elif path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        m = np.stack([np.asarray(Image.open(p).convert("L")) > 127 for p in files])
    else:
        raise ValueError(f"{path}: a mask volume must be .nii/.nii.gz, .npy or a folder of PNGs")
    if m.shape != like.frames.shape[:3]:
        raise ValueError(
            f"{path}: mask shape {m.shape} differs from the input's {like.frames.shape[:3]}"
        )
    return m


def write_mask_stack(mask: np.ndarray, stack: Stack, out_dir: str | Path) -> Path:
    """mask.nii.gz with the input's affine/header (NIfTI input), else mask.npy; video inputs also
    get masks/NNNNN.png. Returns the main file written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if stack.nifti is not None:
        from medsam_agent_rt.io.nifti import import_nibabel

        nib = import_nibabel()
        img = nib.Nifti1Image(mask.transpose(2, 1, 0).astype(np.uint8), stack.nifti.affine)
        img.header.set_zooms(stack.nifti.header.get_zooms()[:3])
        target = out / "mask.nii.gz"
        nib.save(img, str(target))
        return target
    target = out / "mask.npy"
    np.save(target, mask.astype(np.uint8))
    if stack.kind == "video":
        from PIL import Image

        (out / "masks").mkdir(exist_ok=True)
        for i, m in enumerate(mask):
            Image.fromarray(m.astype(np.uint8) * 255).save(out / "masks" / f"{i:05d}.png")
    return target
