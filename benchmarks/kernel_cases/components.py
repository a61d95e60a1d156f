"""Connected components vs OpenCV (connectedComponentsWithStats) and scipy.ndimage, on smoothed
noise blobs with holes and on the real demo masks (upsampled for sizes above 1024).

Every implementation produces the same thing: labels, per-component area and bounding box (and
for fill-holes: the filled mask), so the times compare like for like.
"""

from __future__ import annotations

import numpy as np

from benchmarks.kernel_cases import Case
from benchmarks.kernel_cases._data import mask_sets, optional_module, versus_opencv

EIGHT = np.ones((3, 3), bool)  # scipy's 8-connectivity structuring element


def cases(sizes: list[int]) -> list[Case]:
    from medsam_agent_rt import ops

    cv2 = optional_module("cv2")
    ndi = optional_module("scipy.ndimage")
    opencv = scipy = None
    if cv2 is not None:

        def opencv(m):
            return cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)

    if ndi is not None:

        def scipy(m):  # labels, boxes and areas, as ours and OpenCV give
            labels, k = ndi.label(m, EIGHT)
            return labels, ndi.find_objects(labels), np.bincount(labels.ravel(), minlength=k + 1)

    out: list[Case] = []
    for n in sizes:
        inputs = mask_sets(n, seed=1)
        for what, masks in inputs.items():
            name = f"components label {n}x{n} {what}"
            out.append(versus_opencv(name, masks, ops.label_components, opencv, scipy))

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
