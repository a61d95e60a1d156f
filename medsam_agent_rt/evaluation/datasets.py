"""Dataset specs for evaluation and trajectory generation, and the light sample reference that
travels to worker processes.

A spec is one of:

- a folder the data readers read: a BiomedParse-style root (``<dataset>/<split>.json``) or a
  demo-style folder (``demo/`` + ``demo_mask/``);
- ``demo``: the shared BiomedParse demo set, found at ``$MSRT_SHARED_DATA/biomedparse-demo`` or
  ``shared/data/biomedparse-demo`` in the current folder, the package's checkout or one of
  their parents;
- ``phantoms:KEY=VALUE,...``: procedural phantoms generated on the fly (nothing on disk) with
  keys ``n`` (images per modality, default 8), ``seed`` (first seed, default 0), ``size``
  (N or HxW, default 256), ``modalities`` (``+``-separated aliases, default all) and ``split``
  (the split name written into ids, default ``train``); ``phantoms:N`` is short for ``n=N``.
  Image i of a modality is ``generate(modality, seed + i, size)``; ids equal those of
  ``medsam-agent data phantoms`` for the same seed, so on-the-fly and written phantoms agree.

``SampleRef`` carries ids and texts plus where the pixels come from (files, or the phantom's
(modality, seed, size)), so a list of them pickles cheaply to spawned workers; ``load()`` reads
or regenerates the pixels (a small per-process cache serves the targets of one phantom).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

DEMO_ENV = "MSRT_SHARED_DATA"
DEMO_NAME = "biomedparse-demo"
PHANTOM_PREFIX = "phantoms"
#: The ids and texts a SampleRef shares with data.Sample (and repeats in every result row).
SAMPLE_FIELDS = (
    "sample_id",
    "image_id",
    "dataset",
    "split",
    "target",
    "description",
    "modality",
    "site",
)


@dataclass(frozen=True)
class SampleRef:
    """One target of one image, by reference. ``index``: position in the resolved list (the
    unit of sharding and resuming); ``phantom``: (modality, seed, (H, W)) for on-the-fly
    phantoms, else None and the pixels are in ``image_path`` / ``mask_path``."""

    index: int
    sample_id: str
    image_id: str
    dataset: str
    split: str
    target: str
    description: str
    modality: str
    site: str
    image_path: str | None = None
    mask_path: str | None = None
    phantom: tuple[str, int, tuple[int, int]] | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(image RGB uint8 (H, W, 3), ground truth bool (H, W))."""
        if self.phantom is not None:
            modality, seed, hw = self.phantom
            ph = _phantom(modality, seed, hw)
            if self.target not in ph.masks:
                raise ValueError(
                    f"sample {self.sample_id!r}: phantom ({modality}, seed {seed}) has no "
                    f"target {self.target!r} (targets: {ph.targets})"
                )
            return ph.image, ph.masks[self.target]
        from medsam_agent_rt.data import Sample

        sample = Sample(
            **self._fields(), image_path=Path(self.image_path), mask_path=Path(self.mask_path)
        )
        return sample.load()

    def info(self) -> dict[str, Any]:
        """The ids and texts (what a result row repeats)."""
        return {
            "index": self.index,
            **self._fields(),
            "source": (
                {"phantom": [self.phantom[0], self.phantom[1], list(self.phantom[2])]}
                if self.phantom is not None
                else {"image_path": self.image_path, "mask_path": self.mask_path}
            ),
        }

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> SampleRef:
        """The inverse of ``info()`` (a result row or a ledger line)."""
        src = info.get("source") or {}
        ph = src.get("phantom")
        phantom = None if ph is None else (str(ph[0]), int(ph[1]), (int(ph[2][0]), int(ph[2][1])))
        return cls(
            int(info["index"]),
            **{f: info[f] for f in SAMPLE_FIELDS},
            image_path=src.get("image_path"),
            mask_path=src.get("mask_path"),
            phantom=phantom,
        )

    @classmethod
    def of(cls, index: int, sample: Any, **source: Any) -> SampleRef:
        """The reference of a data.Sample at ``index``; ``source``: image_path / mask_path, or
        phantom."""
        return cls(index, **{f: getattr(sample, f) for f in SAMPLE_FIELDS}, **source)

    def _fields(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in SAMPLE_FIELDS}


@functools.lru_cache(maxsize=4)
def _phantom(modality: str, seed: int, hw: tuple[int, int]) -> Any:
    from medsam_agent_rt.data.phantoms import generate

    return generate(modality, seed, hw)


# ----------------------------------------------------------------------------- specs


def find_demo() -> Path:
    """The shared demo folder (see the module docstring); FileNotFoundError saying where it
    looked."""
    tried = []
    env = os.environ.get(DEMO_ENV)
    if env:
        tried.append(Path(env) / DEMO_NAME)
    here = Path.cwd().resolve()
    checkout = Path(__file__).resolve().parents[2]  # a source checkout (editable install)
    for folder in dict.fromkeys((here, *here.parents, checkout, *checkout.parents)):
        tried.append(folder / "shared" / "data" / DEMO_NAME)
    for cand in tried:
        if (cand / "demo").is_dir():
            return cand
    raise FileNotFoundError(
        f"dataset 'demo': the BiomedParse demo folder was not found; set {DEMO_ENV}=DIR (the "
        f"folder holding {DEMO_NAME}/) or pass its path. Looked in: "
        + ", ".join(str(p) for p in tried[:4])
        + (" ..." if len(tried) > 4 else "")
    )


MAX_PHANTOMS = 100_000  # per modality: a typo must not start days of generation


