"""SFT: the training tokens are the runtime's inference tokens plus the answers; the loss covers
exactly the assistant tokens; two steps lower the loss; a resumed run repeats the next step
bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from medsam_agent_rt.training import common  # noqa: E402
from medsam_agent_rt.training.conversations import (  # noqa: E402
    ConversationWriter,
    iter_conversations,
    load_images,
)
from medsam_agent_rt.training.sft import (  # noqa: E402
    Conversations,
    SFTConfig,
    encode_example,
    nll_sum,
    train_sft,
)
from training_fakes import GOOD_BOX, STOP, FakeFactory, SquareSample  # noqa: E402

from medsam_agent_rt.episode import Episode  # noqa: E402
from medsam_agent_rt.policies import ReplayPolicy  # noqa: E402
from medsam_agent_rt.policies.hf import HFPolicy  # noqa: E402
from medsam_agent_rt.protocol import PHRASE_REFINE, assistant_text  # noqa: E402

CLICK = assistant_text(
    PHRASE_REFINE, "add_point", {"point_2d": [500, 500], "point_type": "negative"}
)
SCRIPT = [GOOD_BOX, CLICK, STOP]


def _write_data(root, n=2, script=SCRIPT):
    w = ConversationWriter(root)
    for i in range(n):
        s = SquareSample(i)
        _, rec = Episode(FakeFactory(), ReplayPolicy(list(script))).run(
            s.image, s.description, s.mask
        )
        w.write(f"c{i}", rec.conversation(s.image))
    return w.path


def test_training_tokens_are_the_inference_tokens_plus_the_answers(
    tiny_policy_dir, tmp_path, monkeypatch
):
    """A 3-turn episode of the runtime's HFPolicy (its generate scripted to the expert answers):
    the prompt it sent at turn k is the prefix of the SFT sequence up to the k-th answer, the
    answer follows with its <|im_end|>, and the loss mask is exactly the answers -- after a
    JSONL + PNG round trip through the conversation files."""
    policy = HFPolicy(tiny_policy_dir)
    answers = [policy.encoder._encode_text(t) + [policy.stop_token_ids[0]] for t in SCRIPT]
    it = iter(answers)
    monkeypatch.setattr(
        HFPolicy, "generate", lambda self, inputs, temperature=0.0: (next(it), [0.0])
    )
    prompts = []
    original_act = HFPolicy.act

    def act(self, obs):
        out = original_act(self, obs)
        prompts.append(self.last_inputs.input_ids.tolist())
        return out

    monkeypatch.setattr(HFPolicy, "act", act)
    s = SquareSample()
    _, rec = Episode(FakeFactory(), policy).run(s.image, s.description, s.mask)
    assert [t.outcome for t in rec.turns] == ["executed", "executed", "stop"]
    path = ConversationWriter(tmp_path).write("c", rec.conversation(s.image))
    conv = next(iter_conversations(tmp_path / "conversations.jsonl"))
    assert conv["id"] == path["id"]
    inputs = encode_example(policy.encoder, load_images(conv, tmp_path))
    ids, mask = inputs.input_ids.tolist(), inputs.assistant_mask.tolist()
    starts = [i for i in range(1, len(mask)) if mask[i] == 1 and mask[i - 1] == 0]
    assert len(starts) == 3
    for k, start in enumerate(starts):
        assert ids[:start] == prompts[k]  # exactly what the runtime sent at turn k
        assert ids[start : start + len(answers[k])] == answers[k]
    labels = inputs.labels()
    assert (labels != -100).sum() == sum(map(len, answers))
    assert [t for t in labels.tolist() if t != -100] == [t for a in answers for t in a]


def test_two_sft_steps_lower_the_loss_on_a_fixed_batch(tiny_policy_dir, tmp_path):
    data = _write_data(tmp_path / "data")
    cfg = SFTConfig(
        model=str(tiny_policy_dir),
        data=[str(data)],
        out=str(tmp_path / "run"),
        max_steps=2,
        batch_size=2,
        lr=3e-3,
        warmup_steps=0,
        schedule="constant",
        device="cpu",
    )
    model0, _, enc = common.load_model(tiny_policy_dir)
    batch = [encode_example(enc, Conversations([str(data)]).messages(i)) for i in range(2)]

    def loss(m):
        with torch.no_grad():
            parts = [nll_sum(m, b, "cpu", False) for b in batch]
        return float(sum(p[0] for p in parts) / sum(p[1] for p in parts))

    before = loss(model0)
    summary = train_sft(cfg)
    model1, _, _ = common.load_model(tmp_path / "run" / "model")
    after = loss(model1)
    assert after < before - 0.05, (before, after)
    changed = [
        n
        for (n, a), b in zip(model0.named_parameters(), model1.parameters())
        if not torch.equal(a, b)
    ]
    assert len(changed) > 10
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert rows[0]["loss"] == pytest.approx(before, rel=1e-5)  # step 1 saw the initial model
    assert summary["steps"] == 2


class _Stop(Exception):
    pass


def test_resume_repeats_the_next_step_bit_for_bit(tiny_policy_dir, tmp_path):
    """3 steps straight vs 2 steps, a crash, and a resume: identical step-3 loss and weights
    (data position, optimizer, scheduler and RNG restored)."""
    data = _write_data(tmp_path / "data", n=3)
    common_kw = dict(
        model=str(tiny_policy_dir),
        data=[str(data)],
        max_steps=3,
        batch_size=1,
        lr=1e-3,
        warmup_steps=1,
        device="cpu",
        save_every=1,
        lora_rank=0,
    )
    train_sft(SFTConfig(out=str(tmp_path / "a"), **common_kw))

    def crash(policy, step):
        raise _Stop

    with pytest.raises(_Stop):
        train_sft(SFTConfig(out=str(tmp_path / "b"), eval_every=2, **common_kw), crash)
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2
    train_sft(SFTConfig(out=str(tmp_path / "b"), **common_kw), resume=True)
    logs = {
        k: [json.loads(x) for x in (tmp_path / k / "log.jsonl").read_text().splitlines()]
        for k in "ab"
    }
    la = [r["loss"] for r in logs["a"] if "loss" in r]
    lb = [r["loss"] for r in logs["b"] if "loss" in r]
    assert len(la) == len(lb) == 3
    assert la == lb  # bitwise on CPU fp32
    wa = common.load_model(tmp_path / "a" / "model")[0].state_dict()
    wb = common.load_model(tmp_path / "b" / "model")[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_lora_and_frozen_vision_train_only_what_they_should(tiny_policy_dir, tmp_path):
    pytest.importorskip("peft")
    model, _, _ = common.load_model(
        tiny_policy_dir, lora=common.LoraSpec(rank=4), freeze_vision=True
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    model, _, _ = common.load_model(tiny_policy_dir, freeze_vision=True)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if ".visual." in n}


def test_config_errors_say_how_to_fix():
    with pytest.raises(ValueError, match="batch_size"):
        SFTConfig(batch_size=0)
    with pytest.raises(ValueError, match="schedule"):
        SFTConfig(schedule="linear")
    with pytest.raises(ValueError, match="precision"):
        SFTConfig(precision="fp8")
    with pytest.raises(ValueError, match="max_steps > 0 or epochs > 0"):
        SFTConfig(epochs=0)


def test_data_order_is_a_permutation_per_epoch(tmp_path):
    data = _write_data(tmp_path, n=3, script=[GOOD_BOX, STOP])
    conv = Conversations([str(data)])
    first = [conv.index(p, 0) for p in range(3)]
    second = [conv.index(p, 0) for p in range(3, 6)]
    assert sorted(first) == sorted(second) == [0, 1, 2]
    assert [conv.index(p, 0) for p in range(6)] == first + second  # deterministic
    with pytest.raises(FileNotFoundError, match="data file not found"):
        Conversations([str(tmp_path / "missing.jsonl")])
    msgs = conv.messages(0)
    assert isinstance(msgs[1]["content"][0]["image"], np.ndarray)


def _torchrun(tmp_path, nproc, cfg_kw):
    import os
    import subprocess
    import sys

    script = tmp_path / "run_sft.py"
    script.write_text(
        "import json, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from medsam_agent_rt.training.sft import SFTConfig, train_sft\n"
        "train_sft(SFTConfig(**json.loads(sys.argv[1])))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        str(29500 + nproc + os.getpid() % 1000),
        str(script),
        json.dumps(cfg_kw),
    ]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_process_step_equals_one_process_step(tiny_policy_dir, tmp_path, fsdp):
    """torchrun with 2 gloo processes (DDP, or FSDP shards) on a global batch of 2 gives the
    weights of 1 process on the same batch (up to float reduction order)."""
    data = _write_data(tmp_path / "data", n=2)
    kw = dict(
        model=str(tiny_policy_dir),
        data=[str(data)],
        max_steps=1,
        batch_size=2,
        lr=1e-3,
        warmup_steps=0,
        device="cpu",
        save_every=1,
    )
    _torchrun(tmp_path, 2, {**kw, "out": str(tmp_path / "two"), "fsdp": fsdp})
    train_sft(SFTConfig(**kw, out=str(tmp_path / "one")))
    w1 = common.load_model(tmp_path / "one" / "model")[0].state_dict()
    w2 = common.load_model(tmp_path / "two" / "model")[0].state_dict()
    w0 = common.load_model(tiny_policy_dir)[0].state_dict()
    moved = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    assert len(moved) > 10
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-6)


def test_the_cli_takes_several_data_files():
    """``--data a.jsonl b.jsonl`` (e.g. openings plus episodes) reaches the config as a list."""
    import argparse

    parser = argparse.ArgumentParser()
    common.add_config_args(parser, SFTConfig)
    args = parser.parse_args(["--data", "a.jsonl", "b.jsonl", "--max-steps", "3"])
    cfg = common.config_from_args(args, SFTConfig)
    assert cfg.data == ["a.jsonl", "b.jsonl"] and cfg.max_steps == 3
    assert SFTConfig().data == [] and SFTConfig().data is not SFTConfig().data
    with pytest.raises(ValueError, match="at least one conversations JSONL"):
        Conversations(SFTConfig().data)
