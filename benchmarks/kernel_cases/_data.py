"""What several kernel cases share: test masks (procedural blobs, the real demo masks), optional
baselines, the "ours vs OpenCV (vs scipy)" case shape, and the thread count the baselines get."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.kernel_cases import Case

REPO = Path(__file__).resolve().parents[2]


def optional_module(name: str) -> Any | None:
    """``import name`` (e.g. "cv2", "scipy.ndimage"), or None when it is not installed."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


def cpu_threads() -> int:
    """The thread count of our CPU kernels (MSRT_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs
    available), for baselines that take one (torch.set_num_threads)."""
    from medsam_agent_rt import build_info

    threads = build_info().get("cpu_threads")
    return int(threads) if threads else (os.cpu_count() or 1)


def blob_mask(n: int, seed: int = 0) -> np.ndarray:
    """(n, n) uint8 0/255: thresholded smoothed noise, i.e. blobs of many sizes with holes."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n // 32 + 2, n // 32 + 2))
    # separable linear upsampling then two box smoothings: no scipy/cv2 needed to make the data
    xs = np.linspace(0, coarse.shape[0] - 1, n)
    i0 = np.floor(xs).astype(int).clip(0, coarse.shape[0] - 2)
    t = xs - i0
    rows = coarse[i0] * (1 - t)[:, None] + coarse[i0 + 1] * t[:, None]
    up = rows[:, i0] * (1 - t) + rows[:, i0 + 1] * t
    up += 0.35 * np.kron(rng.standard_normal((n // 8, n // 8)), np.ones((8, 8)))[:n, :n]
    k = max(3, n // 128) | 1
    kernel = np.ones(k) / k
    up = np.apply_along_axis(np.convolve, 0, up, kernel, mode="same")
    up = np.apply_along_axis(np.convolve, 1, up, kernel, mode="same")
    return np.where(up > 0.25 * up.std(), 255, 0).astype(np.uint8)


def demo_masks(n: int, limit: int = 71) -> list[np.ndarray]:
    """The demo set's masks (uint8 0/255), resized to (n, n) by pixel repetition or striding."""
    roots = [
        os.environ.get("MSRT_SHARED_DATA"),
        REPO.parent / "shared" / "data",
        REPO / "shared" / "data",
    ]
    for root in roots:
        folder = Path(root, "biomedparse-demo", "demo_mask") if root else None
        if folder is not None and folder.is_dir():
            break
    else:
        return []
    from PIL import Image

    out = []
    for f in sorted(folder.glob("*.png"))[:limit]:
        m = np.asarray(Image.open(f))[..., 0]
        if m.shape[0] < n:
            r = n // m.shape[0]
            m = np.repeat(np.repeat(m, r, 0), r, 1)
        elif m.shape[0] > n:
            m = m[:: m.shape[0] // n, :: m.shape[0] // n]
        out.append(np.ascontiguousarray(m))
    return out


def mask_sets(n: int, seed: int) -> dict[str, list[np.ndarray]]:
    """{"blobs": [one blob mask], "demo masks xK": the demo masks} at (n, n) (demo when found)."""
    sets = {"blobs": [blob_mask(n, seed)]}
    demo = demo_masks(n)
    if demo:
        sets[f"demo masks x{len(demo)}"] = demo
    return sets


def versus_opencv(
    name: str,
    masks: list[np.ndarray],
    ours: Callable[[np.ndarray], Any],
    opencv: Callable[[np.ndarray], Any] | None,
    scipy: Callable[[np.ndarray], Any] | None = None,
) -> Case:
    """A case over `masks` with OpenCV as the baseline (target: at least as fast), scipy timed too
    when given; without OpenCV ours is the baseline and the case says why."""
    case = Case(name, "opencv", target=">= 1x opencv")
    case.impls["medsam_agent_rt"] = lambda: [ours(m) for m in masks]
    if opencv is not None:
        case.impls["opencv"] = lambda: [opencv(m) for m in masks]
    else:
        case.skipped.append("opencv (not installed)")
        case.baseline = "medsam_agent_rt"
    if scipy is not None:
        case.impls["scipy.ndimage"] = lambda: [scipy(m) for m in masks]
    return case
