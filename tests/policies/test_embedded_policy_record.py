"""The shipped default policy (realpack-tiny): it is what ``default`` names, it ships its card and
its non-commercial notice, phantom-tiny stays available by path, and its weights load and
reproduce a recorded greedy episode exactly (texts, actions, mask digests).

The recorded episode uses the embedded LiteMedSAM (fixed weights) as the tool, so new
litemedsam-click weights do not change it. Re-record after shipping new policy weights (and say
why in the commit):
    .venv/bin/python tests/policies/test_embedded_policy_record.py --record
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

RECORD = Path(__file__).with_name("data") / "embedded_policy_episode.json"


def run_recorded_episode(policy_dir: Path, seg) -> dict:
    """A held-out CT phantom (test seed 2000000, the preset's 256-px spec), its largest target,
    the policy greedy with the protocol's 128-token budget."""
    from medsam_agent_rt.training.phantom_data import phantom_samples
    from medsam_agent_rt.training.presets import get_preset

    from medsam_agent_rt import ops
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.policies.hf import HFPolicy

    sample = phantom_samples(get_preset("realpack-tiny").phantoms, "test", 1)[0]
    image, gt = sample.load()
    mask, rec = Episode(seg, HFPolicy(policy_dir, max_new_tokens=128)).run(
        image, sample.description, gt, sample.sample_id
    )
    return {
        "sample_id": sample.sample_id,
        "target": sample.description,
        "texts": [t.text for t in rec.turns],
        "actions": [json.loads(json.dumps(t.action, default=_plain)) for t in rec.turns],
        "per_turn_dice": [t.dice for t in rec.executed()],
        "end_reason": rec.end_reason,
        "mask_sha256": hashlib.sha256(np.packbits(mask).tobytes()).hexdigest(),
        "dice": float(ops.dice(mask, gt)),
    }


def _plain(x):
    return x.tolist() if hasattr(x, "tolist") else str(x)


def _dirs():
    from medsam_agent_rt.assets import ASSETS_DIR
    from medsam_agent_rt.policies.registry import EMBEDDED_POLICY

    return ASSETS_DIR / "policies" / EMBEDDED_POLICY, ASSETS_DIR / "policies" / "phantom-tiny"


def test_default_is_realpack_tiny_with_card_and_notice():
    from medsam_agent_rt.policies import default_policy_spec

    hf_dir, old = _dirs()
    assert hf_dir.name == "realpack-tiny"
    assert default_policy_spec(prefer="hf") == str(hf_dir)
    for f in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (hf_dir / f).is_file(), f
    notice = (hf_dir / "NOTICE").read_text()
    assert "non-commercial" in notice.lower() and "Kvasir-SEG" in notice
    card = (hf_dir / "README.md").read_text()
    assert "realpack" in card and "non-commercial" in card.lower()
    assert (old / "config.json").is_file()  # phantom-tiny stays available by path


def test_shipped_policies_by_name():
    from medsam_agent_rt.policies.registry import shipped_policy_spec

    hf_dir, old = _dirs()
    assert shipped_policy_spec("phantom-tiny") == str(old)
    assert shipped_policy_spec("realpack-tiny") == str(hf_dir)
    assert (
        shipped_policy_spec("realpack-tiny-gguf") == f"gguf:{hf_dir.parent / 'realpack-tiny-gguf'}"
    )
    for bad in ("nope", "../policies", "", ".hidden"):
        assert shipped_policy_spec(bad) is None


def test_shipped_weights_reproduce_the_recorded_episode():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from medsam_agent_rt.segmenters import build_segmenter

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = run_recorded_episode(_dirs()[0], build_segmenter("litemedsam"))
    finally:
        torch.set_num_threads(before)
    want = json.loads(RECORD.read_text())
    assert got["texts"] == want["texts"]
    assert got["actions"] == want["actions"]
    assert got["end_reason"] == want["end_reason"]
    assert got["mask_sha256"] == want["mask_sha256"]
    assert got["dice"] == pytest.approx(want["dice"], abs=1e-6)


if __name__ == "__main__":
    if "--record" in sys.argv:
        import torch

        from medsam_agent_rt.segmenters import build_segmenter

        torch.set_num_threads(1)
        RECORD.parent.mkdir(exist_ok=True)
        rec = run_recorded_episode(_dirs()[0], build_segmenter("litemedsam"))
        RECORD.write_text(json.dumps(rec, indent=1) + "\n")
        print(json.dumps(rec, indent=1))
