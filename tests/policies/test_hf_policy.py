"""HFPolicy end to end on tiny random-weight Qwen3-VL and Qwen2.5-VL checkpoints.

The token sequence sent to the model at each turn of a 3-turn episode is compared with the
conversation written out by hand from the protocol strings and tokenized as one string; the
image-token count comes from the view size, patch and merge size; pixel values are rebuilt with
NumPy. Generation is checked against an uncached full forward pass (greedy = argmax, log-probs).
The tiny checkpoints ship hostile sampling defaults in generation_config.json, which must be
ignored.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from medsam_agent_rt.training.tiny_qwen import build_tiny_qwen  # noqa: E402

from medsam_agent_rt.policies.hf import HFPolicy  # noqa: E402
from medsam_agent_rt.protocol import (  # noqa: E402
    FOLLOWUP_TURN_TEXT,
    PHRASE_BOX,
    PHRASE_REFINE,
    SYSTEM_PROMPT,
    assistant_text,
    build_messages,
    first_turn_text,
)

FAMILIES = ("qwen3_vl", "qwen2_5_vl")
TARGET = "liver in abdomen CT"
SCRIPT = [
    assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [250, 260, 720, 700]}),
    assistant_text(PHRASE_REFINE, "add_point", {"point_2d": [498, 520], "point_type": "positive"}),
]
# What real checkpoints ship (and worse): must not change protocol decoding.
HOSTILE_GENERATION = {
    "do_sample": True,
    "top_k": 3,
    "top_p": 0.5,
    "temperature": 5.0,
    "repetition_penalty": 1.5,
}
# patch size, merge size and the side a 512 view is resized to (round(512 / (patch*merge))).
GEOMETRY = {"qwen3_vl": (16, 2, 512), "qwen2_5_vl": (14, 2, 504)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return {
        fam: build_tiny_qwen(
            tmp_path_factory.mktemp(fam), fam, seed=1, generation_config=HOSTILE_GENERATION
        )
        for fam in FAMILIES
    }


@pytest.fixture(scope="module")
def policies(checkpoints):
    return {fam: HFPolicy(checkpoints[fam]) for fam in FAMILIES}


def _episode_views() -> list[np.ndarray]:
    """A 512 view (bright ellipse on noise) and two green overlays of growing masks."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:512, :512]
    view = rng.integers(0, 60, (512, 512, 3)).astype(np.uint8)
    view[((yy - 250) / 120) ** 2 + ((xx - 260) / 90) ** 2 < 1] += 150
    out = [view]
    for r in (60, 100):
        mask = ((yy - 250) / r) ** 2 + ((xx - 260) / r) ** 2 < 1
        over = view.astype(np.float32)
        over[mask] = 0.5 * over[mask] + 0.5 * np.array([0, 255, 0], np.float32)
        out.append(np.round(over).astype(np.uint8))
    return out


def _expected_text(k: int, pads: int) -> str:
    img = "<|vision_start|>" + "<|image_pad|>" * pads + "<|vision_end|>"
    s = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
    s += f"<|im_start|>user\n{img}{first_turn_text(TARGET)}<|im_end|>\n"
    for j in range(1, k):
        s += f"<|im_start|>assistant\n{SCRIPT[j - 1]}<|im_end|>\n"
        s += f"<|im_start|>user\n{img}{FOLLOWUP_TURN_TEXT}<|im_end|>\n"
    return s + "<|im_start|>assistant\n"


