"""The BiomedParse-style reader on hand-built datasets: discovery (sub-datasets one level
down), fields recovered from file names, tolerance of missing optional fields, and errors
that name the file and the entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.data import (
    DatasetFormatError,
    find_datasets,
    iter_biomedparse,
    load_samples,
    read_split,
)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_split(ds_dir, split, items, *, images_key=True, extra=None, seed=0):
    """items: (image name, target or None, annotation overrides). Writes images, 0/255 masks
    and the JSON; returns {mask name: (image array, mask array)}."""
    rng = np.random.default_rng(seed)
    pixels, images, anns = {}, {}, []
    for image_name, target, over in items:
        if image_name not in images:
            img = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
            _png(ds_dir / split / image_name, img)
            images[image_name] = (len(images), img)
        mask_name = image_name[:-4] + ("_" + target.replace(" ", "+") if target else "") + ".png"
        mask = np.zeros((16, 20), np.uint8)
        mask[rng.integers(0, 8) :, rng.integers(0, 10) :] = 255
        _png(ds_dir / f"{split}_mask" / mask_name, mask)
        pixels[mask_name] = (images[image_name][1], mask > 0)
        ann = {"file_name": image_name, "mask_file": mask_name, "image_id": images[image_name][0]}
        ann.update(over)
        anns.append({k: v for k, v in ann.items() if v is not None})
    data = {"annotations": anns}
    if images_key:
        data["images"] = [{"id": i, "file_name": n} for n, (i, _) in images.items()]
    data.update(extra or {})
    (ds_dir / f"{split}.json").write_text(json.dumps(data))
    return pixels


def _sent(text):
    return {"sentences": [{"raw": text, "sent": text, "sent_id": 0}]}


@pytest.fixture()
def root(tmp_path):
    r = tmp_path / "BiomedSeg"
    px = {}
    px["A"] = make_split(
        r / "AbdomenCT",
        "train",
        [
            ("case1_CT_abdomen.png", "left kidney", _sent("left kidney in abdomen CT")),
            ("case1_CT_abdomen.png", "liver", _sent("liver in abdomen CT")),
            ("case2_CT_abdomen.png", "liver", {}),  # no sentence: built from the names
        ],
    )
    px["A"].update(
        make_split(
            r / "AbdomenCT",
            "test",
            [
                ("case9_CT_abdomen.png", "spleen", _sent("spleen in abdomen CT")),
            ],
            seed=1,
        )
    )
    px["H"] = make_split(
        r / "MSD" / "Task02_Heart",
        "train",
        [
            (
                "la_003_12_MRI-T2_heart.png",
                "left heart atrium",
                _sent("left heart atrium in heart MRI-T2"),
            ),
        ],
        seed=2,
    )
    return r, px


def test_discovery(root):
    r, _ = root
    found = find_datasets(r)
    assert [(d.name, d.splits) for d in found] == [
        ("AbdomenCT", ("train", "test")),
        ("MSD/Task02_Heart", ("train",)),
    ]
    with pytest.raises(FileNotFoundError, match="dataset root not found"):
        find_datasets(r / "nope")


def test_samples_fields_and_pixels(root):
    r, px = root
    samples = load_samples(r)
    assert len(samples) == 5
    s = samples[0]
    assert s.sample_id == "AbdomenCT/train/case1_CT_abdomen_left+kidney"
    assert s.image_id == "AbdomenCT/train/case1_CT_abdomen"
    assert (s.dataset, s.split, s.target, s.modality, s.site) == (
        "AbdomenCT",
        "train",
        "left kidney",
        "CT",
        "abdomen",
    )
    assert s.description == "left kidney in abdomen CT"
    assert samples[2].description == "liver in abdomen CT"  # built from the file names
    heart = [x for x in samples if x.dataset == "MSD/Task02_Heart"][0]
    assert (heart.modality, heart.meta["sequence"], heart.target) == (
        "MRI",
        "T2",
        "left heart atrium",
    )
    for x in samples:
        image, mask = x.load()
        want_img, want_mask = (px["H"] if x.dataset.startswith("MSD") else px["A"])[
            x.mask_path.name
        ]
        np.testing.assert_array_equal(image, want_img)
        np.testing.assert_array_equal(mask, want_mask)
    assert [x.split for x in load_samples(r, splits=["test"])] == ["test"]
    assert len(load_samples(r, datasets=["MSD/Task02_Heart"])) == 1
    with pytest.raises(ValueError, match=r"\['Nope'\] not found .* available: \['AbdomenCT'"):
        list(iter_biomedparse(r, datasets=["Nope"]))


def test_tolerates_missing_optional_fields(tmp_path):
    ds = tmp_path / "X"
    make_split(
        ds,
        "test",
        [
            # file_name only through images[] / image_id; explicit target, modality, site fields
            (
                "img7.png",
                "tumor",
                {"file_name": None, "target": "breast tumor", "modality": "US", "site": "breast"},
            ),
        ],
    )
    # a versioned split (BiomedParse's test_illegal.json) reads images from the entry's split
    data = json.loads((ds / "test.json").read_text())
    (ds / "test_illegal.json").write_text(
        json.dumps(
            {"annotations": [{**data["annotations"][0], "file_name": "img7.png", "split": "test"}]}
        )
    )
    (s,) = read_split(ds, "test")
    assert (s.target, s.modality, s.site, s.description) == (
        "breast tumor",
        "ultrasound",
        "breast",
        "breast tumor in breast US",
    )
    (v,) = read_split(ds, "test_illegal")
    assert v.split == "test" and v.image_path == s.image_path


def test_unknown_modality_is_kept(tmp_path):
    make_split(tmp_path / "P", "train", [("a_PET_brain.png", "lesion", {})])
    (s,) = read_split(tmp_path / "P", "train")
    assert (s.modality, s.site, s.description) == ("PET", "brain", "lesion in brain PET")


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"annotations": [', r"train.json: not valid JSON \(.* at line 1, column 18\)"),
        ("[1, 2]", r"train.json: expected an object with an 'annotations' list, got list"),
        ('{"images": []}', r"expected an object with an 'annotations' list, got keys \['images'\]"),
        ('{"annotations": [7]}', r"train.json: annotations\[0\]: expected an object, got 7"),
        (
            '{"annotations": [{"mask_file": "m.png", "image_id": 3}]}',
            r"annotations\[0\]: no 'file_name' and no images\[\] entry with image_id 3",
        ),
        (
            '{"annotations": [], "images": [{"id": 1}]}',
            r"images\[0\]: expected an object with 'file_name'",
        ),
    ],
)
def test_malformed_json(tmp_path, content, match):
    (tmp_path / "D").mkdir()
    (tmp_path / "D" / "train.json").write_text(content)
    with pytest.raises(DatasetFormatError, match=match):
        read_split(tmp_path / "D", "train")


def test_missing_files_name_file_and_entry(tmp_path):
    ds = tmp_path / "D"
    make_split(ds, "train", [("a_CT_x.png", "t1", {}), ("b_CT_x.png", "t2", {})])
    (ds / "train" / "b_CT_x.png").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"annotations\[1\] \(mask_file 'b_CT_x_t2.png'\): image file not found: .*b_CT_x.png",
    ):
        read_split(ds, "train")
    (ds / "train_mask" / "a_CT_x_t1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotations\[0\] .*: mask file not found"):
        read_split(ds, "train")
    lazy = read_split(ds, "train", check_files=False)
    assert len(lazy) == 2
    with pytest.raises(FileNotFoundError, match="mask file not found"):
        lazy[0].load_mask()
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        read_split(ds, "val")


def test_load_samples_on_a_folder_without_datasets(tmp_path):
    with pytest.raises(ValueError, match="no '<dataset>/<split>.json'"):
        load_samples(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset path not found"):
        load_samples(tmp_path / "missing")
