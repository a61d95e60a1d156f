"""Write phantoms in the BiomedParse-style layout, so every tool reads one format.

::

    OUT/phantoms.json                         the parameters (checked on every re-run)
    OUT/phantom-<modality>/<split>/           00000042_CT_abdomen.png ...
    OUT/phantom-<modality>/<split>_mask/      00000042_CT_abdomen_left+kidney.png (0/255)
    OUT/phantom-<modality>/<split>.json       COCO-like annotations (see ``biomedparse``)

Image ``i`` of a modality has seed ``seed + i``: ``generate(modality, seed + i, size)`` gives
its pixels whatever ``n`` is. Splits are consecutive index (= seed) ranges in the order given
(train 0..79, val 80..89, test 90..99 for n=100 and 0.8/0.1/0.1). Idempotent and resumable:
finished images are recorded in ``.<split>.partial.jsonl`` as they are written and skipped on
a re-run; ``<split>.json`` is written (atomically) when the split is complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.data.modality import modality_slug
from medsam_agent_rt.data.naming import image_file_name, mask_file_name
from medsam_agent_rt.io.writers import write_png

GENERATOR_VERSION = 1
MANIFEST = "phantoms.json"
DEFAULT_SPLITS: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))


def parse_splits(spec: str | Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """ "train=0.8,val=0.1,test=0.1" (or pairs) -> normalised ((name, fraction), ...)."""
    if isinstance(spec, str):
        pairs = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, frac = part.partition("=")
            try:
                pairs.append((name.strip(), float(frac)))
            except ValueError:
                raise ValueError(
                    f"splits: expected 'name=fraction,...' (e.g. train=0.8,val=0.1,test=0.1), "
                    f"got {spec!r}"
                ) from None
            if not sep:
                raise ValueError(f"splits: expected 'name=fraction' in {spec!r}, got {part!r}")
    else:
        pairs = [(str(n), float(f)) for n, f in spec]
    names = [n for n, _ in pairs]
    if (
        not pairs
        or any(not n or "/" in n or "_" in n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(f"splits: expected distinct names without '/' or '_', got {names}")
    if any(f < 0 for _, f in pairs) or sum(f for _, f in pairs) <= 0:
        raise ValueError(f"splits: fractions must be >= 0 with a positive sum, got {pairs}")
    total = sum(f for _, f in pairs)
    return tuple((n, f / total) for n, f in pairs)


def split_ranges(n: int, splits: Sequence[tuple[str, float]]) -> dict[str, range]:
    """Consecutive index ranges per split; sizes are rounded fractions of ``n``, the last split
    takes the remainder."""
    out: dict[str, range] = {}
    start = 0
    for i, (name, frac) in enumerate(splits):
        stop = n if i == len(splits) - 1 else min(n, start + int(round(frac * n)))
        out[name] = range(start, stop)
        start = stop
    return out


def dataset_name(modality: str) -> str:
    """ "phantom-<slug>" ("CT" -> "phantom-ct", "X-Ray" -> "phantom-xray")."""
    return f"phantom-{modality_slug(modality)}"


@dataclass
class WriteReport:
    """What a run did: images written and skipped per "<dataset>/<split>"."""

    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    annotations: dict[str, int] = field(default_factory=dict)

    @property
    def total_written(self) -> int:
        return sum(self.written.values())


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    ]


def _write_one(job: tuple[str, int, tuple[int, int], str, str, str]) -> dict[str, Any]:
    """Generate phantom (modality, seed, size) and write its image and masks; returns the
    record of the image and its annotations (ids assigned later)."""
    from medsam_agent_rt.data.phantoms import generate

    modality, seed, size, image_dir, mask_dir, split = job
    ph = generate(modality, seed, size)
    stem = f"{seed:08d}"
    fname = image_file_name(stem, ph.modality_label, ph.site)
    write_png(Path(image_dir) / fname, ph.image)
    anns = []
    for target, m in ph.masks.items():
        mname = mask_file_name(fname, target)
        write_png(Path(mask_dir) / mname, m)
        sent = ph.description(target)
        ann = {
            "file_name": fname,
            "mask_file": mname,
            "split": split,
            "iscrowd": 0,
            "target": target,
            "modality": ph.modality,
            "site": ph.site,
            "area": int(m.sum()),
            "bbox": _bbox(m),
            "seed": seed,
            "sentences": [{"raw": sent, "sent": sent}],
        }
        if "sequence" in ph.meta and ph.modality == "MRI":
            ann["sequence"] = ph.meta["sequence"]
        anns.append(ann)
    h, w = ph.image.shape[:2]
    return {
        "seed": seed,
        "image": {"file_name": fname, "width": w, "height": h, "seed": seed},
        "annotations": anns,
    }


def _read_partial(path: Path) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                done[int(rec["seed"])] = rec
            except (json.JSONDecodeError, KeyError, ValueError, TypeError):
                continue  # a line cut short by an interruption: redo that image
    return done


def _assemble(records: Iterable[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    images, anns, cats = [], [], {}
    for rec in sorted(records, key=lambda r: r["seed"]):
        image_id = len(images)
        images.append({"id": image_id, **rec["image"]})
        for a in rec["annotations"]:
            k = len(anns)
            cid = cats.setdefault(a["target"], len(cats))
            sents = [{**s, "sent_id": k} for s in a["sentences"]]
            anns.append(
                {
                    **a,
                    "id": k,
                    "ann_id": k,
                    "ref_id": k,
                    "image_id": image_id,
                    "category_id": cid,
                    "sentences": sents,
                    "sent_ids": [k],
                }
            )
    categories = [{"id": i, "name": n} for n, i in cats.items()]
    return {"info": info, "images": images, "annotations": anns, "categories": categories}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)


def _ordered(modalities: Iterable[str]) -> list[str]:
    """Modalities in the generator's fixed order (unknown names last, sorted)."""
    from medsam_agent_rt.data.phantoms import PHANTOM_MODALITIES

    order = {m: i for i, m in enumerate(PHANTOM_MODALITIES)}
    return sorted(set(modalities), key=lambda m: (order.get(m, len(order)), m))


