"""The pipeline: a dry run of every preset on a tiny model through the same code path (the
geometric stand-in tool replaces the segmenter to keep it quick), disjoint data splits, and
stage-level resume."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from medsam_agent_rt.training.phantom_data import PhantomSpec, split_seeds  # noqa: E402
from medsam_agent_rt.training.pipeline import (  # noqa: E402
    STAGES,
    dry_run_data,
    run_pipeline,
    split_samples,
)
from medsam_agent_rt.training.presets import PRESETS, Preset, get_preset  # noqa: E402
from training_fakes import FakeFactory  # noqa: E402


@pytest.mark.parametrize("name", list(PRESETS))
def test_dry_run_of_every_preset(name, tmp_path):
    preset = get_preset(name).dry_run()
    data_root = dry_run_data(preset, tmp_path)
    assert (data_root is None) == (preset.data == "phantoms")
    summary = run_pipeline(preset, tmp_path, data_root=data_root, segmenter=FakeFactory())
    state = json.loads((tmp_path / "pipeline.json").read_text())
    assert all(state["stages"][s]["done"] for s in STAGES)
    assert set(summary["held_out"]) == {"sft", "grpo", *preset.baselines}
    assert summary["held_out"]["sft"]["n"] >= 1
    assert (tmp_path / "grpo_reward_curve.png").stat().st_size > 1000
    pkg = tmp_path / "package"
    assert (pkg / "model.safetensors").is_file() and (pkg / "tokenizer.json").is_file()
    cfg = json.loads((pkg / "config.json").read_text())
    assert cfg["model_type"] == preset.family
    assert summary["package_bytes"] > 0
    sft_cfg = json.loads((tmp_path / "sft" / "checkpoint" / "state.json").read_text())["config"]
    assert sft_cfg["lora_rank"] == preset.sft.get("lora_rank", 0)  # the preset's setup, shrunk
    assert sft_cfg["precision"] == preset.sft.get("precision", "fp32")


def test_a_finished_stage_is_not_run_again(tmp_path):
    preset = get_preset("phantom-tiny").dry_run()
    run_pipeline(preset, tmp_path, segmenter=FakeFactory(), stop_after="sft")
    log = (tmp_path / "sft" / "log.jsonl").read_text()
    state = json.loads((tmp_path / "pipeline.json").read_text())
    assert state["stages"]["sft"]["done"] and "grpo" not in state["stages"]
    summary = run_pipeline(preset, tmp_path, segmenter=FakeFactory())
    assert (tmp_path / "sft" / "log.jsonl").read_text() == log  # SFT was not repeated
    assert summary["stages"]["grpo"]["done"]
    with pytest.raises(ValueError, match="holds a run of preset"):
        run_pipeline(get_preset("qwen3vl-8b-lora").dry_run(), tmp_path, segmenter=FakeFactory())


def _log_steps(path):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["step"] for r in rows if "eval" not in r]


def test_a_finished_run_is_extended_not_restarted(tmp_path):
    preset = get_preset("phantom-tiny").dry_run()  # SFT 2 steps, GRPO 1 step
    run_pipeline(preset, tmp_path, segmenter=FakeFactory())
    sft_log = (tmp_path / "sft" / "log.jsonl").read_text()
    old_rows = (tmp_path / "eval" / "rows.jsonl").read_text()
    assert _log_steps(tmp_path / "grpo" / "log.jsonl") == [1]

    # more GRPO only: SFT untouched, GRPO continues from its checkpoint at step 1
    run_pipeline(preset, tmp_path, segmenter=FakeFactory(), grpo_steps=2)
    assert (tmp_path / "sft" / "log.jsonl").read_text() == sft_log
    assert _log_steps(tmp_path / "grpo" / "log.jsonl") == [1, 2]
    state = json.loads((tmp_path / "pipeline.json").read_text())
    assert state["stages"]["grpo"]["steps"] == 2 and all(
        state["stages"][s]["done"] for s in STAGES
    )
    assert (tmp_path / "superseded" / "eval-after-grpo-1" / "rows.jsonl").read_text() == old_rows

    # more SFT: continues at step 3 (steps 1-2 logged as before), GRPO restarts from the new
    # SFT policy and the previous GRPO run is kept, not deleted
    run_pipeline(preset, tmp_path, segmenter=FakeFactory(), sft_steps=4, grpo_steps=2)
    new_log = (tmp_path / "sft" / "log.jsonl").read_text()
    assert new_log.startswith(sft_log) and _log_steps(tmp_path / "sft" / "log.jsonl") == [1, 2, 3, 4]
    kept = tmp_path / "superseded" / "grpo-after-sft-2"
    assert _log_steps(kept / "log.jsonl") == [1, 2]
    assert _log_steps(tmp_path / "grpo" / "log.jsonl") == [1, 2]
    state = json.loads((tmp_path / "pipeline.json").read_text())
    assert state["stages"]["sft"]["steps"] == 4 and all(state["stages"][s]["done"] for s in STAGES)

    # asking for the same counts again runs nothing; fewer steps than trained is refused
    run_pipeline(preset, tmp_path, segmenter=FakeFactory(), sft_steps=4, grpo_steps=2)
    assert (tmp_path / "sft" / "log.jsonl").read_text() == new_log
    with pytest.raises(ValueError, match="already trained 4 steps; cannot shorten"):
        run_pipeline(preset, tmp_path, segmenter=FakeFactory(), sft_steps=3)
    with pytest.raises(ValueError, match="--grpo-steps must be >= 1"):
        run_pipeline(preset, tmp_path, segmenter=FakeFactory(), grpo_steps=0)


def test_phantom_splits_are_disjoint():
    preset = Preset(
        name="t",
        tiny_size=get_preset("phantom-tiny").tiny_size,
        phantoms=PhantomSpec(modalities=("endoscope", "fundus"), size=64),
        opening_images=4,
        episode_images=3,
        grpo_images=2,
        val_images=2,
        test_images=2,
    )
    parts = split_samples(preset, None, None)
    images = {k: {s.image_id for s in v} for k, v in parts.items()}
    names = list(images)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not images[a] & images[b], (a, b)
    seeds = {k: {s.meta["seed"] for s in v} for k, v in parts.items()}
    assert seeds["test"] <= set(split_seeds("test", 2)) and seeds["val"] <= set(
        split_seeds("val", 2)
    )
    assert max(seeds["grpo"]) < 1_000_000 <= min(seeds["val"]) < 2_000_000 <= min(seeds["test"])


def test_preset_errors():
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ValueError, match="base_model or tiny_size"):
        Preset(name="x")
    with pytest.raises(FileNotFoundError, match="--base-model"):
        run_pipeline(
            get_preset("qwen25vl-3b-lora"), "/tmp/never-written-msrt", segmenter=FakeFactory()
        )


def test_embedded_default_policy_runs_an_episode_on_a_held_out_phantom():
    """default_policy_spec() names the shipped realpack-tiny policy; it loads with the runtime's
    HFPolicy and drives the embedded LiteMedSAM through a real episode on a test-split phantom."""
    from pathlib import Path

    from medsam_agent_rt.training.phantom_data import phantom_samples

    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.policies import build_policy, default_policy_spec
    from medsam_agent_rt.segmenters import build_segmenter

    spec = default_policy_spec(prefer="hf")
    assert spec is not None, "the package ships no embedded policy"
    path = Path(spec)
    assert (path / "README.md").is_file() and (path / "NOTICE").is_file()
    assert sum(p.stat().st_size for p in path.iterdir()) < 8e6  # "a few MB"
    sample = phantom_samples(get_preset("realpack-tiny").phantoms, "test", 1)[0]
    image, gt = sample.load()
    _, rec = Episode(build_segmenter("litemedsam"), build_policy(spec)).run(
        image, sample.description, gt
    )
    assert rec.turns and rec.turns[0].parse_error is None  # a well-formed first tool call
    assert rec.end_reason in ("stop", "budget")
