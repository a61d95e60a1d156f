"""Overlay rendering (the 512x512 observation view of a 1024/2048 mask) vs the fastest NumPy
formulation: nearest-neighbour source indices once per call, ``take`` along each axis, the
blend in uint16 on the content box, ``np.copyto(where=)`` into a copy of the view."""

from __future__ import annotations

from functools import partial

import numpy as np

from benchmarks.kernel_cases import Case
from benchmarks.kernel_cases._cuda import cuda_torch, synced
from medsam_agent_rt import ops


def numpy_overlay(view, mask, box, color=(0, 255, 0), alpha_weight=128):
    x0, y0, w, h = box
    mh, mw = mask.shape
    sy = ((2 * np.arange(h) + 1) * mh) // (2 * h)
    sx = ((2 * np.arange(w) + 1) * mw) // (2 * w)
    covered = mask.take(sy, axis=0).take(sx, axis=1)
    out = view.copy()
    region = out[y0 : y0 + h, x0 : x0 + w]
    term = np.asarray(color, np.uint16) * alpha_weight + 128
    blended = ((region.astype(np.uint16) * (256 - alpha_weight) + term) >> 8).astype(np.uint8)
    np.copyto(region, blended, where=covered[..., None])
    return out


def cases(sizes: list[int]) -> list[Case]:
    rng = np.random.default_rng(0)
    torch = cuda_torch()
    view = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    out: list[Case] = []
    for s in sizes:
        mask = rng.random((s, s)) < 0.5
        box = (0, 0, 512, 512)
        np.testing.assert_array_equal(
            numpy_overlay(view, mask, box), ops.render_overlay(view, mask, box)
        )
        case = Case(
            f"render_overlay {s}x{s} mask -> 512 view",
            "numpy",
            {
                "numpy": partial(numpy_overlay, view, mask, box),
                "ours (cpu)": partial(ops.render_overlay, view, mask, box),
            },
            target=">= 5x numpy",
        )
        if torch is not None:
            vc, mc = torch.from_numpy(view).cuda(), torch.from_numpy(mask).cuda()
            case.impls["ours (cuda)"] = synced(torch, partial(ops.render_overlay, vc, mc, box))
        else:
            case.skipped.append("ours (cuda): no CUDA device")
        out.append(case)
    return out
