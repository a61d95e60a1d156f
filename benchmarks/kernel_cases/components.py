"""Connected components vs OpenCV (connectedComponentsWithStats) and scipy.ndimage, on smoothed
noise blobs with holes and on the real demo masks (upsampled for sizes above 1024).

Every implementation produces the same thing: labels, per-component area and bounding box (and
for fill-holes: the filled mask), so the times compare like for like.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks.kernel_cases import Case

REPO = Path(__file__).resolve().parents[2]
EIGHT = np.ones((3, 3), bool)  # scipy's 8-connectivity structuring element


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


def _optional(name: str):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


def cases(sizes: list[int]) -> list[Case]:
    from medsam_agent_rt import ops

    cv2 = _optional("cv2")
    ndi = _optional("scipy.ndimage")
    out: list[Case] = []
    for n in sizes:
        inputs = {"blobs": [blob_mask(n, seed=1)]}
        demo = demo_masks(n)
        if demo:
            inputs[f"demo masks x{len(demo)}"] = demo
        for what, masks in inputs.items():
            case = Case(f"components label {n}x{n} {what}", "opencv", target=">= 1x opencv")
            case.impls["medsam_agent_rt"] = lambda ms=masks: [ops.label_components(m) for m in ms]
            if cv2 is not None:
                case.impls["opencv"] = lambda ms=masks: [
                    cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)
                    for m in ms
                ]
            else:
                case.skipped.append("opencv (not installed)")
                case.baseline = "medsam_agent_rt"
            if ndi is not None:

                def scipy_label(ms=masks):
                    for m in ms:
                        labels, k = ndi.label(m, EIGHT)
                        ndi.find_objects(labels)
                        np.bincount(labels.ravel(), minlength=k + 1)

                case.impls["scipy.ndimage"] = scipy_label
            out.append(case)

        m = inputs["blobs"][0]
        case = Case(f"components fill_holes {n}x{n} blobs", "scipy.ndimage")
        case.impls["medsam_agent_rt"] = lambda m=m: ops.fill_holes(m)
        if ndi is not None:
            case.impls["scipy.ndimage"] = lambda m=m: ndi.binary_fill_holes(m)
        else:
            case.baseline = "medsam_agent_rt"
        if cv2 is not None:

            def cv2_fill(m=m):  # flood the background from the (padded) border, the rest is holes
                padded = cv2.copyMakeBorder(
                    (m == 0).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1
                )
                cv2.floodFill(padded, None, (0, 0), 0, flags=4)
                return (m > 0) | (padded[1:-1, 1:-1] > 0)

            case.impls["opencv"] = cv2_fill
        out.append(case)

        case = Case(f"components keep_largest {n}x{n} blobs", "opencv")
        case.impls["medsam_agent_rt"] = lambda m=m: ops.keep_largest_component(m)
        if cv2 is not None:

            def cv2_largest(m=m):
                _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
                return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))

            case.impls["opencv"] = cv2_largest
        else:
            case.baseline = "medsam_agent_rt"
        out.append(case)
    return out
