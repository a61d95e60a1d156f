"""BiomedParse file-name conventions, shared by every reader and the phantom writer.

Images are ``<stem>_<Modality>_<site>.png`` and masks ``<image stem>_<target>.png`` with ``+``
standing for a space in the target ("06_CT_abdomen_left+kidney.png" is the "left kidney" of
"06_CT_abdomen.png"). The leading stem may itself contain underscores, so names are parsed from
the right.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import NamedTuple

from medsam_agent_rt.data.modality import Modality, parse_modality

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ImageName(NamedTuple):
    """What an image file name says: its stem, modality (parsed) and site."""

    stem: str
    modality: Modality
    modality_token: str  # as written in the name, e.g. "MRI-FLAIR"
    site: str


def parse_image_name(name: str | PurePath, *, strict: bool = False) -> ImageName:
    """Parse ``<prefix>_<Modality>_<site>.<ext>``.

    Raises ValueError naming the file when it has fewer than two ``_`` separated fields; an
    unknown modality token is kept as written unless ``strict``.
    """
    stem = PurePath(name).stem
    parts = stem.split("_")
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        raise ValueError(
            f"image file name {str(name)!r}: expected '<id>_<Modality>_<site>.png' "
            "(e.g. '06_CT_abdomen.png')"
        )
    token, site = parts[-2], parts[-1]
    return ImageName(stem, parse_modality(token, strict=strict), token, site.replace("+", " "))


def target_from_mask_name(mask_name: str | PurePath, image_name: str | PurePath) -> str:
    """The target encoded in a mask name, given its image's name ("left+kidney" -> "left
    kidney"). Raises ValueError when the mask name does not extend the image stem."""
    mask_stem, image_stem = PurePath(mask_name).stem, PurePath(image_name).stem
    if not mask_stem.startswith(image_stem + "_") or len(mask_stem) == len(image_stem) + 1:
        raise ValueError(
            f"mask file name {str(mask_name)!r}: expected '{image_stem}_<target>.png' "
            f"for image {str(image_name)!r}"
        )
    return mask_stem[len(image_stem) + 1 :].replace("+", " ")


def target_from_mask_name_only(mask_name: str | PurePath) -> str:
    """The target of a mask name on its own: the last ``_`` field, ``+`` -> space (BiomedParse's
    own rule; ambiguous only for targets that contain ``_``, which its names never do)."""
    stem = PurePath(mask_name).stem
    if "_" not in stem:
        raise ValueError(f"mask file name {str(mask_name)!r}: expected '<image stem>_<target>.png'")
    return stem.rsplit("_", 1)[1].replace("+", " ")


def _check_field(what: str, value: str) -> str:
    if not value or "_" in value or "/" in value or "\\" in value or value != value.strip():
        raise ValueError(
            f"{what}: expected a non-empty name without '_', '/' or surrounding spaces, "
            f"got {value!r}"
        )
    return value


def image_file_name(stem: str, modality_label: str, site: str, suffix: str = ".png") -> str:
    """``<stem>_<Modality>_<site><suffix>``; site spaces become ``+``."""
    if not stem or "/" in stem:
        raise ValueError(f"stem: expected a non-empty name without '/', got {stem!r}")
    _check_field("modality", modality_label)
    _check_field("site", site)
    return f"{stem}_{modality_label}_{site.replace(' ', '+')}{suffix}"


def mask_file_name(image_name: str, target: str, suffix: str = ".png") -> str:
    """``<image stem>_<target with + for spaces><suffix>``."""
    _check_field("target", target)
    return f"{PurePath(image_name).stem}_{target.replace(' ', '+')}{suffix}"