def _check_manifest(out: Path, params: dict[str, Any]) -> None:
    path = out / MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}: not valid JSON ({exc.msg}); remove it or use a new --out"
            ) from exc
        keys = ("generator_version", "seed", "n", "size", "splits")
        diff = {k: (old.get(k), params[k]) for k in keys if old.get(k) != params[k]}
        if diff:
            detail = ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"out: {out} already holds phantoms written with other parameters ({detail}); "
                "re-run with the same parameters to resume, or choose a new --out"
            )
        params = {
            **params,
            "modalities": _ordered(set(old.get("modalities", [])) | set(params["modalities"])),
        }
    _write_json(path, params)


def write_phantom_dataset(
    out: str | os.PathLike,
    *,
    n: int,
    seed: int = 0,
    size: int | tuple[int, int] | str = 512,
    modalities: Sequence[str] | None = None,
    splits: str | Sequence[tuple[str, float]] = DEFAULT_SPLITS,
    workers: int = 1,
    show_progress: bool = True,
    on_image: Callable[[str, str, int], None] | None = None,
) -> WriteReport:
    """Write ``n`` phantoms per modality (seeds ``seed .. seed + n - 1``) under ``out``.

    Args:
        out: the dataset root (created).
        n: images per modality (>= 1).
        seed: first seed (>= 0).
        size: N or (height, width).
        modalities: any aliases ("ct", "x-ray", ...); default: every phantom modality.
        splits: "train=0.8,val=0.1,test=0.1" or pairs.
        workers: processes generating and writing images (1: in this process).
        show_progress: a progress bar per dataset.
        on_image: called (dataset, split, seed) after each image is recorded (tests, GUIs).

    Raises ValueError for bad arguments or when ``out`` holds phantoms written with other
    parameters (nothing is written then).
    """
    from medsam_agent_rt.data._progress import progress
    from medsam_agent_rt.data.phantoms import PHANTOM_MODALITIES, parse_size, phantom_modality

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
    hw = parse_size(size)
    mods = [phantom_modality(m) for m in (modalities or PHANTOM_MODALITIES)]
    mods = list(dict.fromkeys(mods))
    split_spec = parse_splits(splits)
    ranges = split_ranges(int(n), split_spec)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(
        out,
        {
            "generator": "medsam_agent_rt.data.phantoms",
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "n": int(n),
            "size": list(hw),
            "splits": {name: round(frac, 6) for name, frac in split_spec},
            "modalities": _ordered(mods),
        },
    )

    report = WriteReport()
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for mod in mods:
            ds = dataset_name(mod)
            ds_dir = out / ds
            bar = progress(int(n), ds, show_progress)
            for split, idx in ranges.items():
                key = f"{ds}/{split}"
                seeds = [int(seed) + i for i in idx]
                json_path = ds_dir / f"{split}.json"
                partial = ds_dir / f".{split}.partial.jsonl"
                if not seeds:
                    continue
                if json_path.is_file() and not partial.exists():
                    try:
                        have = {
                            im.get("seed") for im in json.loads(json_path.read_text())["images"]
                        }
                    except (json.JSONDecodeError, KeyError, TypeError):
                        have = set()
                    if have == set(seeds):
                        report.skipped[key] = len(seeds)
                        bar.update(len(seeds))
                        continue
                image_dir, mask_dir = ds_dir / split, ds_dir / f"{split}_mask"
                image_dir.mkdir(parents=True, exist_ok=True)
                mask_dir.mkdir(parents=True, exist_ok=True)
                done = _read_partial(partial)
                done = {s: r for s, r in done.items() if s in set(seeds)}
                todo = [s for s in seeds if s not in done]
                report.skipped[key] = len(seeds) - len(todo)
                bar.update(len(seeds) - len(todo))
                jobs = [(mod, s, hw, str(image_dir), str(mask_dir), split) for s in todo]
                results = pool.map(_write_one, jobs, chunksize=4) if pool else map(_write_one, jobs)
                with open(partial, "a", encoding="utf-8") as f:
                    for rec in results:
                        f.write(json.dumps(rec) + "\n")
                        f.flush()
                        done[rec["seed"]] = rec
                        report.written[key] = report.written.get(key, 0) + 1
                        bar.update(1)
                        if on_image is not None:
                            on_image(ds, split, rec["seed"])
                info = {
                    "description": f"procedural {mod} phantoms (medsam-agent-rt)",
                    "dataset": ds,
                    "modality": mod,
                    "split": split,
                    "generator_version": GENERATOR_VERSION,
                    "seeds": [seeds[0], seeds[-1]],
                    "size": list(hw),
                }
                data = _assemble(done.values(), info)
                report.annotations[key] = len(data["annotations"])
                _write_json(json_path, data)
                partial.unlink()
            bar.close()
    finally:
        if pool is not None:
            pool.shutdown()
    return report
