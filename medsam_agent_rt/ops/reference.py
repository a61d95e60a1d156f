"""NumPy reference implementations of every kernel: slow, obviously correct, the spec.

Each function here defines the exact semantics that ``csrc/cpu/<op>.cpp`` and
``csrc/cuda/<op>.cu`` must reproduce: bit-exact for integer/binary outputs, within the stated
tolerance for floats. The public API (with argument validation and backend dispatch) lives in the
sibling modules and is re-exported by ``medsam_agent_rt.ops``; call those, not these.

Shapes use H, W for image rows/columns, N for a batch of masks, S for prompt slots, C for the
embedding width. Coordinates are (x, y) = (column, row) in pixels.
"""

from __future__ import annotations

from collections import deque

import numpy as np

# ============================================================================ mask metrics


def binarize(mask: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """bool -> as is; integer -> ``!= 0``; floating (logits/probabilities) -> ``> threshold``."""
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        return mask
    if np.issubdtype(mask.dtype, np.floating):
        return mask > threshold
    return mask != 0


def mask_counts(
    pred: np.ndarray, ref: np.ndarray, threshold: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-mask pixel counts between N predictions and one (broadcast) or N references.

    pred: (N, H, W) or (H, W); ref: (H, W) or (N, H, W); each bool / uint8 / float (see
    :func:`binarize`); a single mask (2-D or length 1) on either side is broadcast.
    Returns int64 arrays of shape (N,): intersection, pred_area, ref_area.
    """
    p = binarize(pred, threshold)
    r = binarize(ref, threshold)
    p = p[None] if p.ndim == 2 else p
    r = r[None] if r.ndim == 2 else r
    inter = np.logical_and(p, r).sum(axis=(1, 2), dtype=np.int64)
    n = inter.shape[0]  # a single mask on either side broadcasts
    pa = np.broadcast_to(p.sum(axis=(1, 2), dtype=np.int64), (n,)).copy()
    ra = np.broadcast_to(r.sum(axis=(1, 2), dtype=np.int64), (n,)).copy()
    return inter, pa, ra


def iou_dice_from_counts(
    inter: np.ndarray, pred_area: np.ndarray, ref_area: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """IoU = I / U and Dice = 2I / (|P| + |R|), float64; both masks empty -> 1.0 (PROTOCOL.md)."""
    inter = np.asarray(inter, np.int64)
    total = np.asarray(pred_area, np.int64) + np.asarray(ref_area, np.int64)
    union = total - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
        dice = np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))
    return iou.astype(np.float64), dice.astype(np.float64)


# ============================================================================ prompt-embedding fusion

# Label codes of SAM's sparse prompt tokens (the ONNX convention of segment-anything):
LABEL_PAD, LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_BOX_CORNER1, LABEL_BOX_CORNER2 = -1, 0, 1, 2, 3


def sam_prompt_tokens(
    points: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The token list SAM's PromptEncoder builds: points, then ONE pad token when there is no box,
    then the two box corners (labels 2, 3). Coordinates stay in model-input pixels.

    points: (N, 2) float (x, y) or None; labels: (N,) int in {0, 1}; box: (4,) x1, y1, x2, y2.
    Returns coords (S, 2) float32 and labels (S,) int32.
    """
    coords, labs = [], []
    if points is not None and len(points):
        coords.append(np.asarray(points, np.float32).reshape(-1, 2))
        labs.append(np.asarray(labels, np.int32).reshape(-1))
        if box is None:
            coords.append(np.zeros((1, 2), np.float32))
            labs.append(np.array([LABEL_PAD], np.int32))
    if box is not None:
        coords.append(np.asarray(box, np.float32).reshape(2, 2))
        labs.append(np.array([LABEL_BOX_CORNER1, LABEL_BOX_CORNER2], np.int32))
    if not coords:
        return np.zeros((0, 2), np.float32), np.zeros((0,), np.int32)
    return np.concatenate(coords), np.concatenate(labs)


def encode_sparse_prompts(
    coords: np.ndarray,
    labels: np.ndarray,
    gaussian_matrix: np.ndarray,
    label_embeddings: np.ndarray,
    input_size: tuple[int, int],
    num_slots: int | None = None,
) -> np.ndarray:
    """SAM's sparse prompt embedding of S tokens in one pass.

    coords: (S, 2) float (x, y) in model-input pixels (e.g. 0..1024); labels: (S,) int in
    {-1 pad, 0 negative, 1 positive, 2 box corner 1, 3 box corner 2}; gaussian_matrix: (2, C/2)
    float32 (``pe_layer.positional_encoding_gaussian_matrix``); label_embeddings: (5, C) float32,
    rows [not_a_point, negative, positive, corner1, corner2]; input_size: (H, W) of the model's
    (padded) input frame. num_slots pads with not-a-point tokens to a fixed count.

    Token value: pad -> not_a_point only; otherwise PE(coord + 0.5) + label_embeddings[label + 1],
    with PE(p) = [sin(2*pi*q @ G), cos(2*pi*q @ G)], q = 2 * (p / (W, H)) - 1.
    Returns (num_slots or S, C) float32 (computed in float64, rounded once).
    """
    coords = np.asarray(coords, np.float64).reshape(-1, 2)
    labels = np.asarray(labels, np.int64).reshape(-1)
    g = np.asarray(gaussian_matrix, np.float64)
    emb = np.asarray(label_embeddings, np.float64)
    h, w = input_size
    q = (coords + 0.5) / np.array([w, h], np.float64)
    q = 2.0 * q - 1.0
    proj = 2.0 * np.pi * (q @ g)
    pe = np.concatenate([np.sin(proj), np.cos(proj)], axis=-1)
    pe[labels == LABEL_PAD] = 0.0
    out = pe + emb[labels + 1]
    s = len(labels)
    if num_slots is not None:
        if s > num_slots:
            raise ValueError(f"{s} prompt tokens do not fit in num_slots={num_slots}")
        pad = np.broadcast_to(emb[0], (num_slots - s, emb.shape[1]))
        out = np.concatenate([out, pad], axis=0)
    return out.astype(np.float32)


# ============================================================================ connected components


def _neighbour_offsets(connectivity: int) -> list[tuple[int, int]]:
    if connectivity == 4:
        return [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        return [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")


def label_components(
    mask: np.ndarray, connectivity: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label the foreground (non-zero) pixels of a 2-D mask by flood fill.

    Labels are 1..K in raster order of each component's first pixel (scipy.ndimage.label's order);
    background is 0. Returns labels (H, W) int32, areas (K,) int64 and boxes (K, 4) int64 as
    inclusive (x0, y0, x1, y1).
    """
    m = binarize(mask)
    h, w = m.shape
    offsets = _neighbour_offsets(connectivity)
    labels = np.zeros((h, w), np.int32)
    areas: list[int] = []
    boxes: list[list[int]] = []
    for y0, x0 in zip(*np.nonzero(m)):
        if labels[y0, x0]:
            continue
        k = len(areas) + 1
        labels[y0, x0] = k
        queue = deque([(y0, x0)])
        area, bx = 0, [x0, y0, x0, y0]
        while queue:
            y, x = queue.popleft()
            area += 1
            bx = [min(bx[0], x), min(bx[1], y), max(bx[2], x), max(bx[3], y)]
            for dy, dx in offsets:
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and m[yy, xx] and not labels[yy, xx]:
                    labels[yy, xx] = k
                    queue.append((yy, xx))
        areas.append(area)
        boxes.append([int(v) for v in bx])
    return (
        labels,
        np.asarray(areas, np.int64),
        np.asarray(boxes, np.int64).reshape(-1, 4),
    )


def count_components(mask: np.ndarray, connectivity: int = 8) -> int:
    """Number of foreground components."""
    return len(label_components(mask, connectivity)[1])


def keep_largest_component(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """The largest component as a bool mask (ties: the lowest label); empty in -> empty out."""
    labels, areas, _ = label_components(mask, connectivity)
    if len(areas) == 0:
        return np.zeros(labels.shape, np.bool_)
    return labels == int(np.argmax(areas)) + 1


def fill_holes(mask: np.ndarray, max_area: int | None = None, connectivity: int = 8) -> np.ndarray:
    """Fill background components that do not touch the image border and have area <= max_area
    (None: every hole). Holes use the complementary connectivity (4 for an 8-connected foreground,
    8 for a 4-connected one). Returns a bool mask."""
    m = binarize(mask)
    hole_conn = 4 if connectivity == 8 else 8
    _neighbour_offsets(connectivity)  # validates
    labels, areas, boxes = label_components(~m, hole_conn)
    h, w = m.shape
    out = m.copy()
    for k, (area, (x0, y0, x1, y1)) in enumerate(zip(areas, boxes), start=1):
        touches_border = x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1
        if not touches_border and (max_area is None or area <= max_area):
            out[labels == k] = True
    return out


# ============================================================================ distance transform + click


def squared_distance_transform(mask: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance (int64) from each non-zero pixel to the nearest zero pixel;
    zero pixels get 0. A mask with no zero pixel gets -1 everywhere (no distance defined).

    Separable: per column, the 1-D distance to the nearest zero; per row, the lower envelope
    min over x' of g(x')^2 + (x - x')^2 (brute force over x', exact integers)."""
    m = binarize(mask)
    h, w = m.shape
    if m.all():
        return np.full((h, w), -1, np.int64)
    big = h + w + 1  # larger than any in-image distance
    g = np.full((h, w), big, np.int64)
    run = np.full(w, big, np.int64)
    for y in range(h):
        run = np.where(m[y], np.minimum(run + 1, big), 0)
        g[y] = run
    run = np.full(w, big, np.int64)
    for y in range(h - 1, -1, -1):
        run = np.where(m[y], np.minimum(run + 1, big), 0)
        g[y] = np.minimum(g[y], run)
    xs = np.arange(w, dtype=np.int64)
    dx2 = (xs[:, None] - xs[None, :]) ** 2  # (x, x')
    out = np.empty((h, w), np.int64)
    for y in range(h):
        out[y] = np.min(g[y][None, :] ** 2 + dx2, axis=1)
    return out


def distance_transform(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance transform, float32 (sqrt of the exact integer squared distance,
    taken in float64 and rounded once), equal to ``scipy.ndimage.distance_transform_edt`` to
    float32 rounding. A mask with no zero pixel gets +inf everywhere."""
    d2 = squared_distance_transform(mask)
    out = np.sqrt(np.maximum(d2, 0).astype(np.float64))
    out[d2 < 0] = np.inf
    return out.astype(np.float32)


def error_regions(
    pred: np.ndarray, gt: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The two distance maps the click simulator of PROTOCOL.md chooses from.

    FN = gt & ~pred, FP = pred & ~gt; each padded with a 1-px zero border and distance-transformed
    (so image edges count as boundary); pixels in ``exclude`` ((K, 2) int (x, y), already clicked;
    entries outside the image are ignored) are set to 0 in both maps.
    Returns (dist_fn, dist_fp), each (H, W) float32.
    """
    p, g = binarize(pred), binarize(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    d_fn = distance_transform(np.pad(g & ~p, 1))[1:-1, 1:-1]
    d_fp = distance_transform(np.pad(p & ~g, 1))[1:-1, 1:-1]
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, np.int64).reshape(-1, 2)
        inside = (
            (ex[:, 0] >= 0) & (ex[:, 0] < p.shape[1]) & (ex[:, 1] >= 0) & (ex[:, 1] < p.shape[0])
        )
        ex = ex[inside]
        d_fn[ex[:, 1], ex[:, 0]] = 0.0
        d_fp[ex[:, 1], ex[:, 0]] = 0.0
    return d_fn, d_fp


def next_click(
    pred: np.ndarray, gt: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[int, int, bool, float] | None:
    """The interactive-segmentation click simulator of PROTOCOL.md.

    Distance maps of the FN and FP regions as :func:`error_regions` (1-px zero border, exclusions
    at 0). The map with the larger maximum wins (ties -> negative, as RITM's
    ``fn_max > fp_max``); the click is its argmax, first in row-major order.
    Returns (x, y, positive, distance) or None when the prediction is already perfect (both maxima 0).
    """
    d_fn, d_fp = error_regions(pred, gt, exclude)
    fn_max, fp_max = float(d_fn.max(initial=0.0)), float(d_fp.max(initial=0.0))
    if fn_max == 0.0 and fp_max == 0.0:
        return None
    positive = fn_max > fp_max
    d = d_fn if positive else d_fp
    flat = int(np.argmax(d))
    y, x = divmod(flat, d.shape[1])
    return int(x), int(y), bool(positive), float(d[y, x])


# ============================================================================ mask post-processing


def _bilinear_axis(
    in_size: int, out_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's align_corners=False source indices and weights along one axis.

    Computed as torch does, in float32: scale = in / out; src = scale * (o + 0.5) - 0.5 as ONE
    rounding (torch's vectorised CPU kernels and its CUDA kernel contract it into an FMA; the
    product is exact in float64, so float64 then one cast to float32 is that FMA); src < 0 -> 0;
    i0 = min(floor(src), in - 1); lambda = clamp(src - i0, 0, 1); weights (1 - lambda, lambda) in
    float32. (Float64 index math moves results by up to ~1e-3 for non-power-of-two sizes.)
    Returns i0, i1 (int64) and w0, w1 (float64 holding the float32 weights)."""
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    o = np.arange(out_size, dtype=np.float64)
    src = (scale * (o + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0))
    return i0, i1, (np.float32(1.0) - lam).astype(np.float64), lam.astype(np.float64)


def resize_bilinear(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(N, h, w) -> (N, H, W) float64, as ``F.interpolate(mode='bilinear', align_corners=False)``
    (torch's float32 indices and weights, blended in float64)."""
    x = np.asarray(x, np.float64)
    y0, y1, wy0, wy1 = _bilinear_axis(x.shape[-2], out_hw[0])
    x0, x1, wx0, wx1 = _bilinear_axis(x.shape[-1], out_hw[1])
    rows = x[..., y0, :] * wy0[:, None] + x[..., y1, :] * wy1[:, None]
    return rows[..., x0] * wx0 + rows[..., x1] * wx1


def postprocess_masks(
    low_res_logits: np.ndarray,
    input_size: tuple[int, int],
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """SAM's ``postprocess_masks`` then a threshold.

    low_res_logits (N, h, w) float -> bilinear to input_size (the padded model input, e.g.
    (1024, 1024)) -> crop [:rh, :rw] (resized_size, the image inside the padding) -> bilinear to
    original_size (H, W). Returns (logits (N, H, W) float32, masks (N, H, W) bool = logits >
    threshold); computed in float64 and rounded once to float32; the mask compares that float32
    logit with the threshold in float32, as torch and NumPy do for ``float32_array > float``,
    so masks always equal ``logits > threshold``.
    """
    x = np.asarray(low_res_logits, np.float64)
    up = resize_bilinear(x, input_size)[..., : resized_size[0], : resized_size[1]]
    out = resize_bilinear(up, original_size).astype(np.float32)
    return out, out > np.float32(threshold)


# ============================================================================ overlay rendering


def overlay_alpha_weight(alpha: float) -> int:
    """alpha in [0, 1] as the 8-bit fixed-point weight the blend uses (0.5 -> 128)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return int(round(alpha * 256))


def render_overlay(
    view: np.ndarray,
    mask: np.ndarray,
    content_box: tuple[int, int, int, int],
    color: tuple[int, int, int] = (0, 255, 0),
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend ``color`` over the pixels of ``view`` covered by ``mask``.

    view: (V, V, 3) uint8, the letterboxed observation image; mask: (H, W) at image resolution;
    content_box: (x0, y0, w, h), where the image sits inside the view. The mask is resized by
    nearest neighbour at pixel centres, in exact integers: view pixel (vx, vy) in the box reads
    mask[((2 (vy - y0) + 1) H) // (2 h), ((2 (vx - x0) + 1) W) // (2 w)]. Covered pixels become
    (v (256 - a) + c a + 128) >> 8 with a = round(256 alpha) (alpha 0.5 -> round-half-up mean).
    Returns a new (V, V, 3) uint8 array.
    """
    view = np.asarray(view, np.uint8)
    m = binarize(mask)
    x0, y0, bw, bh = content_box
    hh, ww = m.shape
    vy = np.arange(bh, dtype=np.int64)
    vx = np.arange(bw, dtype=np.int64)
    sy = ((2 * vy + 1) * hh) // (2 * bh)
    sx = ((2 * vx + 1) * ww) // (2 * bw)
    covered = np.zeros(view.shape[:2], np.bool_)
    covered[y0 : y0 + bh, x0 : x0 + bw] = m[sy[:, None], sx[None, :]]
    a = overlay_alpha_weight(alpha)
    blended = (view.astype(np.int32) * (256 - a) + np.asarray(color, np.int32) * a + 128) >> 8
    out = view.copy()
    out[covered] = blended[covered].astype(np.uint8)
    return out
