"""GRPO: group-normalised advantages, process credit, the clipped surrogate by hand, and two
real GRPO steps on a tiny model (sampling among a good and a bad box by the model's own
probabilities) that raise the good answer's probability; resume repeats the next step."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from medsam_agent_rt.training import common  # noqa: E402
from medsam_agent_rt.training.grpo import (  # noqa: E402
    GRPOConfig,
    assign_advantages,
    group_advantages,
    sequence_loss,
    train_grpo,
)
from medsam_agent_rt.training.rollouts import LivePolicy, PolicySequence  # noqa: E402
from training_fakes import (  # noqa: E402
    BAD_BOX,
    GOOD_BOX,
    STOP,
    FakeFactory,
    SquareSample,
    candidate_ids,
    make_candidate_generate,
)

from medsam_agent_rt.protocol import build_messages, render_view, view_geometry  # noqa: E402


def test_group_advantages_by_hand():
    r = [0.9, 0.5, 0.1, 0.4, 0.4, 0.4, 1.0, 0.0]
    g = [0, 0, 0, 1, 1, 1, 2, 2]
    a = group_advantages(r, g, eps=1e-4)
    std = math.sqrt(((0.4) ** 2 + 0 + 0.4**2) / 3)  # population std of 0.9, 0.5, 0.1
    np.testing.assert_allclose(a[:3], [0.4 / (std + 1e-4), 0.0, -0.4 / (std + 1e-4)], rtol=1e-12)
    np.testing.assert_array_equal(a[3:6], [0.0, 0.0, 0.0])  # zero-variance group: no signal
    np.testing.assert_allclose(a[6:], [0.5 / 0.5001, -0.5 / 0.5001])  # mean 0.5, std 0.5
    assert group_advantages([0.3, 0.3], [5, 5]).tolist() == [0.0, 0.0]


def _seq(policy, call, adv_rollout=0):
    n = len(policy)
    return PolicySequence(
        inputs=None,
        policy=np.asarray(policy, np.int8),
        call=np.asarray(call, np.int32),
        sampled_logprobs=np.full(n, np.nan, np.float32),
        rollout=adv_rollout,
    )


def test_advantages_land_on_policy_tokens_only_with_process_credit():
    seq = _seq([0, 1, 1, 0, 1, 0], [-1, 0, 0, -1, 2, -1])
    credits = [[0.5, 0.0, -0.25]]
    assign_advantages([seq], np.array([2.0]), credits, weight=0.0)
    np.testing.assert_array_equal(seq.advantages, [0, 2, 2, 0, 2, 0])
    assign_advantages([seq], np.array([2.0]), credits, weight=0.4)
    np.testing.assert_allclose(seq.advantages, [0, 2.2, 2.2, 0, 1.9, 0])


class _Fixed(torch.nn.Module):
    """A 'model' returning fixed logits, so the surrogate can be computed by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, input_ids, **kw):
        return SimpleNamespace(logits=self.logits[None])


class _Inputs:
    def __init__(self, ids):
        self.input_ids = np.asarray(ids)

    def model_kwargs(self, device="cpu", dtype=None):
        return {"input_ids": torch.as_tensor(self.input_ids)[None]}


def test_clipped_surrogate_by_hand():
    """Tokens 1..3 are policy tokens with advantages +1, +1, -1; old log-probs set so the ratios
    are 1.5, 0.9, 0.5: the loss is -(min(1.5, 1.2) * 1 + 0.9 * 1 + max(0.5, 0.8) * -1) and the
    clipped branch is taken on tokens 1 (ratio > 1.2, A > 0) and 3 (ratio < 0.8, A < 0)."""
    logits = torch.zeros(4, 3)
    ids = [0, 1, 2, 1]
    model = _Fixed(logits)
    lp = math.log(1 / 3)
    seq = _seq([0, 1, 1, 1], [-1, 0, 0, 0])
    seq.inputs = _Inputs(ids)
    seq.advantages = np.array([0, 1, 1, -1], np.float32)
    old = torch.tensor([lp - math.log(1.5), lp - math.log(0.9), lp - math.log(0.5)])
    cfg = GRPOConfig(clip_eps=0.2)
    loss, stats = sequence_loss(model, None, seq, old, cfg, "cpu")
    assert float(loss.detach()) == pytest.approx(-(1.2 + 0.9 - 0.8), abs=1e-6)
    assert stats["clipped"] == 2
    loss.backward()  # the clipped tokens carry no gradient; token 2 does
    assert model.logits.grad[1].abs().sum() > 0
    assert model.logits.grad[0].abs().sum() == 0 and model.logits.grad[2].abs().sum() == 0


