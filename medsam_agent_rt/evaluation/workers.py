"""Ordered, spawn-safe parallel map of a runner over groups of samples.

A runner is any picklable object with ``setup()`` (build the segmenter and policy; called once
per process) and ``run(ref) -> result``. Groups are lists of samples of one image, so a worker
keeps the image embedding in its segmenter's cache for every target of the image. Results come
back in submission order whatever the worker count, so outputs written from them are
byte-identical for 1 or N workers. Workers are started with the "spawn" method (safe with
threads, torch and CUDA) and pin their CPU thread count (``threads``) before loading anything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

_RUNNER: Any = None


def set_threads(threads: int | None) -> None:
    """Pin CPU threads: OMP_NUM_THREADS (read by the C++ kernels' pool when it starts) and
    torch's thread count when torch is loaded (call again after loading a model). On a busy
    machine one thread per process avoids oversubscription stalls: measured here under load,
    a LiteMedSAM decoder call took 0.16 s with 1 torch thread and 2-3 s with 2."""
    if not threads:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")  # never import torch just for this (onnx/trt backends)
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _setup(runner: Any, threads: int | None) -> None:
    set_threads(threads)
    runner.setup()
    set_threads(threads)


def _init(runner: Any, threads: int | None) -> None:
    global _RUNNER
    _setup(runner, threads)
    _RUNNER = runner


def _run_group(group: Sequence[Any]) -> list[Any]:
    return [_RUNNER.run(ref) for ref in group]


def group_by_image(refs: Iterable[Any]) -> list[list[Any]]:
    """Consecutive samples of one image form a group (the readers list targets of an image
    together)."""
    groups: list[list[Any]] = []
    for ref in refs:
        if groups and groups[-1][0].image_id == ref.image_id:
            groups[-1].append(ref)
        else:
            groups.append([ref])
    return groups


def map_groups(
    runner: Any, groups: Sequence[Sequence[Any]], workers: int = 1, threads: int | None = 1
) -> Iterator[list[Any]]:
    """Yield ``[runner.run(ref) for ref in group]`` for each group, in order. ``workers`` 1 runs
    in this process (the runner may hold ready objects then); more start that many spawned
    processes. ``threads``: CPU threads per process (None / 0: leave the defaults; in-process
    this sets torch's global thread count)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not groups:
        return
    if workers == 1:
        _setup(runner, threads)
        for group in groups:
            yield [runner.run(ref) for ref in group]
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    pool = ctx.Pool(min(workers, len(groups)), initializer=_init, initargs=(runner, threads))
    finished = False
    try:
        yield from pool.imap(_run_group, groups, chunksize=1)
        finished = True
    finally:
        if finished:
            pool.close()
        else:  # an error, an interrupt or the consumer stopped early
            pool.terminate()
        pool.join()