def parse_phantom_spec(spec: str) -> dict[str, Any]:
    """``phantoms:n=8,seed=0,size=256,modalities=ct+mri,split=train`` -> keyword dict."""
    from medsam_agent_rt.data.phantoms import PHANTOM_MODALITIES, parse_size, phantom_modality

    _, _, args = spec.partition(":")
    out: dict[str, Any] = {
        "n": 8,
        "seed": 0,
        "size": (256, 256),
        "modalities": list(PHANTOM_MODALITIES),
        "split": "train",
    }
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, sep, value = item.partition("=")
        if not sep and key.isdigit():
            key, value = "n", key
        elif not sep:
            raise ValueError(
                f"dataset {spec!r}: expected 'phantoms:key=value,...' with keys n, seed, size, "
                f"modalities, split; got {item!r}"
            )
        key, value = key.strip(), value.strip()
        try:
            if key in ("n", "seed"):
                out[key] = int(value)
            elif key == "size":
                out[key] = parse_size(value)
            elif key == "modalities":
                mods = [phantom_modality(m) for m in value.split("+") if m.strip()]
                out[key] = list(dict.fromkeys(mods))
            elif key == "split":
                out[key] = value
            else:
                raise ValueError(f"unknown key {key!r} (keys: n, seed, size, modalities, split)")
        except ValueError as exc:
            raise ValueError(f"dataset {spec!r}: {key}={value!r}: {exc}") from None
    if not 1 <= out["n"] <= MAX_PHANTOMS or not 0 <= out["seed"] < 2**31 or not out["modalities"]:
        raise ValueError(
            f"dataset {spec!r}: n must be >= 1 and <= {MAX_PHANTOMS}, seed >= 0 and < 2**31 "
            "and modalities non-empty, got "
            f"n={str(out['n'])[:20]}, seed={str(out['seed'])[:20]}, "
            f"modalities={out['modalities']}"
        )
    if not out["split"] or "/" in out["split"] or "_" in out["split"]:
        raise ValueError(f"dataset {spec!r}: split must be a name without '/' or '_'")
    return out


def _phantom_refs(spec: str) -> list[SampleRef]:
    from medsam_agent_rt.data.naming import image_file_name
    from medsam_agent_rt.data.writer import dataset_name

    p = parse_phantom_spec(spec)
    refs: list[SampleRef] = []
    for mod in p["modalities"]:
        ds = dataset_name(mod)
        for i in range(p["n"]):
            seed = p["seed"] + i
            ph = _phantom(mod, seed, p["size"])
            stem = Path(image_file_name(f"{seed:08d}", ph.modality_label, ph.site)).stem
            for s in ph.to_samples(ds, p["split"], stem):
                refs.append(SampleRef.of(len(refs), s, phantom=(mod, seed, tuple(p["size"]))))
    return refs


def resolve_dataset(
    spec: str | os.PathLike,
    *,
    splits: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    modalities: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[SampleRef]:
    """The samples of ``spec`` (see the module docstring), filtered by split / dataset /
    modality (None: all), in the readers' deterministic order, the first ``limit`` kept.
    ``index`` is the position in the returned list."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1 (or None), got {limit!r}")
    text = str(spec)
    if text == PHANTOM_PREFIX or text.startswith(PHANTOM_PREFIX + ":"):
        refs = _phantom_refs(text)
        from medsam_agent_rt.data import normalise_modality

        sp = None if splits is None else set(splits)
        ds = None if datasets is None else set(datasets)
        mo = None if modalities is None else {normalise_modality(m) for m in modalities}
        refs = [
            r
            for r in refs
            if (sp is None or r.split in sp)
            and (ds is None or r.dataset in ds)
            and (mo is None or r.modality in mo)
        ]
    else:
        from medsam_agent_rt.data import filter_samples, load_samples

        root = find_demo() if text == "demo" else Path(text)
        samples = load_samples(root, datasets=datasets, splits=splits)
        if modalities is not None:
            samples = filter_samples(samples, modalities=modalities)
        refs = [
            SampleRef.of(i, s, image_path=str(s.image_path), mask_path=str(s.mask_path))
            for i, s in enumerate(samples)
        ]
    if limit is not None:
        refs = refs[:limit]
    return [r if r.index == i else replace(r, index=i) for i, r in enumerate(refs)]


def resolve_run_samples(config: Any) -> list[SampleRef]:
    """The samples a run config names (its ``dataset``, ``splits``, ``datasets``,
    ``modalities`` and ``limit``, as in EvalConfig and TrajectoryConfig); ValueError when the
    filters leave none."""
    refs = resolve_dataset(
        config.dataset,
        splits=config.splits,
        datasets=config.datasets,
        modalities=config.modalities,
        limit=config.limit,
    )
    if not refs:
        raise ValueError(f"dataset {config.dataset!r}: no samples (after filters)")
    return refs


def shard_of(refs: Sequence[SampleRef], rank: int, world_size: int) -> list[SampleRef]:
    """The samples rank ``rank`` of ``world_size`` evaluates: index % world_size == rank."""
    if not (isinstance(world_size, int) and world_size >= 1 and 0 <= rank < world_size):
        raise ValueError(
            f"rank/world_size must satisfy 0 <= rank < world_size, got {rank}/{world_size}"
        )
    return [r for r in refs if r.index % world_size == rank]


def dataset_digest(refs: Sequence[SampleRef]) -> str:
    """SHA-256 (16 hex) of the ordered sample ids: shards of one run must agree on it."""
    import hashlib

    h = hashlib.sha256()
    for r in refs:
        h.update(f"{r.index}\t{r.sample_id}\n".encode())
    return h.hexdigest()[:16]
