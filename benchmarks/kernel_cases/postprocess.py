"""Mask post-processing (SAM: 256x256 logits -> 1024 input -> crop -> original size -> > 0) vs
torch's CPU F.interpolate chain with the same thread count as ours (MSRT_NUM_THREADS, else
OMP_NUM_THREADS, else the CPUs available). torch does the same work: both resizes and the
threshold."""

from __future__ import annotations

from functools import partial

import numpy as np

from benchmarks.kernel_cases import Case
from benchmarks.kernel_cases._cuda import cuda_torch, synced
from benchmarks.kernel_cases._data import cpu_threads
from medsam_agent_rt import ops


def torch_chain(torch, x, input_size, resized, original):
    import torch.nn.functional as F

    with torch.inference_mode():
        t = F.interpolate(x, input_size, mode="bilinear", align_corners=False)
        t = t[..., : resized[0], : resized[1]]
        t = F.interpolate(t, original, mode="bilinear", align_corners=False)
        return t, t > 0.0


def cases(sizes: list[int]) -> list[Case]:
    try:
        import torch
    except ImportError:
        return [Case("postprocess_masks", "torch", {}, skipped=["torch (not installed)"])]
    torch.set_num_threads(cpu_threads())
    gpu = cuda_torch()
    rng = np.random.default_rng(0)
    out: list[Case] = []
    for s, n in [(s, 1) for s in sizes] + [(sizes[0], 3)]:
        x = (rng.standard_normal((n, 256, 256)) * 8).astype(np.float32)
        args = ((1024, 1024), (1024, 1024), (s, s))
        xt = torch.from_numpy(x)[None]
        case = Case(
            f"postprocess_masks N={n} 256 -> 1024 -> {s}x{s}",
            "torch",
            {
                "torch": partial(torch_chain, torch, xt, *args),
                "ours (cpu)": partial(ops.postprocess_masks, x, *args),
                "ours (cpu, masks only)": partial(
                    ops.postprocess_masks, x, *args, return_logits=False
                ),
            },
            target=">= 2x torch (cpu)",
        )
        if gpu is not None:
            xc = torch.from_numpy(x).cuda()
            case.impls["torch (cuda)"] = synced(gpu, partial(torch_chain, torch, xc[None], *args))
            case.impls["ours (cuda)"] = synced(gpu, partial(ops.postprocess_masks, xc, *args))
        else:
            case.skipped.append("cuda variants: no CUDA device")
        out.append(case)
    return out
