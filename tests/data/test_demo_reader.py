"""The shared BiomedParse demo folder: 27 real images, 71 masks, 9 modalities."""

from __future__ import annotations

import collections

import numpy as np
from PIL import Image

from medsam_agent_rt.data import load_samples, read_demo


def test_finds_everything(demo_dir):
    samples = read_demo(demo_dir)
    assert len(samples) == 71
    assert len({s.image_id for s in samples}) == 27
    assert len({s.sample_id for s in samples}) == 71
    # counts per modality, from the folder listing (README: 9 modalities)
    assert collections.Counter(s.modality for s in samples) == {
        "CT": 24,
        "MRI": 25,
        "X-Ray": 6,
        "ultrasound": 5,
        "pathology": 4,
        "endoscope": 3,
        "fundus": 2,
        "dermoscopy": 1,
        "OCT": 1,
    }
    assert {s.dataset for s in samples} == {"biomedparse-demo"}
    # every mask file is used exactly once, every image has at least one mask
    assert sorted(s.mask_path.name for s in samples) == sorted(
        p.name for p in (demo_dir / "demo_mask").glob("*.png")
    )
    assert {s.image_path.name for s in samples} == {
        p.name for p in (demo_dir / "demo").glob("*.png")
    }


def test_targets_and_descriptions(demo_dir):
    by_id = {s.sample_id.split("/")[-1]: s for s in read_demo(demo_dir)}
    s = by_id["06_CT_abdomen_left+kidney"]
    assert (s.target, s.site, s.modality, s.description) == (
        "left kidney",
        "abdomen",
        "CT",
        "left kidney in abdomen CT",
    )
    s = by_id["09_MRI-FLAIR_brain_lower-grade+glioma"]
    assert s.modality == "MRI" and s.meta["sequence"] == "FLAIR"
    assert s.description == "lower-grade glioma in brain MRI-FLAIR"
    assert (
        by_id["15_X-Ray_chest_COVID-19+infection"].description
        == "COVID-19 infection in chest X-Ray"
    )
    assert by_id["24_endoscope_colon_non-neoplastic+polyp"].target == "non-neoplastic polyp"
    assert by_id["23_fundus_retinal_optic+cup"].description == "optic cup in retinal fundus"
    assert (
        by_id["24_endoscope_colon_polyp"].image_id
        == by_id["24_endoscope_colon_neoplastic+polyp"].image_id
    )


def test_pixels(demo_dir):
    s = next(x for x in read_demo(demo_dir) if x.sample_id.endswith("01_CT_lung_nodule"))
    image, mask = s.load()
    assert image.shape == (1024, 1024, 3) and image.dtype == np.uint8
    raw = np.asarray(Image.open(s.mask_path))
    np.testing.assert_array_equal(mask, raw[..., 0] > 0)
    np.testing.assert_array_equal(image, np.asarray(Image.open(s.image_path))[..., :3])
    assert 0 < mask.sum() < mask.size


def test_load_samples_detects_the_demo_layout(demo_dir):
    assert len(load_samples(demo_dir)) == 71
