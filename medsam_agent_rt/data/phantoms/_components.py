"""Largest connected component of a mask, in pure NumPy (union-find over horizontal runs),
so phantom masks never carry slivers left by painting order."""

from __future__ import annotations

import numpy as np


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of a bool (H, W) mask: row, start, stop (exclusive), in raster order."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    r0, c0 = np.nonzero(d == 1)
    r1, c1 = np.nonzero(d == -1)
    return r0, c0, c1  # np.nonzero is row-major, so starts and stops pair up


def keep_largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool (H, W) mask (ties: the first in raster
    order); empty in, empty out. Union-find over horizontal runs, so the cost grows with the
    number of runs (about the mask's height per component), not with its area."""
    rows, starts, stops = _runs(mask)
    n = len(rows)
    if n <= 1:
        return mask.copy()
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    rl, sl, el = rows.tolist(), starts.tolist(), stops.tolist()
    for r in range(mask.shape[0] - 1):
        a0, a1 = int(row_first[r]), int(row_first[r + 1])
        b0, b1 = a1, int(row_first[r + 2])
        i, j = a0, b0
        while i < a1 and j < b1:
            # 8-connectivity: runs touch when they overlap after widening by one pixel
            if sl[i] <= el[j] and sl[j] <= el[i]:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            if el[i] < el[j]:
                i += 1
            else:
                j += 1
    roots = np.array([find(i) for i in range(n)])
    sizes = np.bincount(roots, weights=stops - starts, minlength=n)
    best = int(np.argmax(sizes))
    out = np.zeros_like(mask, dtype=bool)
    for k in np.flatnonzero(roots == best).tolist():
        out[rl[k], sl[k] : el[k]] = True
    return out
