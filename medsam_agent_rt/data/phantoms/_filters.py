"""Filters for the phantoms (pure NumPy; Pillow only to upsample low-resolution noise):
Gaussian blur, smooth and fine noise, smoothstep, binary erosion and dilation."""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def _box_1d(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Mean over a window of 2r+1 along ``axis`` (edge-replicated), float32."""
    n = a.shape[axis]

    def sl(lo: int, hi: int) -> tuple:
        s = [slice(None)] * a.ndim
        s[axis] = slice(lo, hi)
        return tuple(s)

    padded = np.concatenate(
        [np.repeat(a[sl(0, 1)], r + 1, axis), a, np.repeat(a[sl(n - 1, n)], r, axis)], axis=axis
    )
    c = np.cumsum(padded, axis=axis, dtype=np.float32)
    out = c[sl(2 * r + 1, 2 * r + 1 + n)] - c[sl(0, n)]
    out *= F32(1.0 / (2 * r + 1))
    return out


def _box_widths(sigma: float, n: int = 3) -> list[int]:
    """Odd box widths whose ``n`` successive passes have variance close to sigma^2 (Wells'
    rule: some passes of width wl, the rest wl + 2)."""
    ideal = math.sqrt(12.0 * sigma * sigma / n + 1.0)
    wl = int(math.floor(ideal))
    if wl % 2 == 0:
        wl -= 1
    wu = wl + 2
    m = int(round((12.0 * sigma * sigma - n * wl * wl - 4 * n * wl - 3 * n) / (-4 * wl - 4)))
    return [wl] * m + [wu] * (n - m)


def _gauss_1d(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Direct convolution with a sampled Gaussian (radius 3 sigma, edge-replicated)."""
    r = max(1, int(math.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(F32)
    n = a.shape[axis]
    idx = np.clip(np.arange(-r, n + r), 0, n - 1)
    p = np.take(a, idx, axis=axis)
    out = np.zeros(a.shape, F32)
    for t, w in enumerate(k):
        out += w * np.take(p, np.arange(t, t + n), axis=axis)
    return out


def _blur_rows(a: np.ndarray, sigma: float) -> np.ndarray:
    """Blur along axis 1 of a contiguous (H, W) float32 array."""
    if sigma < 0.3:
        return a
    if sigma < 2.5:
        return _gauss_1d(a, sigma, 1)
    for w in _box_widths(sigma):
        r = min((w - 1) // 2, max(1, a.shape[1] // 2))
        if r > 0:
            a = _box_1d(a, r, 1)
    return a


def blur(a: np.ndarray, sigma_px: float, sigma_px_x: float | None = None) -> np.ndarray:
    """Gaussian blur of a float (H, W) or (H, W, C) array (sampled kernel for sigma < 2.5 px,
    three box passes above); ``sigma_px_x`` gives a different horizontal sigma. float32."""
    a = np.asarray(a, dtype=F32)
    if a.ndim == 3:
        return np.stack([blur(a[:, :, c], sigma_px, sigma_px_x) for c in range(a.shape[2])], 2)
    out = _blur_rows(a, sigma_px if sigma_px_x is None else sigma_px_x)
    if sigma_px >= 0.3:  # rows are contiguous: blur the transpose along its rows
        out = np.ascontiguousarray(_blur_rows(np.ascontiguousarray(out.T), sigma_px).T)
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise (H, W) float32 with about ``cells`` features across the
    shorter side (bicubic upsampling of a small Gaussian field)."""
    from PIL import Image

    h, w = shape
    short = min(h, w)
    gh = max(2, int(round(cells * h / short)) + 2)
    gw = max(2, int(round(cells * w / short)) + 2)
    small = rng.standard_normal((gh, gw)).astype(F32)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=F32)
    big = big - big.mean()
    sd = float(big.std())
    return big / sd if sd > 0 else big


def fine_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Unit-std Gaussian noise correlated over ``sigma_px`` pixels (float32)."""
    n = rng.standard_normal(shape, dtype=F32)
    if sigma_px >= 0.4:
        n = blur(n, sigma_px)
        sd = float(n.std())
        if sd > 0:
            n /= sd
    return n


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 (x <= edge0) to 1 (x >= edge1), float32."""
    t = np.clip((x - F32(edge0)) / F32(edge1 - edge0), 0.0, 1.0)
    return t * t * (F32(3.0) - F32(2.0) * t)


def erode(mask: np.ndarray, r_px: int) -> np.ndarray:
    """Binary erosion of a bool (H, W) mask by a (2r+1)^2 square (outside the image counts as
    background)."""
    if r_px <= 0:
        return mask.copy()
    m = np.pad(mask.astype(F32), r_px + 1, mode="constant")
    m = _box_1d(_box_1d(m, r_px, 0), r_px, 1)
    return (m > F32(1.0 - 1e-4))[r_px + 1 : -r_px - 1, r_px + 1 : -r_px - 1]


def dilate(mask: np.ndarray, r_px: int) -> np.ndarray:
    """Binary dilation of a bool (H, W) mask by a (2r+1)^2 square."""
    if r_px <= 0:
        return mask.copy()
    m = _box_1d(_box_1d(mask.astype(F32), r_px, 0), r_px, 1)
    return m > F32(1e-4)
