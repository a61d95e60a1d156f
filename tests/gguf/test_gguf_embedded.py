"""The embedded policy's shipped F16 GGUF: it is the export of the shipped HF checkpoint (hashes
in its manifest), it is what `default` picks when llama-cpp-python is installed, and greedy
episodes on held-out phantoms give the same texts, actions and masks as the hf policy (grammar
off: unconstrained greedy decoding on both sides; with the grammar on, a turn the hf policy
writes malformed comes out well-formed instead). The embedded policy is realpack-tiny
(registry.EMBEDDED_POLICY / EMBEDDED_GGUF)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.needs_llama


def _dirs():
    from medsam_agent_rt.assets import ASSETS_DIR
    from medsam_agent_rt.policies.registry import EMBEDDED_GGUF, EMBEDDED_POLICY

    return ASSETS_DIR / "policies" / EMBEDDED_POLICY, ASSETS_DIR / "policies" / EMBEDDED_GGUF


def test_shipped_gguf_is_the_export_of_the_shipped_checkpoint():
    from medsam_agent_rt.export.gguf_manifest import load_manifest, sha256_file

    from medsam_agent_rt.policies import default_policy_spec

    hf_dir, gguf_dir = _dirs()
    m = load_manifest(gguf_dir)  # hashes of the GGUF files verified
    assert m["family"] == "qwen3_vl" and m["quant"] == "f16"
    assert m["source"]["weights_sha256"]["model.safetensors"] == sha256_file(
        hf_dir / "model.safetensors"
    )
    assert m["source"]["config_sha256"] == sha256_file(hf_dir / "config.json")
    assert sum(p.stat().st_size for p in gguf_dir.iterdir()) < 6e6  # "a few MB" in the wheel
    assert m["parity"]["measured"] and m["parity"]["next_token_logits"]["argmax_equal"]
    assert default_policy_spec() == f"gguf:{gguf_dir}"  # llama-cpp-python is installed here
    assert default_policy_spec(prefer="hf") == str(hf_dir)
    json.dumps(m)


@pytest.mark.slow
def test_greedy_episodes_match_the_hf_policy():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from medsam_agent_rt.training.phantom_data import phantom_samples
    from medsam_agent_rt.training.presets import get_preset

    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.policies.gguf import GGUFPolicy
    from medsam_agent_rt.policies.hf import HFPolicy
    from medsam_agent_rt.segmenters import build_segmenter

    hf_dir, gguf_dir = _dirs()
    seg = build_segmenter("litemedsam")
    samples = phantom_samples(get_preset("realpack-tiny").phantoms, "test", 3, offset=20)
    hf = HFPolicy(hf_dir)
    with GGUFPolicy(gguf_dir, n_threads=2, grammar=False) as gg:
        for s in samples:
            image, gt = s.load()
            mask_h, rec_h = Episode(seg, hf).run(image, s.description, gt)
            mask_g, rec_g = Episode(seg, gg).run(image, s.description, gt)
            assert [t.text for t in rec_g.turns] == [t.text for t in rec_h.turns], s.image_id
            assert [t.action for t in rec_g.turns] == [t.action for t in rec_h.turns]
            np.testing.assert_array_equal(mask_g, mask_h)
            assert rec_g.end_reason == rec_h.end_reason
