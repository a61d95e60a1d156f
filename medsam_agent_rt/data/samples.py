"""``Sample``: one segmentation target in one image, the unit every reader yields and every
consumer (trajectory generation, evaluation, training) takes.

A sample carries its texts and ids eagerly and its pixels lazily: ``load_image()`` /
``load_mask()`` read the files on demand through ``medsam_agent_rt.io`` (any format it reads:
PNG / JPEG / TIFF / BMP, DICOM, NIfTI with a NIfTI mask volume) or return in-memory arrays (for
phantoms), so a list of 100k samples costs a few MB. ``meta`` may carry the reader's ``frame``,
``window``, ``axis`` and ``slice_index`` for multi-frame files and volumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.data.modality import describe

READ_ARGS = ("frame", "window", "axis", "slice_index")  # meta keys passed to io.read_image


@dataclass(frozen=True, eq=False)
class Sample:
    """One target of one image.

    Attributes:
        sample_id: stable id, unique within a collection: "<dataset>/<split>/<mask stem>".
        image_id: stable id of the image (shared by its targets): "<dataset>/<split>/<stem>".
        dataset: dataset name, e.g. "MSD/Task03_Liver", "biomedparse-demo", "phantom-ct".
        split: "train", "val", "test" (or the split the source names).
        target: the structure, e.g. "left kidney".
        description: the text the policy is given, e.g. "left kidney in abdomen CT".
        modality: canonical modality name (see ``modality.MODALITIES``).
        site: anatomical site, e.g. "abdomen", "colon", "retinal".
        image_path / mask_path: source files (None for in-memory samples).
        meta: extra facts (MRI "sequence", phantom "seed", source annotation fields, ...).
    """

    sample_id: str
    image_id: str
    dataset: str
    split: str
    target: str
    description: str
    modality: str
    site: str
    image_path: Path | None = None
    mask_path: Path | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    image_array: np.ndarray | None = field(default=None, repr=False)
    mask_array: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.image_path is None and self.image_array is None:
            raise ValueError(f"sample {self.sample_id!r}: needs image_path or image_array")
        if self.mask_path is None and self.mask_array is None:
            raise ValueError(f"sample {self.sample_id!r}: needs mask_path or mask_array")

    # ------------------------------------------------------------------ pixels
    def read_image(self) -> Any:
        """The image file as an ``io.LoadedImage`` (rgb + metadata)."""
        from medsam_agent_rt.io import read_image

        if self.image_path is None:
            raise ValueError(f"sample {self.sample_id!r} is in memory: it has no image file")
        args = {k: self.meta[k] for k in READ_ARGS if k in self.meta}
        return read_image(self.image_path, **args)

    def load_image(self) -> np.ndarray:
        """The image, RGB uint8 (H, W, 3)."""
        if self.image_array is not None:
            return self.image_array
        return self.read_image().rgb

    def load_mask(self, like: Any = None) -> np.ndarray:
        """The ground-truth mask, bool (H, W). A NIfTI mask volume is cut like the image (read
        here unless ``like``, its LoadedImage, is given)."""
        if self.mask_array is not None:
            return self.mask_array
        from medsam_agent_rt.io import detect_format, read_mask

        path = Path(self.mask_path)
        if like is None and path.is_file() and detect_format(path) == "nifti":
            like = self.read_image()
        return read_mask(self.mask_path, like=like if _is_volume(like) else None)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(image RGB uint8 (H, W, 3), mask bool (H, W)); raises ValueError naming both files
        when their sizes differ."""
        if self.image_array is not None:
            image, mask = self.image_array, self.load_mask()
        else:
            loaded = self.read_image()
            image, mask = loaded.rgb, self.load_mask(like=loaded)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"sample {self.sample_id!r}: mask {self.mask_path or '<array>'} is "
                f"{mask.shape[1]}x{mask.shape[0]} but image {self.image_path or '<array>'} is "
                f"{image.shape[1]}x{image.shape[0]} (WxH)"
            )
        return image, mask

    # ------------------------------------------------------------------ records
    def to_record(self) -> dict[str, Any]:
        """A JSON-serialisable description (ids, texts, paths as strings, meta)."""
        return {
            "sample_id": self.sample_id,
            "image_id": self.image_id,
            "dataset": self.dataset,
            "split": self.split,
            "target": self.target,
            "description": self.description,
            "modality": self.modality,
            "site": self.site,
            "image_path": None if self.image_path is None else str(self.image_path),
            "mask_path": None if self.mask_path is None else str(self.mask_path),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Sample:
        """The inverse of ``to_record`` for file-backed samples."""
        missing = [k for k in ("sample_id", "image_path", "mask_path") if not record.get(k)]
        if missing:
            raise ValueError(f"sample record: missing {', '.join(missing)} in {dict(record)!r}")
        target = record.get("target", "")
        site = record.get("site", "")
        modality = record.get("modality", "")
        return cls(
            sample_id=record["sample_id"],
            image_id=record.get("image_id", record["sample_id"]),
            dataset=record.get("dataset", ""),
            split=record.get("split", ""),
            target=target,
            description=record.get("description") or describe(target, site, modality),
            modality=modality,
            site=site,
            image_path=Path(record["image_path"]),
            mask_path=Path(record["mask_path"]),
            meta=dict(record.get("meta") or {}),
        )


def group_by_image(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by ``image_id``, in first-seen order (one image embedding serves all of
    its targets)."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.image_id, []).append(s)
    return groups


def filter_samples(
    samples: Iterable[Sample],
    *,
    datasets: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    modalities: Iterable[str] | None = None,
) -> list[Sample]:
    """The samples whose dataset, split and (canonical) modality are in the given sets (None:
    any)."""
    from medsam_agent_rt.data.modality import normalise_modality

    ds = None if datasets is None else set(datasets)
    sp = None if splits is None else set(splits)
    mo = None if modalities is None else {normalise_modality(m, strict=False) for m in modalities}
    return [
        s
        for s in samples
        if (ds is None or s.dataset in ds)
        and (sp is None or s.split in sp)
        and (mo is None or s.modality in mo)
    ]


def counts(samples: Iterable[Sample]) -> dict[str, dict[str, dict[str, int]]]:
    """Number of samples per dataset, split and target: ``{dataset: {split: {target: n}}}``."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for s in samples:
        per = out.setdefault(s.dataset, {}).setdefault(s.split, {})
        per[s.target] = per.get(s.target, 0) + 1
    return out


def _is_volume(like: Any) -> bool:
    """Whether ``like`` is a LoadedImage cut from a NIfTI volume (its masks are cut alike)."""
    return like is not None and getattr(like, "format", None) == "nifti"
