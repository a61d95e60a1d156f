"""Image checks, the official resize / normalise / pad of each family, and the mapping of prompt
coordinates from original-image pixels to the model input frame. NumPy only (PIL for SAM's
bilinear resize; cv2 when installed for LiteMedSAM's INTER_AREA, with an exact-where-it-matters
NumPy fallback; scipy for MedSAM's skimage-equivalent spline resize).
"""

from __future__ import annotations

import numpy as np

from medsam_agent_rt.segmenters.base import Preprocessing

_CONVERT_HINT = (
    "convert it to 8-bit first: window CT/MR intensities (medsam_agent_rt's DICOM/NIfTI readers "
    "do it) or rescale, e.g. np.clip((x - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)"
)


def as_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W) or (H, W, 1) grayscale -> replicated to RGB; (H, W, 4) RGBA -> alpha dropped;
    (H, W, 3) uint8 kept. Other dtypes (uint16, float, bool) are rejected with a conversion hint.
    Returns a C-contiguous (H, W, 3) uint8 array."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 (RGB or grayscale), got {image.dtype} {image.shape}; "
            + _CONVERT_HINT
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{name} must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def resized_size(original_size: tuple[int, int], pre: Preprocessing) -> tuple[int, int]:
    """(rows, cols) of the image inside the model input frame; every side is at least 1 pixel
    (an extreme aspect ratio such as 1 x 5000 would otherwise round a side to 0)."""
    rows, cols = pre.resized_size(original_size)
    return max(1, int(rows)), max(1, int(cols))


# ----------------------------------------------------------------------------- resize methods


