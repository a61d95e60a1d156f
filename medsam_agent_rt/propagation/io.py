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
            from medsam_agent_rt.io.errors import missing_extra

            raise missing_extra("av", "video", "reading video files") from None
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


def overlay_frames(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, H, W[, 3]) uint8 frames with the (N, H, W) mask blended in green (``ops``' overlay)
    -> (N, H, W, 3) uint8."""
    from medsam_agent_rt.ops import render_overlay

    h, w = frames.shape[1:3]
    return np.stack(
        [
            np.asarray(render_overlay(np.ascontiguousarray(_rgb(f)), m, (0, 0, w, h)))
            for f, m in zip(frames, np.asarray(mask, bool))
        ]
    )


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame[..., None], 3, 2) if frame.ndim == 2 else frame


def encode_mp4(frames: np.ndarray, fps: float) -> bytes:
    """(N, H, W, 3) uint8 -> H.264 MP4 bytes (PyAV; odd sizes padded by one black row/column)."""
    import fractions
    import io

    import av

    n, h, w = frames.shape[:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=fractions.Fraction(fps).limit_denominator(1000)
        )
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """(N, H, W, 3) uint8 -> animated GIF bytes (Pillow; looping)."""
    import io

    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(int(round(1000 / fps)), 20),
        loop=0,
    )
    return buffer.getvalue()


def write_overlay_video(
    frames: np.ndarray, mask: np.ndarray, out_dir: str | Path, fps: float = 10.0
) -> tuple[Path, str | None]:
    """The frames with the mask overlaid as ``overlay.mp4`` (PyAV installed) or, without PyAV,
    an animated ``overlay.gif``; written atomically. Returns (path, note) where note says why
    the GIF was written (None for MP4)."""
    from medsam_agent_rt.io.atomic import atomic_write_bytes

    overlaid = overlay_frames(frames, mask)
    try:
        import av  # noqa: F401
    except ImportError:
        note = "PyAV is not installed (pip install av): overlay.gif written instead of MP4"
        return atomic_write_bytes(Path(out_dir) / "overlay.gif", encode_gif(overlaid, fps)), note
    return atomic_write_bytes(Path(out_dir) / "overlay.mp4", encode_mp4(overlaid, fps)), None
