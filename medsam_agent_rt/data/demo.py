"""Reader for the BiomedParse demo folder (``shared/data/biomedparse-demo``).

Layout: ``ROOT/demo/NN_<Modality>_<site>.png`` and one mask per target in
``ROOT/demo_mask/NN_<Modality>_<site>_<target>.png`` (``+`` = space). The description is
"<target> in <site> <Modality>" with the modality written as in the file name (as BiomedParse
builds its sentences), e.g. "lower-grade glioma in brain MRI-FLAIR". Any folder pair
``<split>/`` + ``<split>_mask/`` without a JSON file reads the same way (``read_named_split``).
"""

from __future__ import annotations

import os
from pathlib import Path

from medsam_agent_rt.data.modality import describe
from medsam_agent_rt.data.naming import IMAGE_SUFFIXES, parse_image_name
from medsam_agent_rt.data.samples import Sample

DEMO_DATASET = "biomedparse-demo"
DEMO_SPLIT = "test"  # an evaluation set: it has no training split


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_named_split(
    image_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    *,
    dataset: str,
    split: str,
    strict_modality: bool = False,
) -> list[Sample]:
    """Samples of an image folder and its mask folder paired by file name alone.

    Every mask must extend exactly one image stem; a mask without an image, or an image name
    that does not parse, raises ValueError naming the file. Images without masks are skipped.
    Masks are matched to the longest image stem they extend (so "1_CT_x_a" and "1_CT_x_a_b"
    cannot be confused).
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    for what, d in (("image folder", image_dir), ("mask folder", mask_dir)):
        if not d.is_dir():
            raise FileNotFoundError(f"{what} not found: {d}")
    images = {p.stem: p for p in _images(image_dir)}
    stems = sorted(images, key=len, reverse=True)
    samples: list[Sample] = []
    for mask in _images(mask_dir):
        owner = next((s for s in stems if mask.stem.startswith(s + "_")), None)
        if owner is None:
            raise ValueError(
                f"mask {mask}: no image in {image_dir} whose name it extends "
                "('<image stem>_<target>.png' expected)"
            )
        info = parse_image_name(images[owner], strict=strict_modality)
        target = mask.stem[len(owner) + 1 :].replace("+", " ")
        meta = {"modality_token": info.modality_token}
        if info.modality.sequence:
            meta["sequence"] = info.modality.sequence
        samples.append(
            Sample(
                sample_id=f"{dataset}/{split}/{mask.stem}",
                image_id=f"{dataset}/{split}/{owner}",
                dataset=dataset,
                split=split,
                target=target,
                description=describe(target, info.site, info.modality_token),
                modality=info.modality.name,
                site=info.site,
                image_path=images[owner],
                mask_path=mask,
                meta=meta,
            )
        )
    samples.sort(key=lambda s: (s.image_id, s.sample_id))
    return samples


def is_demo_root(root: str | os.PathLike) -> bool:
    """True when ``root`` holds ``demo/`` and ``demo_mask/``."""
    root = Path(root)
    return (root / "demo").is_dir() and (root / "demo_mask").is_dir()


def refuse_demo_for_training(root: str | os.PathLike) -> None:
    """ValueError when ``root`` is the demo set (a folder holding ``demo/``, or any path through
    the shared ``biomedparse-demo`` copy): it is evaluation data, never training data."""
    root = Path(root)
    if (root / "demo").is_dir() or "biomedparse-demo" in str(root.resolve()):
        raise ValueError(f"{root} is the demo set: evaluation only, never training data")


def read_demo(root: str | os.PathLike, *, dataset: str = DEMO_DATASET) -> list[Sample]:
    """All samples of the demo folder (71 targets in 27 images for the shared copy), sorted by
    image then mask name. Raises FileNotFoundError when ``root/demo`` or ``root/demo_mask`` is
    missing."""
    root = Path(root)
    return read_named_split(
        root / "demo", root / "demo_mask", dataset=dataset, split=DEMO_SPLIT, strict_modality=True
    )
