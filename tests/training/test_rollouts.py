"""rollouts: episodes through the real Episode, the policy/environment token split, the sampled
ids spliced into the training sequences, and log-probs that match the ones drawn at sampling."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from medsam_agent_rt.training import common  # noqa: E402
from medsam_agent_rt.training.rollouts import (  # noqa: E402
    LivePolicy,
    collect_rollouts,
    rollout_sequences,
)
from training_fakes import (  # noqa: E402
    GOOD_BOX,
    INVALID,
    STOP,
    FakeFactory,
    SquareSample,
    candidate_ids,
    make_candidate_generate,
)

from medsam_agent_rt.protocol import build_messages  # noqa: E402
from medsam_agent_rt.session_config import SessionConfig  # noqa: E402


@pytest.fixture(scope="module")
def parts(tiny_policy_dir):
    model, tok, enc = common.load_model(tiny_policy_dir)
    return model.eval(), tok, enc


def _policy(parts, **kw):
    model, tok, enc = parts
    return LivePolicy(model, tok, enc, **kw)


def test_encoder_splices_exact_ids(parts):
    policy = _policy(parts)
    enc, im_end = policy.encoder, policy.stop_token_ids[0]
    image = np.zeros((32, 32, 3), np.uint8)
    msgs = build_messages("t", [image, image], [GOOD_BOX, STOP])
    canonical = enc.encode(msgs)
    same = enc.encode(msgs, assistant_ids=[candidate_ids(policy, GOOD_BOX), None])
    np.testing.assert_array_equal(same.input_ids, canonical.input_ids)
    np.testing.assert_array_equal(same.assistant_mask, canonical.assistant_mask)
    odd = candidate_ids(policy, GOOD_BOX, bytewise=True)
    assert odd != candidate_ids(policy, GOOD_BOX)
    cut = odd[:-1]  # cut at the token limit: no <|im_end|> sampled
    out = enc.encode(msgs, assistant_ids=[cut, None])
    ids, mask = out.input_ids.tolist(), out.assistant_mask.tolist()
    start = next(i for i in range(len(ids)) if ids[i : i + len(cut)] == cut)
    assert mask[start : start + len(cut)] == [1] * len(cut)
    assert ids[start + len(cut)] == im_end and mask[start + len(cut)] == 0  # closed by the env
    assert sum(mask) == len(cut) + int(canonical.assistant_mask.sum()) - len(
        candidate_ids(policy, GOOD_BOX)
    )
    with pytest.raises(ValueError, match="assistant_ids has 3 entries"):
        enc.encode(msgs, assistant_ids=[None, None, None])


def test_rollout_sequences_hold_sampled_ids_and_logprobs(parts, monkeypatch):
    """Candidates with a non-canonical tokenization and an invalid answer: every policy token of
    every sequence is a sampled id of the right call, every other token is environment, and the
    training forward pass gives the log-probs the tokens had when they were drawn."""
    monkeypatch.setattr(
        LivePolicy,
        "generate",
        make_candidate_generate([(GOOD_BOX, True), (INVALID, False)], [(STOP, True)]),
    )
    policy = _policy(parts, temperature=1.0, splice=True, seed=11)
    rollouts = collect_rollouts(
        policy, FakeFactory(), [SquareSample()], 4, SessionConfig(max_actions=2)
    )
    assert len(rollouts) == 4
    outcomes = {t.outcome for r in rollouts for t in r.record.turns}
    assert {"executed", "invalid"} <= outcomes  # both branches of the split were exercised
    model, _, enc = parts
    checked = 0
    for k, r in enumerate(rollouts):
        seqs = rollout_sequences(r.record, r.image, enc, rollout=k)
        n_off_chain = sum(t.outcome in ("invalid", "refused_stop") for t in r.record.turns[:-1])
        assert len(seqs) == 1 + n_off_chain
        turns = {t.index: t for t in r.record.turns}
        for seq in seqs:
            ids = seq.inputs.input_ids
            assert ((seq.call >= 0) == (seq.policy == 1)).all()
            for c in np.unique(seq.call[seq.call >= 0]):
                sampled = turns[int(c)].info["token_ids"]
                assert ids[seq.call == c].tolist() == sampled
            with torch.no_grad():
                lp = common.token_logprobs(model, seq.inputs, "cpu").numpy()
            on = seq.policy[1:] == 1
            np.testing.assert_allclose(lp[on], seq.sampled_logprobs[1:][on], atol=2e-5)
            checked += 1
    assert checked >= 4
    assert policy.retokenize_mismatches > 0  # the bytewise answers really differ from re-tokenizing


def test_real_sampling_at_temperature_one(parts):
    """HFPolicy's own sampler (temperature 1.0, short budget) on an untrained model: garbage
    answers end the episodes as invalid output; the sequences still hold exactly the sampled
    ids, and recomputed log-probs equal the sampler's."""
    policy = _policy(parts, temperature=1.0, splice=True, seed=5, max_new_tokens=6)
    rollouts = collect_rollouts(policy, FakeFactory(), [SquareSample()], 2, SessionConfig())
    model, _, enc = parts
    for k, r in enumerate(rollouts):
        assert r.record.end_reason == "invalid_output"
        seqs = rollout_sequences(r.record, r.image, enc, rollout=k)
        assert len(seqs) == 2  # the retried invalid call, then the final one
        for seq, turn in zip(seqs, r.record.turns):
            sampled = turn.info["token_ids"]
            assert seq.inputs.input_ids[seq.policy == 1].tolist() == sampled
            with torch.no_grad():
                lp = common.token_logprobs(model, seq.inputs, "cpu").numpy()
            on = seq.policy[1:] == 1
            np.testing.assert_allclose(lp[on], seq.sampled_logprobs[1:][on], atol=1e-4)