def resize_bilinear_pil(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """SAM's ResizeLongestSide.apply_image: PIL bilinear (with its built-in antialiasing) on the
    uint8 image; size (rows, cols)."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of box (area) averaging, as cv2's computeResizeAreaTab (n_in >= n_out)."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in), np.float64)
    for d in range(n_out):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, n_in - f1)
        s1 = int(np.ceil(f1))
        s2 = min(int(np.floor(f2)), n_in - 1)
        s1 = min(s1, s2)
        if s1 - f1 > 1e-3:
            w[d, s1 - 1] += (s1 - f1) / cell
        w[d, s1:s2] += 1.0 / cell
        if f2 - s2 > 1e-3:
            w[d, s2] += min(f2 - s2, 1.0, cell) / cell
    return w


def _area_up_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) two-tap weights cv2 uses for INTER_AREA when enlarging (n_out > n_in)."""
    scale = n_in / n_out
    inv = n_out / n_in
    w = np.zeros((n_out, n_in), np.float64)
    for d in range(n_out):
        s = int(np.floor(d * scale))
        f = (d + 1) - (s + 1) * inv
        f = 0.0 if f <= 0 else f - np.floor(f)
        s0, s1 = min(max(s, 0), n_in - 1), min(max(s + 1, 0), n_in - 1)
        w[d, s0] += 1.0 - f
        w[d, s1] += f
    return w


def resize_area_numpy(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize(..., INTER_AREA) in NumPy for (H, W, C) uint8; size (rows, cols).

    Bit-exact with cv2 for integer shrink factors (the common 1024 -> 256 case: block sums, 2x2
    rounded half up, other factors ``rint(float32(sum) * float32(1 / area))``); for other factors
    the same area weights in float64, so a value can differ by 1 where cv2's float32 sum lands
    within rounding of .5."""
    h, w = image.shape[:2]
    oh, ow = size
    if (oh, ow) == (h, w):
        return image.copy()
    if h % oh == 0 and w % ow == 0:
        fy, fx = h // oh, w // ow
        sums = image.reshape(oh, fy, ow, fx, -1).astype(np.int64).sum(axis=(1, 3))
        if fy == 2 and fx == 2:
            out = (sums + 2) >> 2
        else:
            out = np.rint(sums.astype(np.float32) * np.float32(1.0 / (fy * fx)))
        return np.clip(out, 0, 255).astype(np.uint8)
    if oh <= h and ow <= w:  # cv2 uses true area weights only when no axis grows
        wy, wx = _area_weights(h, oh), _area_weights(w, ow)
    else:
        wy, wx = _area_up_weights(h, oh), _area_up_weights(w, ow)
    out = np.einsum("ij,jkc,lk->ilc", wy, image.astype(np.float64), wx, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """LiteMedSAM's cv2.resize INTER_AREA; cv2 when importable, else :func:`resize_area_numpy`."""
    try:
        import cv2
    except ImportError:
        return resize_area_numpy(image, size)
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def resize_cubic_spline(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """MedSAM's ``skimage.transform.resize(img, size, order=3, preserve_range=True,
    anti_aliasing=True).astype(np.uint8)``, computed with the scipy.ndimage calls skimage makes
    (Gaussian pre-filter with sigma = max(0, (factor - 1) / 2), 'mirror' boundary, order-3 spline
    zoom on the pixel grid, clip to the input range), then truncation to uint8 as MedSAM does."""
    try:
        from scipy import ndimage
    except ImportError as e:
        raise ImportError(
            "MedSAM preprocessing (skimage-style cubic-spline resize) needs scipy: "
            "pip install scipy"
        ) from e
    x = image.astype(np.float64)
    out_shape = (size[0], size[1], x.shape[2])
    factors = np.divide(x.shape, out_shape)
    sigma = np.maximum(0.0, (factors - 1.0) / 2.0)
    if np.any(sigma > 0):
        x_f = ndimage.gaussian_filter(x, sigma, cval=0.0, mode="mirror")
    else:
        x_f = x
    out = ndimage.zoom(x_f, 1.0 / factors, order=3, mode="mirror", cval=0.0, grid_mode=True)
    np.clip(out, x.min(), x.max(), out=out)
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------- the pipeline


def preprocess_image(image: np.ndarray, pre: Preprocessing) -> tuple[np.ndarray, tuple[int, int]]:
    """(H, W, 3) uint8 RGB -> ((1, 3, S, S) float32 model input, (rows, cols) of the resized
    image inside it). Resize (per ``pre.interpolation``), normalise (over the resized image),
    zero-pad bottom/right to S = ``pre.input_size``."""
    image = as_rgb_uint8(image)
    size = resized_size(image.shape[:2], pre)
    if pre.interpolation == "bilinear":
        resized = resize_bilinear_pil(image, size) if size != image.shape[:2] else image
    elif pre.interpolation == "area":
        resized = resize_area(image, size)
    elif pre.interpolation == "cubic_spline":
        resized = resize_cubic_spline(image, size)
    else:
        raise ValueError(f"unknown interpolation {pre.interpolation!r}")
    if pre.normalize == "mean_std":
        mean = np.asarray(pre.pixel_mean, np.float32)
        std = np.asarray(pre.pixel_std, np.float32)
        x = (resized.astype(np.float32) - mean) / std
    elif pre.normalize == "minmax":
        lo, hi = int(resized.min()), int(resized.max())
        x = ((resized - lo) / np.clip(hi - lo, 1e-8, None)).astype(np.float32)
    else:
        raise ValueError(f"unknown normalize {pre.normalize!r}")
    s = pre.input_size
    out = np.zeros((1, 3, s, s), np.float32)
    out[0, :, : size[0], : size[1]] = x.transpose(2, 0, 1)
    return out, size


def to_input_coords(
    coords: np.ndarray, original_size: tuple[int, int], pre: Preprocessing
) -> np.ndarray:
    """(..., 2) (x, y) original-image pixels -> model-input pixels (float32), per the family's
    official mapping (``pre.coord_rounding``)."""
    xy = np.asarray(coords, np.float64)
    h, w = original_size
    if pre.coord_rounding == "floor":
        return np.floor(xy * (pre.input_size / max(h, w))).astype(np.float32)
    rh, rw = resized_size(original_size, pre)
    return (xy * np.array([rw / w, rh / h])).astype(np.float32)
