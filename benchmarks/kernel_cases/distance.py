"""Exact distance transform vs OpenCV (distanceTransform DIST_L2 with DIST_MASK_PRECISE, i.e.
mask size 0) and scipy.ndimage.distance_transform_edt; the click simulator vs the fastest
scipy-based simulator written here (each error region cropped to its bounding box before its
EDT) and the same simulator on OpenCV's precise transform.
"""

from __future__ import annotations

import numpy as np

from benchmarks.kernel_cases import Case
from benchmarks.kernel_cases._data import blob_mask, mask_sets, optional_module, versus_opencv


def click_pair(gt: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """(pred, gt) bool: pred = gt shifted and thinned, plus a spurious square: both regions."""
    g = gt > 0
    p = np.roll(g, (shift, -shift), (0, 1)) & np.roll(g, (shift + 3, -shift + 3), (0, 1))
    n = g.shape[0]
    p[n // 10 : n // 10 + n // 20, n // 2 : n // 2 + n // 16] = True
    return p, g


def cropped_simulator(edt):
    """The click simulator of PROTOCOL.md with `edt(region) -> float32 distances`: each error
    region is cut to its bounding box plus a 1-px zero ring (exact: no zero outside the ring is
    nearer than the ring), which also plays the image's zero border."""

    def region_max(region: np.ndarray):
        ys, xs = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
        if len(ys) == 0:
            return 0.0, None
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        d = edt(np.pad(region[y0:y1, x0:x1], 1))[1:-1, 1:-1]
        i = int(np.argmax(d))
        y, x = divmod(i, d.shape[1])
        return float(d[y, x]), (int(x0 + x), int(y0 + y))

    def simulate(pred: np.ndarray, gt: np.ndarray):
        fn_max, fn_at = region_max(gt & ~pred)
        fp_max, fp_at = region_max(pred & ~gt)
        if fn_max == 0 and fp_max == 0:
            return None
        # (ties between crops can differ from the full-image row-major order; fine for timing)
        return (fn_at, True, fn_max) if fn_max > fp_max else (fp_at, False, fp_max)

    return simulate


def cases(sizes: list[int]) -> list[Case]:
    from medsam_agent_rt import ops

    cv2 = optional_module("cv2")
    ndi = optional_module("scipy.ndimage")
    opencv = None
    if cv2 is not None:

        def opencv(m):
            return cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    scipy = None if ndi is None else ndi.distance_transform_edt
    out: list[Case] = []
    for n in sizes:
        inputs = mask_sets(n, seed=2)
        demo = [m for what, masks in inputs.items() if what != "blobs" for m in masks]
        for what, masks in inputs.items():
            name = f"distance_transform {n}x{n} {what}"
            slow = scipy if what == "blobs" else None  # ~0.1-0.3 s per mask: blobs only
            out.append(versus_opencv(name, masks, ops.distance_transform, opencv, slow))

        pairs = [click_pair(blob_mask(n, seed=3), n // 64)]
        pairs += [click_pair(m, n // 64) for m in demo[:8]]
        case = Case(f"next_click {n}x{n} x{len(pairs)} pairs", "scipy simulator")
        case.impls["medsam_agent_rt"] = lambda ps=pairs: [ops.next_click(p, g) for p, g in ps]
        if ndi is not None:
            sim = cropped_simulator(lambda r: ndi.distance_transform_edt(r).astype(np.float32))
            case.impls["scipy simulator"] = lambda ps=pairs, sim=sim: [sim(p, g) for p, g in ps]
        else:
            case.baseline = "medsam_agent_rt"
        if cv2 is not None:
            sim_cv = cropped_simulator(
                lambda r: cv2.distanceTransform(
                    r.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
                )
            )
            case.impls["opencv simulator"] = lambda ps=pairs, sim=sim_cv: [sim(p, g) for p, g in ps]
        out.append(case)
    return out
