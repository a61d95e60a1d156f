"""One module per kernel family. Each exposes ``cases(sizes) -> list[Case]``.

A Case names the kernel, its baseline implementation (the strongest available alternative on this
machine, measured in the same run) and a dict impl-name -> zero-argument callable. Baselines whose
package is missing are left out with a note rather than failing the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Case:
    name: str  # e.g. "mask_metrics 1024x1024 N=8"
    baseline: str  # impl name of the baseline, e.g. "numpy"
    impls: dict[str, Callable[[], object]] = field(default_factory=dict)
    target: str = ""  # the goal, e.g. ">= 5x numpy"
    skipped: list[str] = field(default_factory=list)  # "opencv (not installed)"
