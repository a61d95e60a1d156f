"""Reader for the BiomedParse-style layout that the MedSAM-Agent authors train and evaluate on.

::

    ROOT/<dataset>/train/            images          ROOT/<dataset>/train.json
    ROOT/<dataset>/train_mask/       masks (0/255)   ROOT/<dataset>/test.json ...
    ROOT/<group>/<dataset>/...       sub-datasets one level down (dataset name "group/dataset")

``<split>.json`` is COCO-like: ``annotations[]`` entries carry ``file_name`` (the image),
``mask_file``, ``sentences[0].sent`` (the description) and optionally ``split``, ``image_id``,
``target``, ``modality``, ``site``; ``images[]`` maps ``image_id`` to ``file_name``. Missing
optional fields are recovered from the file names ("<id>_<Modality>_<site>_<target>.png") or
the sentence; a missing file or malformed JSON raises an error naming the file and the entry.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsam_agent_rt.data.modality import describe, parse_modality
from medsam_agent_rt.data.naming import (
    parse_image_name,
    target_from_mask_name,
    target_from_mask_name_only,
)
from medsam_agent_rt.data.samples import Sample

#: JSON stems recognised as splits even when no folder of that name exists yet.
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
_SKIP_DIRS = {"__pycache__", "node_modules"}


class DatasetFormatError(ValueError):
    """A BiomedParse-style dataset that does not follow the layout (names file and entry)."""


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset folder: its name (path relative to the root, '/'-separated), location and
    the splits that have a JSON file."""

    name: str
    path: Path
    splits: tuple[str, ...]


def _split_order(split: str) -> tuple[int, str]:
    return (SPLIT_NAMES.index(split) if split in SPLIT_NAMES else len(SPLIT_NAMES), split)


def dataset_splits(folder: str | os.PathLike) -> tuple[str, ...]:
    """The splits of a dataset folder: ``<s>.json`` files with ``s`` a usual split name or with
    a ``<s>/`` or ``<s>_mask/`` folder beside them."""
    folder = Path(folder)
    found = []
    for p in folder.glob("*.json"):
        s = p.stem
        if s in SPLIT_NAMES or (folder / s).is_dir() or (folder / f"{s}_mask").is_dir():
            found.append(s)
    return tuple(sorted(found, key=_split_order))


