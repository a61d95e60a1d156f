"""The phantom writer and the BiomedParse reader round-trip: same pixels, masks and texts;
splits by seed range; idempotent re-runs; resuming after an interruption gives the same
files as an uninterrupted run; a root written with other parameters is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsam_agent_rt.data import load_samples
from medsam_agent_rt.data.phantoms import PHANTOM_MODALITIES, generate
from medsam_agent_rt.data.writer import (
    dataset_name,
    parse_splits,
    split_ranges,
    write_phantom_dataset,
)

SIZE = (64, 80)
SPLITS = "train=2,val=1,test=1"


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_round_trip(tmp_path):
    report = write_phantom_dataset(
        tmp_path, n=4, seed=11, size=SIZE, splits=SPLITS, show_progress=False
    )
    assert report.total_written == 4 * len(PHANTOM_MODALITIES)
    samples = load_samples(tmp_path)
    expected = 0
    for mod in PHANTOM_MODALITIES:
        ds = dataset_name(mod)
        for i, split in enumerate(["train", "train", "val", "test"]):
            seed = 11 + i
            ph = generate(mod, seed, SIZE)
            mine = [s for s in samples if s.dataset == ds and s.meta.get("seed") == seed]
            assert sorted(s.target for s in mine) == sorted(ph.masks), (mod, seed)
            expected += len(ph.masks)
            for s in mine:
                assert s.split == split and s.modality == mod and s.site == ph.site
                assert s.description == ph.description(s.target)
                image, mask = s.load()
                np.testing.assert_array_equal(image, ph.image)
                np.testing.assert_array_equal(mask, ph.masks[s.target])
                if mod == "MRI" and ph.site == "brain":
                    assert s.meta["sequence"] == ph.meta["sequence"]
    assert len(samples) == expected
    manifest = json.loads((tmp_path / "phantoms.json").read_text())
    assert manifest["seed"] == 11 and manifest["size"] == list(SIZE)


def test_rerun_is_a_no_op(tmp_path):
    write_phantom_dataset(
        tmp_path, n=3, seed=0, size=64, modalities=["ct", "fundus"], show_progress=False
    )
    before = _files(tmp_path)
    report = write_phantom_dataset(
        tmp_path, n=3, seed=0, size=64, modalities=["fundus", "CT"], show_progress=False
    )
    assert report.total_written == 0 and sum(report.skipped.values()) == 6
    assert _files(tmp_path) == before


def test_resume_after_interruption_matches_a_clean_run(tmp_path):
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    kw = dict(
        n=5,
        seed=3,
        size=64,
        modalities=["endoscopy", "x-ray"],
        splits="train=3,test=2",
        show_progress=False,
    )
    write_phantom_dataset(clean, **kw)
    seen = []

    def crash(ds, split, seed):
        seen.append(seed)
        if len(seen) == 7:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        write_phantom_dataset(broken, on_image=crash, **kw)
    assert (broken / "phantom-xray" / ".train.partial.jsonl").is_file()
    assert not (broken / "phantom-xray" / "train.json").exists()
    report = write_phantom_dataset(broken, **kw)
    assert report.total_written == 10 - 7
    assert _files(broken) == _files(clean)


def test_other_parameters_are_refused(tmp_path):
    write_phantom_dataset(tmp_path, n=2, seed=0, size=64, modalities=["ct"], show_progress=False)
    before = _files(tmp_path)
    with pytest.raises(ValueError, match=r"other parameters \(seed was 0, now 1\)"):
        write_phantom_dataset(
            tmp_path, n=2, seed=1, size=64, modalities=["mri"], show_progress=False
        )
    assert _files(tmp_path) == before
    # another modality with the same parameters is added next to the first
    write_phantom_dataset(tmp_path, n=2, seed=0, size=64, modalities=["mri"], show_progress=False)
    assert json.loads((tmp_path / "phantoms.json").read_text())["modalities"] == ["CT", "MRI"]


def test_workers_give_the_same_files(tmp_path):
    kw = dict(n=3, seed=5, size=64, modalities=["ultrasound", "dermoscopy"], show_progress=False)
    write_phantom_dataset(tmp_path / "a", **kw)
    write_phantom_dataset(tmp_path / "b", workers=2, **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_splits():
    assert parse_splits("train=0.8,val=0.1,test=0.1") == (
        ("train", 0.8),
        ("val", 0.1),
        ("test", 0.1),
    )
    assert parse_splits("a=1,b=3") == (("a", 0.25), ("b", 0.75))
    s = (("train", 0.8), ("val", 0.1), ("test", 0.1))
    assert split_ranges(10, s) == {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}
    assert split_ranges(3, s) == {"train": range(0, 2), "val": range(2, 2), "test": range(2, 3)}
    for bad, match in (
        ("train=x", "name=fraction"),
        ("train", "name=fraction"),
        ("a_b=1", "without '/' or '_'"),
        ("a=1,a=2", "distinct"),
        ("a=-1,b=2", ">= 0"),
        ("a=0", "positive sum"),
    ):
        with pytest.raises(ValueError, match=f"splits: .*{match}"):
            parse_splits(bad)


def test_argument_errors(tmp_path):
    for kw, match in (
        (dict(n=0), "n: expected an int >= 1"),
        (dict(n=2, seed=-3), "seed"),
        (dict(n=2, modalities=["pet"]), "unknown modality"),
        (dict(n=2, size=10), "size"),
        (dict(n=2, workers=0), "workers"),
    ):
        with pytest.raises(ValueError, match=match):
            write_phantom_dataset(tmp_path / "x", show_progress=False, **kw)
    assert not (tmp_path / "x").exists()
