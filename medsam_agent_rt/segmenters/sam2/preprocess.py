"""SAM2's image transforms in NumPy (no torch, no torchvision): SAM2Transforms resizes the
[0, 1] float image to S x S with torchvision's antialiased bilinear ``Resize`` (aspect not kept),
then normalises with ImageNet mean/std; masks come back by plain bilinear upsampling of the
low-res logits to the original size (align_corners=False).
"""

from __future__ import annotations

from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _aa_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of torch's antialiased bilinear resize (PIL's triangle filter
    stretched by the scale when shrinking, renormalised at the borders)."""
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        f = np.clip(1.0 - np.abs((j - center + 0.5) * inv), 0.0, None)
        total = f.sum()
        if total > 0:
            w[i, lo:hi] = f / total
    return w


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of bilinear interpolation, align_corners=False, no antialias; the
    source position is computed in float32 as torch does (its rounding moves the weights by
    up to ~1e-5 at 1000 px, which float64 positions would not reproduce)."""
    scale = np.float64(np.float32(n_in / n_out))
    src = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)  # one rounding (fma)
    src = np.clip(src, np.float32(0.0), None)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    w = np.zeros((n_out, n_in), np.float64)
    np.add.at(w, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(w, (np.arange(n_out), i1), frac)
    return w


def preprocess(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, size, size) float32: /255, antialiased bilinear resize to
    size x size, ImageNet normalisation."""
    x = image.astype(np.float32) / np.float32(255.0)
    h, w = x.shape[:2]
    wy = _aa_weights(h, size).astype(np.float32)
    wx = _aa_weights(w, size).astype(np.float32)
    out = np.einsum("ij,jkc->ikc", wy, x)
    out = np.einsum("ikc,lk->ilc", out, wx)
    out = (out - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None], np.float32)


def upsample_logits(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) low-res logits -> (C, H, W) float32 by bilinear interpolation."""
    wy = _bilinear_weights(low.shape[1], size[0]).astype(np.float32)
    wx = _bilinear_weights(low.shape[2], size[1]).astype(np.float32)
    return np.einsum("ij,cjk,lk->cil", wy, low.astype(np.float32), wx, optimize=True)


def to_input_coords(xy: np.ndarray, original_size: tuple[int, int], size: int) -> np.ndarray:
    """(..., 2) (x, y) original px -> model-input px: x * S / W, y * S / H (float32)."""
    h, w = original_size
    return (np.asarray(xy, np.float64) * np.array([size / w, size / h])).astype(np.float32)


def prompt_tokens(
    points: Any | None, labels: Any | None, box: Any | None
) -> tuple[list[list[float]], list[int]]:
    """SAM2's token list in model-input px: box corners (labels 2, 3) first, then the clicks, then
    one padding point (0, 0) with label -1 (SAM2 always pads: boxes enter as points). No box and
    no clicks (a mask-only prompt) gives no tokens at all."""
    if box is None and points is None:
        return [], []
    coords: list[list[float]] = []
    labs: list[int] = []
    if box is not None:
        b = [float(v) for v in list(box)]
        coords += [[b[0], b[1]], [b[2], b[3]]]
        labs += [2, 3]
    if points is not None:
        for (x, y), lab in zip(points, labels):
            coords.append([float(x), float(y)])
            labs.append(int(lab))
    coords.append([0.0, 0.0])
    labs.append(-1)
    return coords, labs