def _first_turn_gap(model_dir, sample):
    """mean token log-prob of GOOD_BOX minus that of BAD_BOX at the first turn."""
    model, tok, enc = common.load_model(model_dir)
    policy = LivePolicy(model.eval(), tok, enc)
    image, _ = sample.load()
    view = render_view(image, view_geometry(image.shape, 512))
    out = []
    for text in (GOOD_BOX, BAD_BOX):
        msgs = build_messages(sample.description, [view], [])
        ids = candidate_ids(policy, text)
        inputs = enc.encode(msgs, add_generation_prompt=True)
        full = enc.encode(
            msgs + [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
        )
        assert full.input_ids[: inputs.input_ids.size].tolist() == inputs.input_ids.tolist()
        with torch.no_grad():
            lp = common.token_logprobs(model, full, "cpu")[inputs.input_ids.size - 1 :]
        lp = lp[: len(ids)]  # the answer and its <|im_end|> (the final "\n" is not the policy's)
        assert full.input_ids[inputs.input_ids.size :][: len(ids)].tolist() == ids
        out.append(float(lp.mean()))
    return out[0] - out[1]


@pytest.fixture
def candidate_sampler(monkeypatch):
    monkeypatch.setattr(
        LivePolicy,
        "generate",
        make_candidate_generate([(GOOD_BOX, False), (BAD_BOX, False)], [(STOP, False)]),
    )


def _cfg(tiny_policy_dir, out, **kw):
    base = dict(
        model=str(tiny_policy_dir),
        out=str(out),
        steps=2,
        prompts_per_step=1,
        group_size=4,
        lr=3e-3,
        device="cpu",
        save_every=1,
        max_actions=2,
        seed=1,
    )
    return GRPOConfig(**{**base, **kw})


def test_two_grpo_steps_raise_the_good_answer(tiny_policy_dir, tmp_path, candidate_sampler):
    sample = SquareSample()
    before = _first_turn_gap(tiny_policy_dir, sample)
    train_grpo(_cfg(tiny_policy_dir, tmp_path / "run"), [sample], FakeFactory())
    after = _first_turn_gap(tmp_path / "run" / "model", sample)
    assert after > before + 0.05, (before, after)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        for key in ("format", "quality", "turns", "invalid_episode_rate", "clip_frac", "grad_norm"):
            assert key in r
        assert r["format"] == 1.0 and r["turns"] == 1.0  # box then stop, every episode
        assert abs(r["logprob_gap"]) < 1e-4  # sampler's log-probs == training forward
    assert any(r["sequences"] > 0 and r["grad_norm"] > 0 for r in steps)


def test_grpo_resume_repeats_the_next_step(tiny_policy_dir, tmp_path, candidate_sampler):
    sample = SquareSample()
    train_grpo(_cfg(tiny_policy_dir, tmp_path / "a", kl_coef=0.1), [sample], FakeFactory())
    train_grpo(_cfg(tiny_policy_dir, tmp_path / "b", kl_coef=0.1, steps=1), [sample], FakeFactory())
    # continue the 1-step run as a 2-step run from its checkpoint
    train_grpo(
        _cfg(tiny_policy_dir, tmp_path / "b", kl_coef=0.1), [sample], FakeFactory(), resume=True
    )
    rows = {
        k: [
            json.loads(x)
            for x in (tmp_path / k / "log.jsonl").read_text().splitlines()
            if '"reward"' in x
        ]
        for k in "ab"
    }
    assert [r["step"] for r in rows["b"]] == [1, 2]
    drop = ("time", "seconds", "rollout_s")
    a2, b2 = ({k: v for k, v in r[1].items() if k not in drop} for r in (rows["a"], rows["b"]))
    assert a2 == b2  # same rollouts, rewards, loss statistics and grad norm, bit for bit
    assert rows["a"][0]["kl"] == 0.0  # the policy starts at the reference
    wa = common.load_model(tmp_path / "a" / "model")[0].state_dict()
    wb = common.load_model(tmp_path / "b" / "model")[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_config_errors_say_how_to_fix():
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        GRPOConfig(group_size=1)
    with pytest.raises(ValueError, match="temperature"):
        GRPOConfig(temperature=0)
    with pytest.raises(ValueError, match="clip_eps"):
        GRPOConfig(clip_eps=1.5)


@pytest.mark.slow
def test_two_process_grpo_step_equals_one_process_step(tiny_policy_dir, tmp_path):
    """torchrun with 2 gloo processes, one prompt each, takes the optimizer step 1 process takes
    with both prompts (sampling is seeded by the prompt, gradients are summed)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    script = tmp_path / "run_grpo.py"
    script.write_text(
        "import json, sys, torch\n"
        f"sys.path.insert(0, {str(here)!r})\n"
        "torch.set_num_threads(1)\n"
        "from training_fakes import BAD_BOX, GOOD_BOX, STOP, FakeFactory, SquareSample, make_candidate_generate\n"
        "from medsam_agent_rt.training.rollouts import LivePolicy\n"
        "from medsam_agent_rt.training.grpo import GRPOConfig, train_grpo\n"
        "LivePolicy.generate = make_candidate_generate([(GOOD_BOX, False), (BAD_BOX, False)], [(STOP, False)])\n"
        "train_grpo(GRPOConfig(**json.loads(sys.argv[1])), [SquareSample(0), SquareSample(1)], FakeFactory())\n"
    )
    kw = dict(
        model=str(tiny_policy_dir),
        steps=1,
        prompts_per_step=2,
        group_size=3,
        lr=3e-3,
        device="cpu",
        save_every=1,
        max_actions=2,
        seed=4,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for n, name in ((2, "two"), (1, "one")):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(n),
            "--master_port",
            str(29700 + n + os.getpid() % 1000),
            str(script),
            json.dumps({**kw, "out": str(tmp_path / name)}),
        ]
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    w0 = common.load_model(tiny_policy_dir)[0].state_dict()
    w1 = common.load_model(tmp_path / "one" / "model")[0].state_dict()
    w2 = common.load_model(tmp_path / "two" / "model")[0].state_dict()
    assert sum(not torch.equal(w0[k], w1[k]) for k in w0) > 10
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-6)