def find_datasets(root: str | os.PathLike, *, max_depth: int = 3) -> list[DatasetInfo]:
    """Every dataset folder under ``root`` (``root`` itself included), down to ``max_depth``
    levels, sorted by name. Image and mask folders of a dataset are not descended into.
    Raises FileNotFoundError when ``root`` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    out: list[DatasetInfo] = []

    def visit(folder: Path, depth: int) -> None:
        splits = dataset_splits(folder)
        skip: set[str] = set()
        if splits:
            name = folder.relative_to(root).as_posix() if folder != root else root.name
            out.append(DatasetInfo(name, folder, splits))
            skip = {s for s in splits} | {f"{s}_mask" for s in splits}
        if depth >= max_depth:
            return
        for child in sorted(folder.iterdir()):
            if (
                child.is_dir()
                and child.name not in skip
                and child.name not in _SKIP_DIRS
                and not child.name.startswith(".")
                and not child.name.endswith("_mask")
            ):
                visit(child, depth + 1)

    visit(root, 0)
    return sorted(out, key=lambda d: d.name)


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({exc})") from exc
    except (RecursionError, ValueError) as exc:  # nesting bombs, integer-digit limits
        raise DatasetFormatError(f"{path}: unreadable JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        got = type(data).__name__ if not isinstance(data, dict) else f"keys {sorted(data)}"
        raise DatasetFormatError(
            f"{path}: expected an object with an 'annotations' list, got {got}"
        )
    return data


def _sentence(ann: dict[str, Any]) -> str | None:
    sents = ann.get("sentences")
    if isinstance(sents, list):
        for s in sents:
            if isinstance(s, dict):
                text = s.get("sent") or s.get("raw")
                if isinstance(text, str) and text.strip():
                    return text.strip()
            elif isinstance(s, str) and s.strip():
                return s.strip()
    return None


class _Listing:
    """Cached folder listings, so checking 100k files costs one listdir per folder."""

    def __init__(self) -> None:
        self._cache: dict[Path, set[str]] = {}

    def exists(self, path: Path) -> bool:
        folder = path.parent
        if folder not in self._cache:
            try:
                self._cache[folder] = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                self._cache[folder] = set()
        return path.name in self._cache[folder]


def read_split(
    dataset_dir: str | os.PathLike,
    split: str,
    *,
    dataset: str | None = None,
    check_files: bool = True,
) -> list[Sample]:
    """The samples of ``dataset_dir/<split>.json``, in annotation order.

    Args:
        dataset_dir: the dataset folder.
        split: the JSON stem ("train", "test", "test_illegal", ...). Images are looked up in
            the folder named by each entry's ``split`` field (default: ``split``) and masks in
            ``<that>_mask``.
        dataset: the dataset name given to the samples (default: the folder name).
        check_files: verify that every image and mask file exists (one listdir per folder).

    Raises FileNotFoundError / DatasetFormatError naming the JSON file and the entry; any other
    error a malformed entry provokes (a list where a name belongs, ...) becomes a
    DatasetFormatError too.
    """
    at = {"where": f"{Path(dataset_dir) / f'{split}.json'}"}
    try:
        return _read_split(Path(dataset_dir), split, dataset, check_files, at)
    except (DatasetFormatError, FileNotFoundError):
        raise
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError) as exc:
        raise DatasetFormatError(
            f"{at['where']}: malformed entry ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def _read_split(
    dataset_dir: Path, split: str, dataset: str | None, check_files: bool, at: dict[str, str]
) -> list[Sample]:
    json_path = dataset_dir / f"{split}.json"
    data = _load_json(json_path)
    dataset = dataset or dataset_dir.name

    images: dict[Any, str] = {}
    raw_images = data.get("images") or []
    if not isinstance(raw_images, list):
        raise DatasetFormatError(f"{json_path}: 'images' must be a list, got {type(raw_images)}")
    for i, im in enumerate(raw_images):
        if not isinstance(im, dict) or "file_name" not in im:
            raise DatasetFormatError(
                f"{json_path}: images[{i}]: expected an object with 'file_name', got {im!r:.200}"
            )
        images[im.get("id", i)] = im["file_name"]
    categories = {
        c.get("id"): c.get("name")
        for c in data.get("categories") or []
        if isinstance(c, dict) and isinstance(c.get("name"), str)
    }
    info = data.get("info") if isinstance(data.get("info"), dict) else {}

    listing = _Listing()
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    root = Path(os.path.realpath(dataset_dir))
    pairs: dict[tuple[str, str], int] = {}  # (image, mask) -> first annotation index
    duplicates: list[str] = []
    for i, ann in enumerate(data["annotations"]):
        where = at["where"] = f"{json_path}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise DatasetFormatError(f"{where}: expected an object, got {ann!r:.200}")
        file_name = ann.get("file_name")
        if not file_name:
            if "image_id" not in ann or ann["image_id"] not in images:
                raise DatasetFormatError(
                    f"{where}: no 'file_name' and no images[] entry with image_id "
                    f"{ann.get('image_id')!r}"
                )
            file_name = images[ann["image_id"]]
        mask_file = ann.get("mask_file") or file_name
        if not isinstance(file_name, str) or not isinstance(mask_file, str):
            raise DatasetFormatError(f"{where}: 'file_name' and 'mask_file' must be strings")
        ann_split = ann.get("split") if isinstance(ann.get("split"), str) else split
        image_path = dataset_dir / ann_split / file_name
        mask_path = dataset_dir / f"{ann_split}_mask" / mask_file
        for what, name, p in (
            ("file_name", file_name, image_path),
            ("mask_file", mask_file, mask_path),
        ):
            if not _inside(p, root):
                raise DatasetFormatError(
                    f"{where}: {what} {name!r} (split {ann_split!r}) points outside the dataset folder {dataset_dir}; entries must name files "
                    "inside it (no absolute paths, no '..', no links out)"
                )
        pair = (str(image_path), str(mask_path))
        if pair in pairs:
            duplicates.append(f"annotations[{i}] repeats annotations[{pairs[pair]}]")
            continue
        pairs[pair] = i
        if check_files:
            for what, p in (("image", image_path), ("mask", mask_path)):
                if not listing.exists(p) and not p.is_file():
                    raise FileNotFoundError(
                        f"{where} (mask_file {mask_file!r}): {what} file not found: {p}"
                    )
        sentence = _sentence(ann)

        # target: explicit field > mask name > sentence > category name
        target = ann.get("target") if isinstance(ann.get("target"), str) else None
        if not target and mask_file != file_name:
            try:
                target = target_from_mask_name(mask_file, file_name)
            except ValueError:
                target = target_from_mask_name_only(mask_file) if "_" in mask_file else None
        if not target and sentence and " in " in sentence:
            target = sentence.rsplit(" in ", 1)[0]
        if not target:
            target = categories.get(ann.get("category_id")) or sentence or ""

        # modality and site: explicit fields > dataset info > image file name > sentence
        token = ann.get("modality") or info.get("modality")
        site = ann.get("site") or info.get("site")
        if not token or not site:
            try:
                parsed = parse_image_name(file_name)
                token, site = token or parsed.modality_token, site or parsed.site
            except ValueError:
                pass
        if (not token or not site) and sentence and " in " in sentence:
            words = sentence.rsplit(" in ", 1)[1].split()
            if len(words) >= 2:
                token, site = token or words[-1], site or " ".join(words[:-1])
        modality = parse_modality(token, strict=False) if token else None
        meta: dict[str, Any] = {"source": str(json_path)}
        sequence = ann.get("sequence") if isinstance(ann.get("sequence"), str) else None
        if sequence or (modality and modality.sequence):
            meta["sequence"] = sequence or modality.sequence
        if token:
            meta["modality_token"] = token
        for key in ("id", "image_id", "category_id"):
            if key in ann:
                meta[f"annotation_{key}" if key == "id" else key] = ann[key]
        if "seed" in ann:
            meta["seed"] = ann["seed"]

        stem = Path(mask_file).stem
        sample_id = f"{dataset}/{ann_split}/{stem}"
        if sample_id in seen:  # one mask name under two images (exact repeats were dropped)
            seen[sample_id] += 1
            sample_id = f"{sample_id}#{seen[sample_id]}"
        else:
            seen[sample_id] = 0
        samples.append(
            Sample(
                sample_id=sample_id,
                image_id=f"{dataset}/{ann_split}/{Path(file_name).stem}",
                dataset=dataset,
                split=ann_split,
                target=target,
                description=sentence or describe(target, site or "", token or ""),
                modality=modality.name if modality else "unknown",
                site=site or "unknown",
                image_path=image_path,
                mask_path=mask_path,
                meta=meta,
            )
        )
    if duplicates:
        warnings.warn(
            f"{json_path}: {len(duplicates)} annotation(s) repeat an earlier (image, mask) pair "
            f"and are counted once ({'; '.join(duplicates[:3])}"
            f"{' ...' if len(duplicates) > 3 else ''})",
            stacklevel=2,
        )
    return samples


def _inside(path: Path, root: Path) -> bool:
    """``path`` (symlinks resolved) lies inside ``root`` (already resolved)."""
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def iter_biomedparse(
    root: str | os.PathLike,
    *,
    datasets: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    check_files: bool = True,
) -> Iterator[Sample]:
    """Samples of every dataset under ``root`` (or only ``datasets``, by name) and split (or
    only ``splits``), dataset by dataset. Raises ValueError when a requested dataset does not
    exist, listing the ones that do."""
    found = find_datasets(root)
    wanted = None if datasets is None else list(datasets)
    if wanted is not None:
        names = {d.name for d in found}
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ValueError(
                f"datasets: {missing} not found under {root}; available: {sorted(names)}"
            )
        found = [d for d in found if d.name in set(wanted)]
    split_set = None if splits is None else set(splits)
    for d in found:
        for s in d.splits:
            if split_set is None or s in split_set:
                yield from read_split(d.path, s, dataset=d.name, check_files=check_files)


def read_biomedparse(
    root: str | os.PathLike,
    *,
    datasets: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    check_files: bool = True,
) -> list[Sample]:
    """``list(iter_biomedparse(...))``."""
    return list(iter_biomedparse(root, datasets=datasets, splits=splits, check_files=check_files))
