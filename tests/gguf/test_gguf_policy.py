"""The llama.cpp policy: the KV cache is really kept (tokens evaluated per turn counted against
the HF tokenization of the same conversations), kept-cache episodes equal from-scratch ones,
grammar-constrained turns always parse, a bad model without the grammar gives recorded invalid
turns, context sizing, lifetime."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.needs_llama
pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from medsam_agent_rt.export.gguf_parity import parity_view  # noqa: E402

from medsam_agent_rt.protocol import build_messages, parse_turn  # noqa: E402

TARGET = "liver in abdomen CT"


def _obs(messages, retry=None):
    return SimpleNamespace(messages=messages, retry=retry)


def _hf_encoder(src):
    from medsam_agent_rt.policies.qwen_chat import QwenChatEncoder, load_image_spec

    cfg = transformers.AutoConfig.from_pretrained(src)
    tok = transformers.AutoTokenizer.from_pretrained(src)
    return QwenChatEncoder(tok, load_image_spec(src, cfg.vision_config, cfg.model_type))


def _lcp(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_turn_k_evaluates_only_its_new_tokens(family, tiny_checkpoints, gguf_export):
    from medsam_agent_rt.policies.gguf import GGUFPolicy

    enc = _hf_encoder(tiny_checkpoints[family])
    views = [parity_view(seed=k) for k in range(4)]
    texts: list[str] = []
    prev: list[int] | None = None
    with GGUFPolicy(gguf_export(family, "f16"), n_threads=2) as pol:
        for k in range(4):
            msgs = build_messages(TARGET, views[: k + 1], texts)
            turn = pol.act(_obs(msgs))
            info = turn.info
            cur = enc.encode(msgs, add_generation_prompt=True).input_ids.tolist()
            assert info["prompt_tokens"] == len(cur)
            # what the cache held: the previous prompt + the tokens generated into it
            expected_new = len(cur) - (_lcp(prev, cur) if prev is not None else 0)
            assert info["evaluated_tokens"] == expected_new, (k, info)
            assert info["images_encoded"] == 1  # only the new view, never the earlier ones
            if prev is not None:
                assert expected_new < len(cur) // 2  # the history was not re-evaluated
            body = info["token_ids"][:-1] if info["finish_reason"] == "stop" else info["token_ids"]
            prev = cur + body
            texts.append(turn.text)
            # a retry of the same question re-decodes one token and repeats the greedy answer
        again = pol.act(_obs(msgs, retry="invalid_output"))
        assert again.info["evaluated_tokens"] == 1 and again.info["images_encoded"] == 0
        assert again.text == texts[-1]


class _FromScratch:
    """The same policy, its cache cleared before every turn."""

    name, requires_gt = "scratch", False

    def __init__(self, policy):
        self.policy = policy

    def reset(self, task=None):
        self.policy.reset(task)

    def act(self, obs):
        self.policy.clear_cache()
        return self.policy.act(obs)


def _episode(policy, seg, image, target):
    from medsam_agent_rt.episode import Episode

    mask, rec = Episode(seg, policy).run(image, target)
    return mask, rec


@pytest.fixture(scope="module")
def litemedsam():
    from medsam_agent_rt.segmenters import build_segmenter

    return build_segmenter("litemedsam")


@pytest.fixture(scope="module")
def phantoms():
    from medsam_agent_rt.training.phantom_data import phantom_samples
    from medsam_agent_rt.training.presets import get_preset

    return [
        s.load() + (s.description,)
        for s in phantom_samples(get_preset("phantom-tiny").phantoms, "test", 3)
    ]


@pytest.mark.slow
def test_kept_cache_episode_equals_from_scratch(gguf_export, litemedsam, phantoms):
    from medsam_agent_rt.policies.gguf import GGUFPolicy

    image, _, target = phantoms[0]
    with GGUFPolicy(gguf_export("qwen3_vl", "f16"), n_threads=2) as pol:
        mask_a, rec_a = _episode(pol, litemedsam, image, target)
        mask_b, rec_b = _episode(_FromScratch(pol), litemedsam, image, target)
    assert len(rec_a.turns) >= 2  # a multi-turn episode (random weights, grammar: valid calls)
    assert [t.text for t in rec_a.turns] == [t.text for t in rec_b.turns]
    np.testing.assert_array_equal(mask_a, mask_b)
    kept = [t.info["evaluated_tokens"] for t in rec_a.turns]
    scratch = [t.info["evaluated_tokens"] for t in rec_b.turns]
    assert kept[0] == scratch[0] and all(a < b for a, b in zip(kept[1:], scratch[1:]))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_constrained_turns_always_parse(family, gguf_export):
    from medsam_agent_rt.policies.gguf import GGUFPolicy

    with GGUFPolicy(gguf_export(family, "f16"), n_threads=2, temperature=1.0, seed=3) as pol:
        for k in range(6):
            msgs = build_messages(f"target {k} in phantom image", [parity_view(seed=k)], [])
            turn = pol.act(_obs(msgs))
            parsed = parse_turn(turn.text)
            # the grammar fixes the form; only x1 < x2 / y1 < y2 of a box is left to the model
            assert parsed.ok or parsed.result.reason == "box_order", (turn.text, parsed)
            assert turn.info["finish_reason"] == "stop" and len(turn.info["token_ids"]) <= 128


def test_bad_model_without_grammar_records_invalid_turns(gguf_export, litemedsam, phantoms):
    from medsam_agent_rt.policies.gguf import GGUFPolicy

    image, _, target = phantoms[1]
    with GGUFPolicy(
        gguf_export("qwen3_vl", "f16"), n_threads=2, grammar=False, max_new_tokens=24
    ) as pol:
        _, rec = _episode(pol, litemedsam, image, target)
    assert rec.end_reason == "invalid_output"
    assert rec.turns and all(t.parse_error for t in rec.turns)
    assert all(len(t.info["token_ids"]) <= 24 for t in rec.turns)


def test_context_size_is_checked_and_close(gguf_export):
    from medsam_agent_rt.policies.gguf import GGUFPolicy

    path = gguf_export("qwen3_vl", "f16")
    with pytest.raises(ValueError, match="worst-case"):
        GGUFPolicy(path, n_ctx=256)
    pol = GGUFPolicy(path, n_threads=1)
    need = pol.worst_case_tokens()
    assert pol.n_ctx >= need > 5 * (64 + 128)  # 5 views of 64 tokens + 5 answers
    pol.close()
    pol.close()  # idempotent
    assert pol.runtime is None


def test_registry_builds_gguf_specs(gguf_export):
    from medsam_agent_rt.policies import build_policy

    path = gguf_export("qwen3_vl", "f16")
    pol = build_policy(f"gguf:{path}", n_threads=1)
    try:
        assert pol.spec == f"gguf:{path}" and pol.family == "qwen3_vl"
        msgs = build_messages(TARGET, [parity_view()], [])
        assert parse_turn(pol.act(_obs(msgs)).text).phrase  # the registry's spec tag is harmless
    finally:
        pol.close()
    model = next(path.glob("model-*.gguf"))
    pol = build_policy(str(model), n_threads=1)  # a bare .gguf path, manifest beside it
    pol.close()


def test_policy_runs_without_torch_or_transformers(gguf_export):
    """The llama.cpp policy needs neither torch nor transformers (a subprocess where importing
    them fails answers one turn of the shipped embedded GGUF)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from types import SimpleNamespace\n"
        "import numpy as np\n"
        "from medsam_agent_rt.policies import build_policy, default_policy_spec\n"
        "from medsam_agent_rt.protocol import build_messages, parse_turn\n"
        "pol = build_policy(default_policy_spec(), n_threads=1)\n"
        "view = np.full((512, 512, 3), 60, np.uint8)\n"
        "turn = pol.act(SimpleNamespace(messages=build_messages('liver in abdomen CT', [view], []), retry=None))\n"
        "assert parse_turn(turn.text).ok, turn.text\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "print('OK', pol.spec)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("OK gguf:")
