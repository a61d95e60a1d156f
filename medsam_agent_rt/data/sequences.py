"""Labelled phantom VOLUMES and VIDEOS for propagation tests, evaluation and CI: structures that
move and deform from slice to slice / frame to frame. Deterministic by seed, pure NumPy.

- :func:`phantom_volume`: a CT-like stack (D, H, W) uint8 (soft-tissue window look): body
  ellipse, an "organ" (ellipsoid whose cross-section grows then shrinks along z, centre drifting,
  outline modulated by low-order harmonics that change with z) and a smaller brighter "lesion"
  blob inside it on a few slices; masks per target (D, H, W) bool; spacing (z, y, x) mm.
- :func:`phantom_video`: an endoscopy/ultrasound-like RGB stream (T, H, W, 3) uint8 with one
  target moving along a smooth path and deforming (pulsating radii, rotating outline) over a
  textured background (at most ~3 % of the side per frame); its mask per frame (T, H, W) bool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sequence:
    """frames: (N, H, W) uint8 (volume) or (N, H, W, 3) uint8 (video); masks: target -> (N, H, W)
    bool; spacing: (z/t, y, x) in mm (volumes) or (1, 1, 1); kind "volume" | "video"."""

    frames: np.ndarray
    masks: dict[str, np.ndarray]
    spacing: tuple[float, float, float]
    kind: str
    meta: dict = field(default_factory=dict)

    def key_index(self, target: str) -> int:
        """The slice / frame with the largest target area (the default key slice)."""
        return int(np.argmax(self.masks[target].reshape(len(self.frames), -1).sum(1)))


def _blob(shape, cy, cx, ry, rx, harmonics, phase) -> np.ndarray:
    """(H, W) bool: an ellipse at (cy, cx) with radii (ry, rx) whose radius is modulated by
    sum_k a_k cos(k theta + phase_k)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = (y - cy) / max(ry, 1e-6), (x - cx) / max(rx, 1e-6)
    r = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    mod = 1.0 + sum(
        a * np.cos((k + 2) * theta + p) for k, (a, p) in enumerate(zip(harmonics, phase))
    )
    return r <= mod


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] by bilinear upsampling of a coarse grid."""
    g = rng.uniform(-1, 1, (cells + 1, cells + 1))
    h, w = shape
    ys, xs = np.linspace(0, cells, h), np.linspace(0, cells, w)
    y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a, b = g[y0][:, x0], g[y0][:, x0 + 1]
    c, d = g[y0 + 1][:, x0], g[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def phantom_volume(seed: int = 0, depth: int = 32, size: int = 128) -> Sequence:
    """A CT-like volume with targets "organ" and "lesion" (see the module docstring)."""
    if depth < 3 or size < 32:
        raise ValueError(f"phantom_volume needs depth >= 3 and size >= 32, got {depth}, {size}")
    rng = np.random.default_rng(seed)
    shape = (size, size)
    body = _blob(shape, size / 2, size / 2, 0.42 * size, 0.47 * size, [0.02], [0.0])
    texture = _smooth(rng, shape, 6)
    z0, z1 = 0.15 * depth, 0.85 * depth  # organ extent along z
    harm = rng.uniform(0.03, 0.08, 2)
    path = rng.uniform(-0.06, 0.06, (2, 2)) * size
    les_z = (0.4 + 0.2 * rng.uniform()) * depth
    frames, organ, lesion = [], [], []
    for z in range(depth):
        t = (z - z0) / (z1 - z0)
        profile = np.sqrt(max(0.0, 1.0 - (2 * t - 1) ** 2)) if 0 <= t <= 1 else 0.0
        cy = size * 0.48 + path[0, 0] * t + path[0, 1] * t * t
        cx = size * 0.45 + path[1, 0] * t + path[1, 1] * t * t
        om = (
            _blob(
                shape,
                cy,
                cx,
                0.22 * size * profile,
                0.27 * size * profile,
                harm,
                [z * 0.15, -z * 0.1],
            )
            if profile > 0.12
            else np.zeros(shape, bool)
        )
        lr = 0.06 * size * np.sqrt(max(0.0, 1 - ((z - les_z) / (0.12 * depth)) ** 2))
        lm = _blob(shape, cy + 0.05 * size, cx - 0.04 * size, lr, lr, [0.05], [z * 0.3]) & om
        if lr < 2:
            lm = np.zeros(shape, bool)
        img = np.where(body, 95.0 + 10 * texture, 8.0)
        img = np.where(om, 165.0 + 8 * texture, img)
        img = np.where(lm, 225.0, img)
        img = img + rng.normal(0, 6, shape)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        organ.append(om)
        lesion.append(lm)
    masks = {"organ": np.stack(organ), "lesion": np.stack(lesion)}
    return Sequence(np.stack(frames), masks, (2.5, 0.8, 0.8), "volume", {"seed": seed})


def phantom_video(seed: int = 0, frames: int = 48, size: int = 128) -> Sequence:
    """An RGB video with one moving, deforming target "polyp" (see the module docstring)."""
    if frames < 2 or size < 32:
        raise ValueError(f"phantom_video needs frames >= 2 and size >= 32, got {frames}, {size}")
    rng = np.random.default_rng(seed)
    shape = (size, size)
    tex = [_smooth(rng, shape, 5) for _ in range(3)]
    base = np.array([150.0, 70.0, 60.0])  # reddish mucosa
    target_col = np.array([225.0, 170.0, 140.0])
    amp, freq = rng.uniform(0.15, 0.25, 2) * size, rng.uniform(0.5, 1.0, 2)
    out, masks = [], []
    for t in range(frames):
        s = t / 48.0  # one motion cycle per 48 frames, whatever the stream length
        cy = size / 2 + amp[0] * np.sin(2 * np.pi * freq[0] * s)
        cx = size / 2 + amp[1] * np.sin(2 * np.pi * freq[1] * s + 1.0)
        r = 0.15 * size * (1 + 0.2 * np.sin(2 * np.pi * 2 * s))
        m = _blob(shape, cy, cx, r * 0.85, r, [0.08, 0.05], [3 * s, -2 * s])
        img = base[None, None, :] * (1 + 0.15 * np.stack(tex, -1))
        img = np.where(
            m[..., None], target_col[None, None, :] * (1 + 0.05 * tex[0][..., None]), img
        )
        img = img + rng.normal(0, 5, (*shape, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
        masks.append(m)
    return Sequence(
        np.stack(out), {"polyp": np.stack(masks)}, (1.0, 1.0, 1.0), "video", {"seed": seed}
    )


def write_sequences(out_dir, n: int, seed: int = 0, size: int = 128, depth: int = 32) -> list:
    """Write ``n`` phantom volumes (volume_SEED.nii.gz + volume_SEED_TARGET.nii.gz, 1 mm in-plane
    affine from the spacing) and ``n`` videos (video_SEED/frames/*.png + video_SEED/masks/*.png).
    Returns the paths written. Needs nibabel (extra ``medical``) for the volumes."""
    from pathlib import Path

    from PIL import Image

    from medsam_agent_rt.io.nifti import import_nibabel

    nib = import_nibabel()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for s in range(seed, seed + n):
        vol = phantom_volume(s, depth, size)
        z, y, x = vol.spacing
        affine = np.diag([x, y, z, 1.0])
        path = out / f"volume_{s}.nii.gz"
        nib.save(nib.Nifti1Image(vol.frames.transpose(2, 1, 0).astype(np.int16), affine), str(path))
        written.append(path)
        for target, m in vol.masks.items():
            p = out / f"volume_{s}_{target}.nii.gz"
            nib.save(nib.Nifti1Image(m.transpose(2, 1, 0).astype(np.uint8), affine), str(p))
            written.append(p)
        vid = phantom_video(s, depth, size)
        root = out / f"video_{s}"
        (root / "frames").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(exist_ok=True)
        for i, (f, m) in enumerate(zip(vid.frames, vid.masks["polyp"])):
            Image.fromarray(f).save(root / "frames" / f"{i:05d}.png")
            Image.fromarray(m.astype(np.uint8) * 255).save(root / "masks" / f"{i:05d}.png")
        written.append(root)
    return written
