"""Iterative click simulation and losses for fine-tuning LiteMedSAM in its 256 x 256 frame.

Everything here lives in the model-input frame (see ``tool_data``): masks (256, 256) bool with
the resized image in the top-left ``resized`` rows x cols, prompts in frame pixels (x, y).

- Opening prompts: a GT box jittered per coordinate, or one positive click drawn among the GT
  pixels at least half as deep as the deepest one (distance to the boundary).
- Corrective clicks: the larger error region (false negative -> positive click, false positive
  -> negative) of the current mask, through the package's kernels: ``ops.next_click`` (the rule
  the evaluation's clicker uses) or a pixel drawn among the near-maximum pixels of
  ``ops.error_regions`` (variety, as RITM / SAM sample inside the error region).
- Token layout = ``ops.sam_prompt_tokens``: the points, a pad token (label -1) when there is no
  box, then the two box corners (labels 2, 3).
- Loss per iteration (SAM): 20 * focal (alpha 0.25, gamma 2) + Dice on the single-mask output
  (token 0), plus the MSE between the IoU head and the mask's actual IoU; pixels outside the
  resized image (the padding) are ignored. Box preservation: ``binary_kl`` of the box-only
  logits to a frozen teacher's (the base LiteMedSAM decoder).
"""

from __future__ import annotations

import numpy as np

from medsam_agent_rt import ops

#: the carrying strategies training alternates between (segmenters.prompt_chain)
TRAIN_STRATEGIES = ("box+all_clicks+prev_logits", "box+all_clicks")


def valid_region(resized: tuple[int, int], size: int = 256) -> np.ndarray:
    v = np.zeros((size, size), np.bool_)
    v[: resized[0], : resized[1]] = True
    return v


def _tight_box(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4,) float x1 y1 x2 y2 of the mask's tight box and (4,) the side each coordinate moves
    along (w, h, w, h), in px."""
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
    w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
    return box, np.array([w, h, w, h])


def _clip_to_frame(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Round a (4,) box to px and clip it to an (H, W) frame."""
    hi = shape[1] - 1, shape[0] - 1, shape[1] - 1, shape[0] - 1
    return np.clip(np.round(box), 0, hi)


def jittered_box(gt: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """(4,) x1 y1 x2 y2 frame px: the tight GT box, each side moved by up to ``jitter`` x the
    box side (uniform), clipped to the frame."""
    box, sides = _tight_box(gt)
    if jitter > 0:
        box += rng.uniform(-jitter, jitter, 4) * sides
    box = _clip_to_frame(box, gt.shape)
    if box[2] < box[0]:
        box[[0, 2]] = box[[2, 0]]
    if box[3] < box[1]:
        box[[1, 3]] = box[[3, 1]]
    return box


def grown_box(gt: np.ndarray, rng: np.random.Generator, grow: float) -> np.ndarray:
    """(4,) x1 y1 x2 y2 frame px: the tight GT box with each side pushed outward by U(0, grow) x
    the box side, clipped to the frame (the loose box a policy draws around a target)."""
    box, sides = _tight_box(gt)
    box += np.array([-1, -1, 1, 1]) * rng.uniform(0, grow, 4) * sides
    return _clip_to_frame(box, gt.shape)


def _deep_pixel(dist: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """(x, y) drawn uniformly among pixels with distance >= half the maximum."""
    ys, xs = np.nonzero(dist >= 0.5 * float(dist.max()))
    i = int(rng.integers(len(xs)))
    return int(xs[i]), int(ys[i])


def first_click(gt: np.ndarray, rng: np.random.Generator, centre: bool) -> tuple[int, int, int]:
    """A positive opening click (x, y, 1): the kernel's rule (``centre``) or a deep GT pixel."""
    empty = np.zeros_like(gt)
    if centre:
        c = ops.next_click(empty, gt)
        return c.x, c.y, 1
    d_fn, _ = ops.error_regions(empty, gt)
    x, y = _deep_pixel(np.asarray(d_fn), rng)
    return x, y, 1


def corrective_click(
    pred: np.ndarray, gt: np.ndarray, clicked: list, rng: np.random.Generator, centre: bool
) -> tuple[int, int, int]:
    """(x, y, label) from the larger error region of ``pred`` (never on a ``clicked`` (x, y));
    a positive deep GT pixel when pred == gt (keeps every sample's token count equal)."""
    ex = np.asarray(clicked, np.int64).reshape(-1, 2) if clicked else None
    if centre:
        c = ops.next_click(pred, gt, ex)
        if c is not None:
            return c.x, c.y, int(c.positive)
    else:
        d_fn, d_fp = (np.asarray(d) for d in ops.error_regions(pred, gt, ex))
        fn_max, fp_max = float(d_fn.max()), float(d_fp.max())
        if max(fn_max, fp_max) > 0:
            positive = fn_max > fp_max
            x, y = _deep_pixel(d_fn if positive else d_fp, rng)
            return x, y, int(positive)
    x, y, _ = first_click(gt, rng, centre=False)
    return x, y, 1


def prompt_tokens(clicks: list, box: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(S, 2) float32 frame coords and (S,) int64 labels in the ops token layout."""
    coords = [[x, y] for x, y, _ in clicks]
    labels = [lab for _, _, lab in clicks]
    if box is None:
        coords.append([0.0, 0.0])
        labels.append(-1)
    else:
        coords += [[box[0], box[1]], [box[2], box[3]]]
        labels += [2, 3]
    return np.asarray(coords, np.float32), np.asarray(labels, np.int64)


def binary_kl(logits, teacher_logits, valid):
    """(B,) mean over ``valid`` pixels of KL(Bernoulli(sigmoid(teacher)) || Bernoulli(sigmoid(
    logits))); logits / teacher_logits / valid (B, h, w) (valid float 0/1)."""
    import torch

    f = torch.nn.functional
    q = torch.sigmoid(teacher_logits)
    kl = f.binary_cross_entropy_with_logits(logits, q, reduction="none") - (
        f.binary_cross_entropy_with_logits(teacher_logits, q, reduction="none")
    )
    return (kl * valid).sum((1, 2)) / valid.sum((1, 2)).clamp(min=1)


def losses(logits, iou_pred, gt, valid):
    """logits (B, h, w), iou_pred (B,), gt / valid (B, h, w) float 0/1 tensors ->
    (focal (B,), dice (B,), iou_mse (B,), iou (B,) actual IoU of logits > 0)."""
    import torch

    p = torch.sigmoid(logits)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    p_t = p * gt + (1 - p) * (1 - gt)
    alpha = 0.25 * gt + 0.75 * (1 - gt)
    n = valid.sum((1, 2)).clamp(min=1)
    focal = (alpha * ce * (1 - p_t) ** 2 * valid).sum((1, 2)) / n
    pv = p * valid
    dice = 1 - (2 * (pv * gt).sum((1, 2)) + 1) / (pv.sum((1, 2)) + gt.sum((1, 2)) + 1)
    with torch.no_grad():
        hard = (logits > 0).float() * valid
        inter = (hard * gt).sum((1, 2))
        union = hard.sum((1, 2)) + gt.sum((1, 2)) - inter
        iou = inter / union.clamp(min=1)
    mse = (iou_pred - iou) ** 2
    return focal, dice, mse, iou
