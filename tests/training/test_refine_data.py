"""Expert episodes for the refinement SFT (training.refine_data): the sample draw (per dataset,
train split only, seeded, interleaved, demo refused), the split into correction and single-box
episodes against the episodes' own tool calls, and resuming a finished run."""

from __future__ import annotations

import json

import pytest
from medsam_agent_rt.training import refine_data

from medsam_agent_rt.data import load_samples
from medsam_agent_rt.data.writer import write_phantom_dataset


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("refine_root")
    write_phantom_dataset(
        r,
        n=6,
        size=64,
        modalities=["ct", "endoscope"],
        splits="train=0.7,val=0.3",
        show_progress=False,
    )
    return r


def test_samples_are_seeded_train_only_and_interleaved(root):
    got = refine_data.refine_samples(str(root), 3, "s1")
    assert len(got) == 6 and all(s.split == "train" for s in got)
    datasets = [s.dataset for s in got]
    assert datasets[0::2] == [datasets[0]] * 3 and datasets[1::2] == [datasets[1]] * 3
    assert datasets[0] != datasets[1]  # round-robin over the two datasets
    again = refine_data.refine_samples(str(root), 3, "s1")
    assert [s.sample_id for s in again] == [s.sample_id for s in got]
    train = [s for s in load_samples(root, splits=["train"])]
    everything = refine_data.refine_samples(str(root), 10_000, "s1")  # capped at what exists
    assert sorted(s.sample_id for s in everything) == sorted(s.sample_id for s in train)
    other = refine_data.refine_samples(str(root), 10_000, "s2")
    assert [s.sample_id for s in other] != [s.sample_id for s in everything]


def test_bad_roots_and_counts_are_refused(root, tmp_path):
    with pytest.raises(ValueError, match="data-root"):
        refine_data.refine_samples("", 3)
    with pytest.raises(ValueError, match="per-dataset"):
        refine_data.refine_samples(str(root), 0)
    demo = tmp_path / "fake"
    (demo / "demo").mkdir(parents=True)
    with pytest.raises(ValueError, match="demo set"):
        refine_data.refine_samples(str(demo), 3)


def _tool_calls(conv: dict) -> int:
    return sum(
        m["role"] == "assistant"
        and "<tool_call>" in json.dumps(m["content"])
        and "stop_action" not in json.dumps(m["content"])
        for m in conv["messages"]
    )


def test_split_follows_the_episodes_actions(tmp_path):
    convs = [
        {"id": "a", "dataset": "x", "meta": {"actions": 1}, "messages": []},
        {"id": "b", "dataset": "x", "meta": {"actions": 3}, "messages": []},
        {"id": "c", "dataset": "y", "meta": {"actions": 2}, "messages": []},
    ]
    ep = tmp_path / "episodes.jsonl"
    ep.write_text("".join(json.dumps(c) + "\n" for c in convs))
    counts = refine_data.split_by_corrections(ep, tmp_path)
    assert counts["corrections"] == 2 and counts["single"] == 1
    assert counts["actions_per_dataset"] == {"x": {1: 1, 3: 1}, "y": {2: 1}}
    ids = [json.loads(x)["id"] for x in (tmp_path / "corrections.jsonl").read_text().splitlines()]
    assert ids == ["b", "c"]
    ep.write_text(json.dumps({"id": "d", "messages": []}) + "\n")
    with pytest.raises(ValueError, match="no action count"):
        refine_data.split_by_corrections(ep, tmp_path)


@pytest.mark.slow
def test_command_writes_split_episodes_and_resumes(root, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "refine"
    argv = [
        "--data-root",
        str(root),
        "--per-dataset",
        "3",
        "--min-final-iou",
        "0.0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert refine_data.main(argv) == 0
    counts = json.loads((out / "counts.json").read_text())
    assert counts["samples"] == 6 and counts["written"] + counts["rejected"] == 6
    episodes = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    corr = [json.loads(x) for x in (out / "corrections.jsonl").read_text().splitlines()]
    single = [json.loads(x) for x in (out / "single.jsonl").read_text().splitlines()]
    assert len(corr) + len(single) == len(episodes) == counts["written"]
    assert corr and single  # both kinds occur here (litemedsam-click corrects some boxes)
    for conv in corr + single:  # the recorded action count is the conversation's own calls
        assert _tool_calls(conv) == conv["meta"]["actions"]
        assert (conv in corr) == (conv["meta"]["actions"] > 1)
    assert refine_data.main(argv) == 0  # finished: every sample resumed, same files
    again = json.loads((out / "counts.json").read_text())
    assert again["resumed"] == 6 and again["written"] == 0
    assert (out / "episodes.jsonl").read_text().count("\n") == len(episodes)
