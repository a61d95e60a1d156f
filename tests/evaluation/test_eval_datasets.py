"""Dataset specs of the harness: on-the-fly phantoms equal the written phantom dataset (ids and
pixels), the demo lookup, filters, limit, shard partition and bad specs."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_agent_rt.evaluation.datasets import (
    SampleRef,
    dataset_digest,
    find_demo,
    parse_phantom_spec,
    resolve_dataset,
    shard_of,
)


def test_on_the_fly_phantoms_equal_the_written_dataset(tmp_path):
    from medsam_agent_rt.data import load_samples
    from medsam_agent_rt.data.writer import write_phantom_dataset

    write_phantom_dataset(
        tmp_path, n=2, size=128, modalities=["fundus"], splits="train=1", show_progress=False
    )
    written = load_samples(tmp_path)
    refs = resolve_dataset("phantoms:n=2,size=128,modalities=fundus")
    assert [r.sample_id for r in refs] == [s.sample_id for s in written]
    assert [r.description for r in refs] == [s.description for s in written]
    for r, s in zip(refs, written):
        image, gt = r.load()
        image2, gt2 = s.load()
        np.testing.assert_array_equal(image, image2)
        np.testing.assert_array_equal(gt, gt2)
        assert SampleRef.from_info(r.info()) == r
    file_refs = resolve_dataset(tmp_path)
    assert SampleRef.from_info(file_refs[1].info()) == file_refs[1]
    np.testing.assert_array_equal(file_refs[1].load()[1], refs[1].load()[1])


def test_demo_lookup_filters_and_limit(demo_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("MSRT_SHARED_DATA", str(demo_dir.parent))
    monkeypatch.chdir(tmp_path)
    assert find_demo() == demo_dir
    refs = resolve_dataset("demo")
    assert len(refs) == 71 and [r.index for r in refs] == list(range(71))
    ct = resolve_dataset("demo", modalities=["ct"], limit=3)
    assert [r.modality for r in ct] == ["CT"] * 3 and [r.index for r in ct] == [0, 1, 2]
    monkeypatch.setenv("MSRT_SHARED_DATA", str(tmp_path / "nowhere"))
    from medsam_agent_rt.evaluation import datasets

    monkeypatch.setattr(datasets, "__file__", str(tmp_path / "pkg" / "evaluation" / "x.py"))
    with pytest.raises(FileNotFoundError, match="MSRT_SHARED_DATA"):
        find_demo()


def test_shards_partition_the_samples():
    refs = resolve_dataset("phantoms:n=1,size=128,modalities=ct")
    parts = [shard_of(refs, r, 3) for r in range(3)]
    assert sorted(x.index for p in parts for x in p) == list(range(len(refs)))
    assert all(x.index % 3 == r for r, p in enumerate(parts) for x in p)
    assert dataset_digest(refs) != dataset_digest(refs[:-1])
    with pytest.raises(ValueError, match="rank/world_size"):
        shard_of(refs, 3, 3)


def test_bad_phantom_specs_name_the_problem():
    assert parse_phantom_spec("phantoms:4")["n"] == 4
    assert parse_phantom_spec("phantoms:size=96x128")["size"] == (96, 128)
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        parse_phantom_spec("phantoms:colour=red")
    with pytest.raises(ValueError, match="modalities='ct\\+sonar'"):
        parse_phantom_spec("phantoms:modalities=ct+sonar")
    with pytest.raises(ValueError, match="n must be >= 1"):
        parse_phantom_spec("phantoms:n=0")
    with pytest.raises(ValueError, match="limit must be"):
        resolve_dataset("phantoms:1", limit=0)
