"""Canonical modality names, one spelling everywhere.

The canonical spellings are BiomedParse's (the data the MedSAM-Agent policy was trained on):
target descriptions read "<target> in <site> <modality>", e.g. "polyp in colon endoscope" or
"left lung in chest X-Ray", and a policy is most accurate on the exact wording it saw. Aliases
("endoscopy", "x-ray", "US", "histopathology", ...) map onto them. MRI sequences ride along:
"MRI-FLAIR", "T1-Gd" and "MRI-T2" are modality "MRI" with a sequence.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: The canonical modality names, in a fixed order.
MODALITIES: tuple[str, ...] = (
    "CT",
    "MRI",
    "X-Ray",
    "ultrasound",
    "endoscope",
    "fundus",
    "dermoscopy",
    "pathology",
    "OCT",
)

_ALIASES: dict[str, str] = {
    # key: lower case with every non-alphanumeric character removed
    "ct": "CT",
    "cta": "CT",
    "computedtomography": "CT",
    "mri": "MRI",
    "mr": "MRI",
    "magneticresonance": "MRI",
    "magneticresonanceimaging": "MRI",
    "xray": "X-Ray",
    "xr": "X-Ray",
    "cxr": "X-Ray",
    "radiograph": "X-Ray",
    "radiography": "X-Ray",
    "dx": "X-Ray",
    "cr": "X-Ray",
    "ultrasound": "ultrasound",
    "us": "ultrasound",
    "ultrasonography": "ultrasound",
    "sonography": "ultrasound",
    "echo": "ultrasound",
    "endoscope": "endoscope",
    "endoscopy": "endoscope",
    "colonoscopy": "endoscope",
    "es": "endoscope",
    "fundus": "fundus",
    "funduscopy": "fundus",
    "fundusphotography": "fundus",
    "cfp": "fundus",
    "dermoscopy": "dermoscopy",
    "dermoscope": "dermoscopy",
    "dermatoscopy": "dermoscopy",
    "derm": "dermoscopy",
    "pathology": "pathology",
    "histopathology": "pathology",
    "histology": "pathology",
    "he": "pathology",
    "wsi": "pathology",
    "oct": "OCT",
    "opticalcoherencetomography": "OCT",
}

# Tokens that are an MRI sequence on their own ("T1-Gd_brain" in BiomedParse file names).
_MRI_SEQUENCE = re.compile(r"^(t1|t2|flair|adc|dwi|pd|t1gd|t1ce|t1c|t2w|t1w|swi|bold)", re.I)


class Modality(NamedTuple):
    """A parsed modality token: canonical name plus the MRI sequence (None when absent)."""

    name: str
    sequence: str | None = None

    @property
    def label(self) -> str:
        """The spelling used in file names and descriptions ("MRI-FLAIR", "CT")."""
        return f"{self.name}-{self.sequence}" if self.sequence else self.name


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def parse_modality(token: str, *, strict: bool = True) -> Modality:
    """Parse a modality token such as "CT", "endoscopy", "MRI-FLAIR", "T1-Gd" or "x-ray".

    Raises ValueError naming ``token`` and the known names when it is unknown and ``strict``;
    otherwise the unknown token is returned unchanged as the name.
    """
    if not isinstance(token, str) or not token.strip():
        raise ValueError(f"modality: expected a non-empty string, got {token!r}")
    raw = token.strip()
    key = _key(raw)
    if key in _ALIASES:
        return Modality(_ALIASES[key])
    for prefix in ("mri", "mr"):
        if key.startswith(prefix) and raw[len(prefix) :].lstrip("-_ ").strip():
            rest = raw[len(prefix) :].lstrip("-_ ")
            if _MRI_SEQUENCE.match(_key(rest)):
                return Modality("MRI", rest)
    if _MRI_SEQUENCE.match(key) and len(key) <= 8:
        return Modality("MRI", raw)
    if strict:
        raise ValueError(
            f"modality: unknown modality {token!r}; expected one of {', '.join(MODALITIES)} "
            "(or an alias such as endoscopy, x-ray, US, histopathology, MRI-FLAIR)"
        )
    return Modality(raw)


def normalise_modality(token: str, *, strict: bool = True) -> str:
    """The canonical name of a modality token ("endoscopy" -> "endoscope", "MRI-T2" -> "MRI")."""
    return parse_modality(token, strict=strict).name


def modality_slug(name: str) -> str:
    """A lower-case file-system-friendly key of a modality ("X-Ray" -> "xray")."""
    return _key(normalise_modality(name))


def describe(target: str, site: str, modality_label: str) -> str:
    """The natural target description used by BiomedParse and the policy:
    "<target> in <site> <modality>", e.g. "left kidney in abdomen CT"."""
    return f"{target} in {site} {modality_label}"