def _expected_pixels(view: np.ndarray, family: str, ckpt) -> np.ndarray:
    """Resize (PIL bicubic) if needed, normalise with the checkpoint's mean/std, patchify."""
    from PIL import Image

    p, m, side = GEOMETRY[family]
    pre = json.loads((ckpt / "preprocessor_config.json").read_text())
    if side != view.shape[0]:
        view = np.asarray(Image.fromarray(view).resize((side, side), Image.BICUBIC))
    x = (view.astype(np.float32) / 255 - np.float32(pre["image_mean"])) / np.float32(
        pre["image_std"]
    )
    g = side // p
    # (C, H, W) -> blocks (bh, bw) of m x m patches, each patch (C, T=2, p, p) flattened.
    x = x.transpose(2, 0, 1).reshape(3, g // m, m, p, g // m, m, p)
    x = x.transpose(1, 4, 2, 5, 0, 3, 6)  # bh, bw, mh, mw, C, py, px
    x = np.repeat(x[:, :, :, :, :, None], 2, axis=5)
    return x.reshape(g * g, 3 * 2 * p * p)


class _Recorder:
    """Wraps model.generate to keep the kwargs of each call."""

    def __init__(self, model):
        self.model, self.calls, self._orig = model, [], model.generate

    def __call__(self, **kw):
        self.calls.append(kw)
        return self._orig(**kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_three_turn_episode_sends_the_protocol(family, checkpoints):
    policy = HFPolicy(checkpoints[family], max_new_tokens=16)  # short turns keep the test fast
    tok = policy.tokenizer
    rec = _Recorder(policy.model)
    policy.model.generate = rec
    try:
        views = _episode_views()
        p, m, side = GEOMETRY[family]
        pads = (side // p) * (side // p) // (m * m)
        policy.reset(SimpleNamespace(target=TARGET))
        for k in (1, 2, 3):
            obs = SimpleNamespace(
                messages=build_messages(TARGET, views[:k], SCRIPT[: k - 1]), turn=k - 1, retry=False
            )
            turn = policy.act(obs)
            kw = rec.calls[-1]
            expected = tok(_expected_text(k, pads), add_special_tokens=False)["input_ids"]
            sent = kw["input_ids"][0].tolist()
            assert sent == list(expected), f"turn {k}: token sequence differs"
            assert kw["attention_mask"].tolist() == [[1] * len(sent)]
            pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
            assert kw["mm_token_type_ids"][0].tolist() == [int(t == pad_id) for t in sent]
            assert sum(t == pad_id for t in sent) == pads * k
            g = side // p
            assert kw["image_grid_thw"].tolist() == [[1, g, g]] * k
            ref = np.concatenate(
                [_expected_pixels(v, family, checkpoints[family]) for v in views[:k]]
            )
            np.testing.assert_allclose(kw["pixel_values"].numpy(), ref, rtol=0, atol=1e-6)
            # The turn's text is the decoded generation, up to the stop token.
            ids = turn.info["token_ids"]
            assert 1 <= len(ids) <= 16
            body = ids[:-1] if turn.info["finish_reason"] == "stop" else ids
            assert turn.info["finish_reason"] in ("stop", "length")
            assert (turn.info["finish_reason"] == "stop") == (ids[-1] in policy.stop_token_ids)
            assert turn.text == tok.decode(body, skip_special_tokens=True)
            assert isinstance(turn.text, str) and len(turn.info["logprobs"]) == len(ids)
            assert turn.info["prompt_tokens"] == len(sent)
            assert turn.info["image_tokens"] == pads * k
        # Deterministic: the same observation gives the same turn.
        again = policy.act(obs)
        assert again.info["token_ids"] == turn.info["token_ids"] and again.text == turn.text
    finally:
        del policy.model.generate


def _full_forward_logits(policy, prompt_kw, ids):
    """Logits predicting each generated token, from one uncached forward pass."""
    full = torch.cat([prompt_kw["input_ids"], torch.tensor([ids])], dim=1)
    kw = dict(prompt_kw)
    kw["input_ids"] = full
    kw["attention_mask"] = torch.ones_like(full)
    kw["mm_token_type_ids"] = torch.cat(
        [prompt_kw["mm_token_type_ids"], torch.zeros(1, len(ids), dtype=torch.long)], dim=1
    )
    with torch.no_grad():
        logits = policy.model(**kw).logits[0].float()
    n = prompt_kw["input_ids"].shape[1]
    return logits[n - 1 : n - 1 + len(ids)]


def _vision_free_prefix(policy, ids):
    """Random weights may emit <|image_pad|>, which a forward pass treats as an image slot."""
    bad = {policy.encoder.token_ids[t] for t in ("<|image_pad|>",)}
    cut = next((i for i, t in enumerate(ids) if t in bad), len(ids))
    return ids[:cut]


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generation_matches_full_forward(family, policies):
    policy = policies[family]
    assert policy.max_new_tokens == 128  # the protocol's budget is the default
    obs = SimpleNamespace(messages=build_messages(TARGET, _episode_views()[:2], SCRIPT[:1]))
    turn = policy.act(obs)
    assert turn.info["temperature"] == 0.0
    assert len(turn.info["token_ids"]) <= 128
    ids = _vision_free_prefix(policy, turn.info["token_ids"])
    assert len(ids) >= 8
    logits = _full_forward_logits(policy, policy.last_inputs.model_kwargs(), ids)
    # Greedy: every token is the argmax (up to float ties) despite the hostile defaults.
    chosen = logits.gather(-1, torch.tensor(ids)[:, None])[:, 0]
    assert torch.all(chosen >= logits.max(-1).values - 1e-4)
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids)[:, None])[:, 0]
    np.testing.assert_allclose(turn.info["logprobs"][: len(ids)], lp.numpy(), atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_logprobs_and_seeding(family, checkpoints):
    views = _episode_views()[:1]
    obs = SimpleNamespace(messages=build_messages(TARGET, views, []), retry=False)
    a = HFPolicy(checkpoints[family], temperature=1.3, seed=5, max_new_tokens=24)
    b = HFPolicy(checkpoints[family], temperature=1.3, seed=5, max_new_tokens=24)
    ta, tb = a.act(obs), b.act(obs)
    assert ta.info["token_ids"] == tb.info["token_ids"]  # same seed, same call -> same sample
    ta2 = a.act(obs)
    assert ta2.info["token_ids"] != ta.info["token_ids"]  # next call, next seed
    ids = _vision_free_prefix(a, ta.info["token_ids"])
    logits = _full_forward_logits(a, a.last_inputs.model_kwargs(), ids) / 1.3
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids)[:, None])[:, 0]
    np.testing.assert_allclose(ta.info["logprobs"][: len(ids)], lp.numpy(), atol=1e-4)


