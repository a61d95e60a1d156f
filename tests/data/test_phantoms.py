"""Procedural phantoms: determinism, the anatomy each modality promises (targets present,
inside the field of view, one piece, touching pairs touching, lesions inside their organ),
non-square sizes, argument errors. Geometry is checked with scipy.ndimage, independently of
the generator's own NumPy helpers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from medsam_agent_rt.data.modality import parse_modality
from medsam_agent_rt.data.phantoms import PHANTOM_MODALITIES, generate

EIGHT = np.ones((3, 3), bool)
SEEDS = range(10)
SIZE = 256

# site -> (required targets, optional targets)
SITES = {
    "CT": {
        "abdomen": (
            {
                "liver",
                "spleen",
                "right kidney",
                "left kidney",
                "aorta",
                "postcava",
                "pancreas",
                "stomach",
            },
            {"gallbladder", "liver tumor", "kidney cyst"},
        )
    },
    "MRI": {
        "brain": ({"lateral ventricle", "tumor core", "edema"}, {"enhancing tumor"}),
        "heart": ({"left heart ventricle", "myocardium", "right heart ventricle"}, set()),
    },
    "X-Ray": {"chest": ({"right lung", "left lung", "heart"}, {"nodule", "lung opacity"})},
    "ultrasound": {
        "breast": ({"tumor"}, {"cyst"}),
        # an off-centre probe may leave one carotid artery outside the fan
        "thyroid": (
            {"thyroid gland"},
            {"thyroid nodule", "right carotid artery", "left carotid artery"},
        ),
    },
    "endoscope": {"colon": ({"polyp"}, {"neoplastic polyp", "non-neoplastic polyp"})},
    "fundus": {"retinal": ({"optic disc", "optic cup"}, set())},
    "dermoscopy": {"skin": (set(), {"melanoma", "nevus"})},
    "pathology": {"colon": ({"glandular structure"}, set())},
}
# pairs that must share a boundary without overlapping, whenever both are present
TOUCHING = {
    "CT": [("liver", "right kidney"), ("liver", "postcava")],
    "MRI": [
        ("tumor core", "edema"),
        ("left heart ventricle", "myocardium"),
        ("myocardium", "right heart ventricle"),
    ],
    "X-Ray": [("heart", "right lung"), ("heart", "left lung")],
    "ultrasound": [
        ("thyroid gland", "right carotid artery"),
        ("thyroid gland", "left carotid artery"),
    ],
}
# lesion -> organs (it lies inside one of them)
INSIDE = {
    "CT": {"liver tumor": ("liver",), "kidney cyst": ("left kidney", "right kidney")},
    "MRI": {"enhancing tumor": ("tumor core",)},
    "X-Ray": {"nodule": ("left lung", "right lung"), "lung opacity": ("left lung", "right lung")},
    "ultrasound": {"thyroid nodule": ("thyroid gland",)},
    "fundus": {"optic cup": ("optic disc",)},
    "endoscope": {"neoplastic polyp": ("polyp",), "non-neoplastic polyp": ("polyp",)},
}
# targets that are several pieces by nature
MULTI = {
    "lateral ventricle",
    "polyp",
    "neoplastic polyp",
    "non-neoplastic polyp",
    "glandular structure",
    "liver tumor",
}
# lesions that must show up in some of the seeds
LESIONS = {
    "CT": {"liver tumor", "kidney cyst"},
    "X-Ray": {"nodule", "lung opacity"},
    "ultrasound": {"thyroid nodule", "cyst"},
    "MRI": {"enhancing tumor"},
}


def touching(a: np.ndarray, b: np.ndarray) -> bool:
    return not (a & b).any() and bool((ndi.binary_dilation(a, EIGHT) & b).any())


@pytest.fixture(scope="module")
def phantoms():
    return {m: [generate(m, s, SIZE) for s in SEEDS] for m in PHANTOM_MODALITIES}


def test_covers_the_modalities():
    assert set(PHANTOM_MODALITIES) == set(SITES)
    assert len(PHANTOM_MODALITIES) >= 6


@pytest.mark.parametrize("modality", PHANTOM_MODALITIES)
def test_anatomy(phantoms, modality):
    sites_seen, targets_seen = set(), set()
    for ph in phantoms[modality]:
        assert ph.image.shape == (SIZE, SIZE, 3) and ph.image.dtype == np.uint8
        assert ph.modality == modality == parse_modality(ph.modality_label).name
        assert ph.fov.shape == (SIZE, SIZE) and 0.2 < ph.fov.mean() <= 1.0
        required, optional = SITES[modality][ph.site]
        assert required <= set(ph.masks) <= required | optional, (ph.seed, sorted(ph.masks))
        assert ph.masks
        sites_seen.add(ph.site)
        targets_seen |= set(ph.masks)
        for t, m in ph.masks.items():
            assert m.dtype == bool and m.shape == (SIZE, SIZE)
            assert m.sum() >= 12, (ph.seed, t)
            assert not (m & ~ph.fov).any(), f"seed {ph.seed}: {t} leaves the field of view"
            assert ph.description(t) == f"{t} in {ph.site} {ph.modality_label}"
            if t not in MULTI:
                assert ndi.label(m, EIGHT)[1] == 1, f"seed {ph.seed}: {t} is in pieces"
        for a, b in TOUCHING.get(modality, []):
            if a in ph.masks and b in ph.masks:
                assert touching(ph.masks[a], ph.masks[b]), f"seed {ph.seed}: {a} / {b}"
        for lesion, organs in INSIDE.get(modality, {}).items():
            if lesion in ph.masks:
                assert any(
                    o in ph.masks and not (ph.masks[lesion] & ~ph.masks[o]).any() for o in organs
                ), f"seed {ph.seed}: {lesion} not inside {organs}"
        # the image shows something: structure masks differ from their surroundings or at
        # least the image is not flat
        assert ph.image.std() > 10
    assert sites_seen == set(SITES[modality]), sites_seen
    assert LESIONS.get(modality, set()) <= targets_seen, targets_seen


def test_ct_organs_are_disjoint(phantoms):
    for ph in phantoms["CT"]:
        organs = [m for t, m in ph.masks.items() if t not in INSIDE["CT"]]
        assert (np.sum(organs, axis=0) <= 1).all()


def test_a_box_is_often_not_enough(phantoms):
    """In images with several targets, some target's bounding box holds a real share of
    another target: a box alone is ambiguous there and corrective clicks matter."""
    ambiguous = total = 0
    for phs in phantoms.values():
        for ph in phs:
            if len(ph.masks) < 2:
                continue
            total += 1
            for t, m in ph.masks.items():
                ys, xs = np.nonzero(m)
                box = np.zeros_like(m)
                box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
                others = np.any([o for u, o in ph.masks.items() if u != t], axis=0)
                if (box & ~m & others).sum() > 0.03 * box.sum():
                    ambiguous += 1
                    break
    assert total >= 40 and ambiguous / total > 0.7, (ambiguous, total)


@pytest.mark.parametrize("modality", PHANTOM_MODALITIES)
def test_deterministic(modality):
    a = generate(modality, 7, 96)
    generate("ct", 3, 64)  # other work in between changes nothing
    b = generate(modality, 7, 96)
    assert a.image.tobytes() == b.image.tobytes()
    assert list(a.masks) == list(b.masks)
    assert all(a.masks[t].tobytes() == b.masks[t].tobytes() for t in a.masks)
    assert a.meta == b.meta and a.site == b.site
    c = generate(modality, 8, 96)
    assert a.image.tobytes() != c.image.tobytes()


@pytest.mark.parametrize("hw", [(192, 320), (320, 192)])
def test_non_square(hw):
    for modality in PHANTOM_MODALITIES:
        ph = generate(modality, 4, hw)
        assert ph.image.shape == (*hw, 3) and ph.fov.shape == hw
        assert ph.masks
        for t, m in ph.masks.items():
            assert m.shape == hw and m.any() and not (m & ~ph.fov).any(), (modality, t)


def test_aliases_and_errors():
    assert generate("x-ray", 1, 64).modality == "X-Ray"
    assert generate("endoscopy", 1, 64).modality == "endoscope"
    with pytest.raises(ValueError, match="no phantom generator for 'OCT'"):
        generate("OCT", 0)
    with pytest.raises(ValueError, match="unknown modality 'pet'"):
        generate("pet", 0)
    for seed in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed: expected an int >= 0"):
            generate("ct", seed, 64)
    for size, match in (
        (32, "each side must be in"),
        ((100, 400), "aspect ratio"),
        ("big", "expected N or HxW"),
        ((1, 2, 3), "expected an int"),
    ):
        with pytest.raises(ValueError, match=f"size: {match}"):
            generate("ct", 0, size)
    assert generate("ct", 0, "64x96").image.shape == (64, 96, 3)


def test_samples_view(phantoms):
    ph = phantoms["fundus"][0]
    samples = ph.to_samples("phantom-fundus", "train", "00000000")
    assert [s.target for s in samples] == ["optic disc", "optic cup"]
    img, mask = samples[1].load()
    assert img is ph.image and mask is ph.masks["optic cup"]
    assert samples[1].sample_id == "phantom-fundus/train/00000000_optic+cup"
    assert samples[1].description == "optic cup in retinal fundus"
    with pytest.raises(KeyError, match="not in this phantom"):
        ph.description("macula")
