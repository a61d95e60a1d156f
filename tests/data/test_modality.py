"""The canonical modality table and the BiomedParse file-name conventions."""

from __future__ import annotations

import pytest

from medsam_agent_rt.data.modality import (
    MODALITIES,
    describe,
    modality_slug,
    normalise_modality,
    parse_modality,
)
from medsam_agent_rt.data.naming import (
    image_file_name,
    mask_file_name,
    parse_image_name,
    target_from_mask_name,
    target_from_mask_name_only,
)


@pytest.mark.parametrize(
    "token, name",
    [
        ("CT", "CT"),
        ("ct", "CT"),
        ("MRI", "MRI"),
        ("MR", "MRI"),
        ("X-Ray", "X-Ray"),
        ("xray", "X-Ray"),
        ("x_ray", "X-Ray"),
        ("CXR", "X-Ray"),
        ("US", "ultrasound"),
        ("Ultrasound", "ultrasound"),
        ("endoscopy", "endoscope"),
        ("Endoscope", "endoscope"),
        ("fundus", "fundus"),
        ("dermoscope", "dermoscopy"),
        ("histopathology", "pathology"),
        ("OCT", "OCT"),
    ],
)
def test_aliases_map_to_one_spelling(token, name):
    assert normalise_modality(token) == name
    assert name in MODALITIES


@pytest.mark.parametrize(
    "token, seq",
    [
        ("MRI-FLAIR", "FLAIR"),
        ("MRI-T1-Gd", "T1-Gd"),
        ("T2", "T2"),
        ("MRI-ADC", "ADC"),
        ("FLAIR", "FLAIR"),
    ],
)
def test_mri_sequences(token, seq):
    m = parse_modality(token)
    assert (m.name, m.sequence) == ("MRI", seq)
    assert m.label == f"MRI-{seq}"


def test_unknown_modality():
    with pytest.raises(ValueError, match="modality: unknown modality 'PET-CT'"):
        parse_modality("PET-CT")
    assert parse_modality("PET-CT", strict=False).name == "PET-CT"
    with pytest.raises(ValueError, match="non-empty"):
        parse_modality("  ")


def test_slug_and_describe():
    assert [modality_slug(m) for m in ("X-Ray", "endoscopy", "CT")] == ["xray", "endoscope", "ct"]
    assert describe("left kidney", "abdomen", "CT") == "left kidney in abdomen CT"


def test_file_names_parse_from_the_right():
    info = parse_image_name("coronacases_003_123_CT_lung.png")
    assert (info.stem, info.modality.name, info.site) == (
        "coronacases_003_123_CT_lung",
        "CT",
        "lung",
    )
    info = parse_image_name("TCGA_HT_7856_19950831_8_MRI-FLAIR_brain.png")
    assert (info.modality.name, info.modality.sequence, info.modality_token) == (
        "MRI",
        "FLAIR",
        "MRI-FLAIR",
    )
    with pytest.raises(ValueError, match="expected '<id>_<Modality>_<site>.png'"):
        parse_image_name("lonely.png")
    assert (
        target_from_mask_name("06_CT_abdomen_left+kidney.png", "06_CT_abdomen.png") == "left kidney"
    )
    assert target_from_mask_name_only("x_CT_lung_COVID-19+infection.png") == "COVID-19 infection"
    with pytest.raises(ValueError, match="mask file name"):
        target_from_mask_name("07_CT_abdomen_kidney.png", "06_CT_abdomen.png")


def test_file_names_round_trip():
    img = image_file_name("00000042", "MRI-FLAIR", "brain")
    assert img == "00000042_MRI-FLAIR_brain.png"
    mask = mask_file_name(img, "tumor core")
    assert mask == "00000042_MRI-FLAIR_brain_tumor+core.png"
    assert target_from_mask_name(mask, img) == "tumor core"
    with pytest.raises(ValueError, match="target"):
        mask_file_name(img, "bad_target")
    with pytest.raises(ValueError, match="site"):
        image_file_name("1", "CT", "ab_domen")
