"""Datasets: the ``Sample`` every consumer takes, readers for the BiomedParse-style layout and
the shared demo folder, the procedural phantom generator and its writer.

Imports with NumPy alone; Pillow is imported when pixels are read or written.

>>> from medsam_agent_rt.data import load_samples
>>> samples = load_samples("shared/data/biomedparse-demo")     # doctest: +SKIP
>>> image, mask = samples[0].load()                            # RGB uint8, bool
>>> samples[0].description                                     # "COVID-19 infection in lung CT"
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from medsam_agent_rt.data.biomedparse import (
    DatasetFormatError,
    DatasetInfo,
    find_datasets,
    iter_biomedparse,
    read_biomedparse,
    read_split,
)
from medsam_agent_rt.data.demo import (
    is_demo_root,
    read_demo,
    read_named_split,
    refuse_demo_for_training,
)
from medsam_agent_rt.data.modality import (
    MODALITIES,
    Modality,
    describe,
    normalise_modality,
    parse_modality,
)
from medsam_agent_rt.data.samples import Sample, counts, filter_samples, group_by_image


def load_samples(
    path: str | os.PathLike,
    *,
    datasets: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    check_files: bool = True,
) -> list[Sample]:
    """Every sample under ``path``: a demo folder (``demo/`` + ``demo_mask/``) or a
    BiomedParse-style root (any depth of ``<dataset>/<split>.json``). Raises
    FileNotFoundError / ValueError saying what was looked for."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"dataset path not found: {path}")
    if is_demo_root(path) and not find_datasets(path, max_depth=0):
        samples = read_demo(path)
        return filter_samples(samples, datasets=datasets, splits=splits)
    if not find_datasets(path):
        raise ValueError(
            f"dataset path {path}: no '<dataset>/<split>.json' (BiomedParse layout) and no "
            "'demo/' + 'demo_mask/' folders found"
        )
    return read_biomedparse(path, datasets=datasets, splits=splits, check_files=check_files)


__all__ = [
    "MODALITIES",
    "DatasetFormatError",
    "DatasetInfo",
    "Modality",
    "Sample",
    "counts",
    "describe",
    "filter_samples",
    "find_datasets",
    "group_by_image",
    "is_demo_root",
    "iter_biomedparse",
    "load_samples",
    "normalise_modality",
    "parse_modality",
    "read_biomedparse",
    "read_demo",
    "refuse_demo_for_training",
    "read_named_split",
    "read_split",
]
