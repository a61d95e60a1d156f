"""The realpack-tiny preset: the multi-dataset split (disjoint images, every target of an image in
one role, test from the val split only, the demo set refused), its dry run through the
pipeline's code path (per-split evaluation rows), and the per-turn Dice-change statistic."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from medsam_agent_rt.training.evaluate import summarize  # noqa: E402
from medsam_agent_rt.training.phantom_data import PhantomSpec  # noqa: E402
from medsam_agent_rt.training.pipeline import (  # noqa: E402
    dry_run_data,
    mixed_samples,
    run_pipeline,
    split_name,
)
from medsam_agent_rt.training.presets import get_preset  # noqa: E402
from training_fakes import FakeFactory  # noqa: E402

from medsam_agent_rt.data import load_samples  # noqa: E402
from medsam_agent_rt.data.writer import write_phantom_dataset  # noqa: E402


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory):
    """Two BiomedParse-style roots: one with two datasets (CT, X-ray phantoms: several targets
    per image), one with a third (endoscope)."""
    base = tmp_path_factory.mktemp("roots")
    a, b = base / "a", base / "b"
    for root, mods in ((a, ["ct", "x-ray"]), (b, ["endoscope"])):
        write_phantom_dataset(
            root, n=10, size=64, modalities=mods, splits="train=0.7,val=0.3", show_progress=False
        )
    return a, b


def _preset(**counts):
    return replace(
        get_preset("realpack-tiny"),
        phantoms=PhantomSpec(modalities=("fundus",), size=64, max_targets_per_image=1),
        opening_images=2,
        episode_images=1,
        grpo_images=1,
        test_images=1,
        real_per_dataset=counts,
    )


def test_mixed_split_is_disjoint_and_complete(two_roots):
    a, b = two_roots
    preset = _preset(opening=3, episode=2, grpo=1, test=2)
    parts = mixed_samples(preset, f"{a},{b}")
    everything = load_samples(a) + load_samples(b)
    datasets = sorted({s.dataset for s in everything})
    assert len(datasets) == 3
    roles = ("opening", "episode", "grpo", "test")
    images = {r: {s.image_id for s in parts[r]} for r in roles}
    for i, r in enumerate(roles):
        for q in roles[i + 1 :]:
            assert not images[r] & images[q], (r, q)
    for r, n in (("opening", 3), ("episode", 2), ("grpo", 1), ("test", 2)):
        for d in datasets:
            got = {s.image_id for s in parts[r] if s.dataset == d}
            assert len(got) == n, (r, d)
            # every target of a chosen image is in the role (an image is never split)
            ref = {s.sample_id for s in everything if s.image_id in got}
            assert ref == {s.sample_id for s in parts[r] if s.image_id in got}
        real = [s for s in parts[r] if not s.dataset.startswith("phantom-fundus")]
        want = "val" if r == "test" else "train"
        assert {s.split for s in real} == {want}
    # phantoms of the preset's spec join every role, test seeds from the test range
    assert any(s.dataset == "phantom-fundus" for s in parts["opening"])
    assert all(s.meta["seed"] >= 2_000_000 for s in parts["test"] if s.dataset == "phantom-fundus")
    # sources interleaved: the first samples of a role come from different datasets
    assert len({s.dataset for s in parts["opening"][:4]}) >= 3
    # deterministic
    again = mixed_samples(preset, [str(a), str(b)])
    assert [s.sample_id for s in again["episode"]] == [s.sample_id for s in parts["episode"]]


def test_mixed_split_refuses_the_demo_set_and_overdraws(two_roots, tmp_path):
    a, _ = two_roots
    demo = tmp_path / "biomedparse-demo"
    (demo / "demo").mkdir(parents=True)
    (demo / "demo_mask").mkdir()
    with pytest.raises(ValueError, match="demo set"):
        mixed_samples(_preset(opening=1), f"{a},{demo}")
    with pytest.raises(ValueError, match="train images asked for"):
        mixed_samples(_preset(opening=50), str(a))
    with pytest.raises(ValueError, match="--data-root"):
        mixed_samples(_preset(opening=1), None)
    with pytest.raises(ValueError, match="real_per_dataset keys"):
        _preset(openings=1)


def test_dry_run_evaluates_per_split(tmp_path):
    preset = get_preset("realpack-tiny").dry_run()
    assert preset.data == "mixed" and preset.segmenter == "litemedsam-click"
    root = dry_run_data(preset, tmp_path)
    summary = run_pipeline(preset, tmp_path, data_root=root, segmenter=FakeFactory())
    per_split = summary["held_out_per_split"]
    assert set(per_split) == {"phantoms"}  # the dry-run data are phantoms in the BiomedParse layout
    rows = [
        json.loads(line) for line in (tmp_path / "eval" / "rows.jsonl").read_text().splitlines()
    ]
    assert {r["policy"] for r in rows} == {"sft", "grpo", *preset.baselines}
    assert all(len(r["per_turn_dice"]) == r["actions"] for r in rows)
    assert sum(v["n"] for v in per_split["phantoms"].values()) == len(rows)
    # the data stage ran the real dataset and the phantoms of the preset
    convs = (tmp_path / "data" / "openings.jsonl").read_text().splitlines()
    assert len(convs) >= 2


def test_split_name_and_dice_change():
    class S:
        def __init__(self, dataset, split):
            self.dataset, self.split = dataset, split

    assert split_name(S("phantom-ct", "test")) == "phantoms"
    assert split_name(S("acdc", "val")) == "acdc val"
    rows = [
        {"dice": 0.9, "iou": 0.8, "actions": 3, "reward": 1, "format": 1, "quality": 1,
         "end_reason": "stop", "per_turn_dice": [0.5, 0.7, 0.9]},
        {"dice": 0.4, "iou": 0.3, "actions": 2, "reward": 1, "format": 1, "quality": 1,
         "end_reason": "stop", "per_turn_dice": [0.6, 0.4]},
        {"dice": 0.8, "iou": 0.7, "actions": 1, "reward": 1, "format": 1, "quality": 1,
         "end_reason": "invalid_output", "per_turn_dice": [0.8]},
    ]  # fmt: skip
    out = summarize(rows)
    # turns after the first: +0.2, +0.2, -0.2 -> mean +0.0667
    assert out["later_turns"] == 3
    assert out["dice_change_after_first"] == pytest.approx((0.2 + 0.2 - 0.2) / 3)
    assert out["refine_rate"] == pytest.approx(2 / 3)
    assert out["invalid_rate"] == pytest.approx(1 / 3)
    assert summarize(rows[2:])["dice_change_after_first"] is None
