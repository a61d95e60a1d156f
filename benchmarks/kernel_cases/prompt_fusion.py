"""Prompt-embedding fusion vs the official segment-anything PromptEncoder module call (sparse
and dense embeddings, torch.inference_mode) on identical random weights, for k clicks + a box
(LiteMedSAM's default prompting). The baseline is torch's faster setting for such tiny ops, one
intra-op thread; the call at the run's default thread count is timed too. "ours" times the
public call on ready tokens; "ours (+ tokens)" also builds them from the points and box with
sam_prompt_tokens, which the module does inside its call."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.kernel_cases import Case
from benchmarks.kernel_cases._data import cpu_threads
from medsam_agent_rt import ops


def official_modeling():
    """segment_anything.modeling without running the package __init__ (it imports torchvision)."""
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        return None
    alias = "msrt_bench_sam"
    if alias not in sys.modules:
        parent = types.ModuleType(alias)
        parent.__path__ = [str(Path(list(spec.submodule_search_locations)[0]))]
        sys.modules[alias] = parent
    return importlib.import_module(f"{alias}.modeling")


def ours_with_tokens(points, labels, box, weights):
    return ops.encode_sparse_prompts(*ops.sam_prompt_tokens(points, labels, box), weights)


def cases(sizes: list[int]) -> list[Case]:
    del sizes  # prompts have no image size
    try:
        import torch
    except ImportError:
        return [Case("encode_sparse_prompts", "torch module", {}, skipped=["torch"])]
    modeling = official_modeling()
    if modeling is None:
        return [Case("encode_sparse_prompts", "torch module", {}, skipped=["segment-anything"])]
    torch.manual_seed(0)
    enc = modeling.PromptEncoder(
        embed_dim=256,
        image_embedding_size=(64, 64),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
    ).eval()
    weights = ops.prompt_encoder_weights(enc)
    torch.set_num_threads(cpu_threads())  # "torch module": the thread count our kernels use
    rng = np.random.default_rng(0)
    out: list[Case] = []
    for k in (1, 4, 16):
        points = (rng.random((k, 2)) * 1024).astype(np.float32)
        labels = rng.integers(0, 2, k).astype(np.int32)
        box = np.array([100, 150, 700, 800], np.float32)
        coords, labs = ops.sam_prompt_tokens(points, labels, box)
        pts = (torch.from_numpy(points)[None], torch.from_numpy(labels)[None])
        boxes = torch.from_numpy(box)[None]

        def module_call(pts=pts, boxes=boxes):
            with torch.inference_mode():
                return enc(points=pts, boxes=boxes, masks=None)

        def module_call_1thread(pts=pts, boxes=boxes):
            # torch's fastest setting for these tiny ops (no intra-op fork/join); the two
            # set_num_threads calls cost ~1 us of the ~200 us measured here.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.inference_mode():
                    return enc(points=pts, boxes=boxes, masks=None)
            finally:
                torch.set_num_threads(threads)

        with torch.inference_mode():
            want = enc(points=pts, boxes=boxes, masks=None)[0][0].numpy()
        np.testing.assert_allclose(
            ops.encode_sparse_prompts(coords, labs, weights), want, atol=1e-5
        )
        out.append(
            Case(
                f"encode_sparse_prompts {k} clicks + box (C=256)",
                "torch module (1 thread)",
                {
                    "torch module (1 thread)": module_call_1thread,
                    "torch module": module_call,
                    "ours": partial(ops.encode_sparse_prompts, coords, labs, weights),
                    "ours (+ tokens)": partial(ours_with_tokens, points, labels, box, weights),
                },
                target=">= 10x torch module call",
            )
        )
    return out