def test_retry_uses_retry_temperature(checkpoints):
    policy = HFPolicy(checkpoints["qwen3_vl"], retry_temperature=0.9, max_new_tokens=4)
    msgs = build_messages(TARGET, _episode_views()[:1], [])
    assert policy.act(SimpleNamespace(messages=msgs, retry=False)).info["temperature"] == 0.0
    assert policy.act({"messages": msgs, "retry": False}).info["temperature"] == 0.0
    assert policy.act(SimpleNamespace(messages=msgs, retry=True)).info["temperature"] == 0.9


def test_mm_token_type_ids_matter(policies):
    """Why the policy always sends mm_token_type_ids: Qwen3-VL refuses to run without them and
    Qwen2.5-VL silently computes different (1-D) positions."""
    msgs = build_messages(TARGET, _episode_views()[:1], [])
    outs = {}
    for fam in FAMILIES:
        policy = policies[fam]
        kw = policy.encoder.encode(msgs, add_generation_prompt=True).model_kwargs()
        without = {k: v for k, v in kw.items() if k != "mm_token_type_ids"}
        with torch.no_grad():
            ref = policy.model(**kw).logits
            if fam == "qwen3_vl":
                with pytest.raises(ValueError, match="mm_token_type_ids"):
                    policy.model(**without)
            else:
                outs[fam] = (ref, policy.model(**without).logits)
    ref, bad = outs["qwen2_5_vl"]
    assert not torch.allclose(ref, bad, atol=1e-4)


def test_bfloat16_runs(checkpoints):
    policy = HFPolicy(checkpoints["qwen3_vl"], dtype="bfloat16", max_new_tokens=6)
    assert next(policy.model.parameters()).dtype == torch.bfloat16
    turn = policy.act(SimpleNamespace(messages=build_messages(TARGET, _episode_views()[:1], [])))
    assert 1 <= len(turn.info["token_ids"]) <= 6 and isinstance(turn.text, str)


def test_close_and_context_manager(checkpoints):
    obs = SimpleNamespace(messages=build_messages(TARGET, _episode_views()[:1], []))
    with HFPolicy(checkpoints["qwen3_vl"], max_new_tokens=2) as policy:
        assert policy.act(obs).info["token_ids"]
    assert policy.model is None
    with pytest.raises(RuntimeError, match="closed"):
        policy.act(obs)
    policy.close()  # idempotent


def test_bad_arguments(tmp_path, checkpoints):
    with pytest.raises(FileNotFoundError, match="config.json"):
        HFPolicy(tmp_path / "nothing")
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="model_type 'llama'"):
        HFPolicy(other)
    with pytest.raises(ValueError, match="dtype"):
        HFPolicy(checkpoints["qwen3_vl"], dtype="int8")
    with pytest.raises(ValueError, match="device"):
        HFPolicy(checkpoints["qwen3_vl"], device="gpu0")
    with pytest.raises(ValueError, match="temperature"):
        HFPolicy(checkpoints["qwen3_vl"], temperature=-1)


def test_bad_observations(policies):
    policy = policies["qwen3_vl"]
    with pytest.raises(TypeError, match="messages"):
        policy.act(SimpleNamespace(turn=0))
    msgs = build_messages(TARGET, _episode_views()[:1], [SCRIPT[0]])
    with pytest.raises(ValueError, match="end with a user turn"):
        policy.act(SimpleNamespace(messages=msgs))
