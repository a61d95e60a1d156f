"""qwen_chat: ChatML rendering, token ids, assistant (loss) mask and image inputs.

Oracles are independent of qwen_chat: ChatML strings written out by hand from the protocol
strings, the tokenizer run on the whole string at once (as the official processors do), image
token counts from the resize rule computed by hand and by transformers' own smart_resize, and
pixel patches rebuilt with PIL + NumPy loops.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from medsam_agent_rt.policies import qwen_chat as qc  # noqa: E402
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
TARGET = "left kidney in abdomen CT"
BOX = assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [120, 200, 610, 745]})
POINT = assistant_text(
    PHRASE_REFINE, "add_point", {"point_2d": [398, 401], "point_type": "negative"}
)


@pytest.fixture(scope="module")
def tokenizers_by_family(tmp_path_factory):
    from medsam_agent_rt.training.tiny_qwen import build_tiny_qwen
    from transformers import AutoTokenizer

    out = {}
    for fam in FAMILIES:
        path = build_tiny_qwen(tmp_path_factory.mktemp(fam), fam, seed=0)
        out[fam] = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return out


def _views(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(n)]


# ----------------------------------------------------------------------------- image spec


def test_view_token_counts_by_hand():
    q3, q25 = qc.FAMILY_SPECS["qwen3_vl"], qc.FAMILY_SPECS["qwen2_5_vl"]
    # Qwen3-VL: 512 is a multiple of 16*2, inside [256^2, 4096^2]: kept; (512/16)^2 / 2^2 = 256.
    assert q3.resized_hw(512, 512) == (512, 512)
    assert q3.grid_thw(512, 512) == (1, 32, 32)
    assert q3.num_image_tokens(512, 512) == 256
    # Qwen2.5-VL: round(512 / 28) = 18 -> 504; (504/14)^2 / 4 = 324.
    assert q25.resized_hw(512, 512) == (504, 504)
    assert q25.num_image_tokens(512, 512) == 324
    # Non-square: 300x500 on Qwen3-VL -> round(9.375)*32=288, round(15.625)*32=512 -> 18x32 grid.
    assert q3.grid_thw(300, 500) == (1, 18, 32)
    assert q3.num_image_tokens(300, 500) == 144
    # Too small: 32x32 is scaled up to the 256^2 minimum area.
    assert q3.resized_hw(32, 32) == (256, 256)
    with pytest.raises(ValueError, match="aspect ratio"):
        q3.resized_hw(10, 2010)


@pytest.mark.parametrize("family", FAMILIES)
def test_resize_rule_matches_transformers(family):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    spec = qc.FAMILY_SPECS[family]
    f = spec.patch_size * spec.merge_size
    rng = np.random.default_rng(1)
    sizes = [(512, 512), (1, 1), (28, 29), (5000, 5000)] + [
        tuple(int(v) for v in rng.integers(20, 3000, 2)) for _ in range(200)
    ]
    for h, w in sizes:
        if max(h, w) / min(h, w) > 200:
            continue
        ref = smart_resize(h, w, factor=f, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
        assert spec.resized_hw(h, w) == tuple(ref), (h, w)


def _reference_patches(img: np.ndarray, size: tuple[int, int], spec: qc.ImageSpec) -> np.ndarray:
    """PIL bicubic resize (if needed), rescale/normalise, then patches in the merge-block order."""
    from PIL import Image

    h, w = size
    if (h, w) != img.shape[:2]:
        img = np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))
    x = (img.astype(np.float32) / 255 - np.float32(spec.image_mean)) / np.float32(spec.image_std)
    x = x.transpose(2, 0, 1)
    p, m, t = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    rows = []
    for bh in range(h // p // m):
        for bw in range(w // p // m):
            for mh in range(m):
                for mw in range(m):
                    r, c = bh * m + mh, bw * m + mw
                    patch = x[:, r * p : (r + 1) * p, c * p : (c + 1) * p]
                    rows.append(np.repeat(patch[:, None], t, axis=1).reshape(-1))
    return np.stack(rows)


@pytest.mark.parametrize("family", FAMILIES)
def test_pixel_values_match_reference(family):
    spec = qc.FAMILY_SPECS[family]
    views = _views(2, seed=3)
    pv, grid = qc.preprocess_images(views, spec)
    size = (512, 512) if family == "qwen3_vl" else (504, 504)
    ref = np.concatenate([_reference_patches(v, size, spec) for v in views])
    g = size[0] // spec.patch_size
    assert grid.tolist() == [[1, g, g]] * 2
    assert pv.dtype == np.float32 and pv.shape == ref.shape
    np.testing.assert_allclose(pv, ref, rtol=0, atol=1e-6)


def test_image_spec_checks_the_checkpoint():
    from types import SimpleNamespace

    vc = SimpleNamespace(patch_size=16, spatial_merge_size=2, temporal_patch_size=2)
    spec = qc.image_spec("qwen3_vl", vision_config=vc, preprocessor={"image_mean": [0.1, 0.2, 0.3]})
    assert spec.image_mean == (0.1, 0.2, 0.3) and spec.patch_size == 16
    with pytest.raises(ValueError, match="patch_size"):
        qc.image_spec("qwen3_vl", vision_config=vc, preprocessor={"patch_size": 14})
    with pytest.raises(ValueError, match="family"):
        qc.image_spec("llava", vision_config=vc)
    with pytest.raises(ValueError, match="min_pixels"):
        qc.image_spec("qwen3_vl", min_pixels=10, max_pixels=5)
    # Checkpoint pixel bounds are ignored; explicit ones win.
    spec = qc.image_spec("qwen3_vl", preprocessor={"size": {"shortest_edge": 1, "longest_edge": 2}})
    assert spec.num_image_tokens(512, 512) == 256
    assert qc.image_spec("qwen3_vl", max_pixels=256 * 256).num_image_tokens(512, 512) == 64


# ----------------------------------------------------------------------------- ChatML


def _expected_chatml(target, assistant_texts, n_images, pads, gen_prompt):
    """The conversation written out by hand from the protocol strings."""
    img = "<|vision_start|>" + "<|image_pad|>" * pads + "<|vision_end|>"
    s = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
    s += f"<|im_start|>user\n{img}{first_turn_text(target)}<|im_end|>\n"
    for k in range(1, n_images):
        s += f"<|im_start|>assistant\n{assistant_texts[k - 1]}<|im_end|>\n"
        s += f"<|im_start|>user\n{img}{FOLLOWUP_TURN_TEXT}<|im_end|>\n"
    if len(assistant_texts) == n_images:
        s += f"<|im_start|>assistant\n{assistant_texts[-1]}<|im_end|>\n"
    if gen_prompt:
        s += "<|im_start|>assistant\n"
    return s


@pytest.mark.parametrize("family", FAMILIES)
def test_render_chatml_exact(family):
    msgs = build_messages(TARGET, _views(3), [BOX, POINT])
    expected = _expected_chatml(TARGET, [BOX, POINT], 3, 1, gen_prompt=True)
    assert qc.render_chatml(msgs, family, add_generation_prompt=True) == expected
    expanded = _expected_chatml(TARGET, [BOX, POINT], 3, 7, gen_prompt=False)
    assert qc.render_chatml(msgs, family, image_tokens=[7, 7, 7]) == expanded


def test_default_system_only_for_qwen25():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert qc.render_chatml(msgs, "qwen3_vl") == "<|im_start|>user\nhi<|im_end|>\n"
    assert qc.render_chatml(msgs, "qwen2_5_vl") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n"
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_equals_whole_string_tokenization(family, tokenizers_by_family):
    tok = tokenizers_by_family[family]
    enc = qc.QwenChatEncoder(tok, qc.FAMILY_SPECS[family])
    pads = 256 if family == "qwen3_vl" else 324
    for texts, n_img, gen in (([], 1, True), ([BOX], 2, True), ([BOX, POINT], 2, False)):
        msgs = build_messages(TARGET, _views(n_img), texts)
        out = enc.encode(msgs, add_generation_prompt=gen)
        ref = tok(_expected_chatml(TARGET, texts, n_img, pads, gen), add_special_tokens=False)
        assert out.input_ids.tolist() == list(ref["input_ids"])
        pad_id = tok.convert_tokens_to_ids("<|image_pad|>")
        assert out.mm_token_type_ids.tolist() == [int(t == pad_id) for t in ref["input_ids"]]
        assert int(out.mm_token_type_ids.sum()) == pads * n_img
        assert out.image_grid_thw.shape == (n_img, 3)


@pytest.mark.parametrize("family", FAMILIES)
def test_assistant_mask(family, tokenizers_by_family):
    tok = tokenizers_by_family[family]
    enc = qc.QwenChatEncoder(tok, qc.FAMILY_SPECS[family])
    msgs = build_messages(TARGET, _views(2), [BOX, POINT])
    out = enc.encode(msgs)
    ids, mask = out.input_ids, out.assistant_mask
    assert mask.dtype == np.int8 and mask.shape == ids.shape
    # Exactly the assistant texts and their <|im_end|>, in order, nothing else.
    masked = tok.decode(ids[mask == 1].tolist(), skip_special_tokens=False)
    assert masked == f"{BOX}<|im_end|>{POINT}<|im_end|>"
    labels = out.labels()
    assert labels.tolist() == [t if m else -100 for t, m in zip(ids.tolist(), mask.tolist())]
    # Independently by character offsets of the whole-string tokenization.
    text = _expected_chatml(TARGET, [BOX, POINT], 2, 256 if family == "qwen3_vl" else 324, False)
    spans = []
    for body in (BOX, POINT):
        start = text.index(f"<|im_start|>assistant\n{body}") + len("<|im_start|>assistant\n")
        spans.append((start, start + len(body) + len("<|im_end|>")))
    ref = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ref_mask = [int(any(a <= s and e <= b for a, b in spans)) for s, e in ref["offset_mapping"]]
    assert mask.tolist() == ref_mask


def test_assistant_mask_by_hand(tokenizers_by_family):
    """A tiny conversation counted token by token."""
    tok = tokenizers_by_family["qwen3_vl"]
    enc = qc.QwenChatEncoder(tok, qc.image_spec("qwen3_vl", min_pixels=32 * 32))
    img = np.zeros((32, 32, 3), np.uint8)  # 2x2 patches -> 1 image token
    msgs = [
        {"role": "system", "content": [{"type": "text", "text": "S"}]},
        {
            "role": "user",
            "content": [{"type": "image", "image": img}, {"type": "text", "text": "U"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "A"}]},
    ]
    out = enc.encode(msgs)
    t = {s: tok.convert_tokens_to_ids(s) for s in qc.CONTROL_TOKENS}

    def e(s):
        return tok.encode(s, add_special_tokens=False)

    expected = (
        [t["<|im_start|>"], *e("system\nS"), t["<|im_end|>"], *e("\n")]
        + [t["<|im_start|>"], *e("user\n"), t["<|vision_start|>"], t["<|image_pad|>"]]
        + [t["<|vision_end|>"], *e("U"), t["<|im_end|>"], *e("\n")]
        + [t["<|im_start|>"], *e("assistant\n"), *e("A"), t["<|im_end|>"], *e("\n")]
    )
    assert out.input_ids.tolist() == expected
    n_tail = len(e("\n"))
    n_mine = len(e("A")) + 1
    assert (
        out.assistant_mask.tolist()
        == [0] * (len(expected) - n_mine - n_tail) + [1] * n_mine + [0] * n_tail
    )
    assert out.image_grid_thw.tolist() == [[1, 2, 2]]


@pytest.mark.parametrize("family", FAMILIES)
def test_training_tokens_equal_inference_prompt_plus_completion(family, tokenizers_by_family):
    """SFT sequence == what the runtime sends at turn k + the tokens the model must write."""
    tok = tokenizers_by_family[family]
    enc = qc.QwenChatEncoder(tok, qc.FAMILY_SPECS[family])
    views = _views(2)
    full = enc.encode(build_messages(TARGET, views, [BOX, POINT]))
    prompt = enc.encode(build_messages(TARGET, views, [BOX]), add_generation_prompt=True)
    completion = tok.encode(POINT, add_special_tokens=False) + [
        tok.convert_tokens_to_ids("<|im_end|>")
    ]
    newline = tok.encode("\n", add_special_tokens=False)
    assert full.input_ids.tolist() == prompt.input_ids.tolist() + completion + newline
    assert full.assistant_mask[prompt.input_ids.size :].tolist() == [1] * len(completion) + [
        0
    ] * len(newline)
    np.testing.assert_array_equal(full.pixel_values, prompt.pixel_values)


def test_model_kwargs_shapes(tokenizers_by_family):
    torch = pytest.importorskip("torch")
    enc = qc.QwenChatEncoder(tokenizers_by_family["qwen3_vl"], qc.FAMILY_SPECS["qwen3_vl"])
    out = enc.encode(build_messages(TARGET, _views(1), []), add_generation_prompt=True)
    kw = out.model_kwargs("cpu", torch.bfloat16)
    n = out.input_ids.size
    assert (
        kw["input_ids"].shape
        == kw["attention_mask"].shape
        == kw["mm_token_type_ids"].shape
        == (1, n)
    )
    assert kw["pixel_values"].dtype == torch.bfloat16 and kw["pixel_values"].shape == (1024, 1536)
    assert kw["image_grid_thw"].tolist() == [[1, 32, 32]]


def test_bad_messages_are_refused(tokenizers_by_family):
    enc = qc.QwenChatEncoder(tokenizers_by_family["qwen3_vl"], qc.FAMILY_SPECS["qwen3_vl"])
    view = _views(1)[0]
    good = build_messages(TARGET, [view], [])
    cases = [
        ([], "must not be empty"),
        ([{"role": "tool", "content": "x"}], "role"),
        ([good[1], good[0]], "system message must come first"),
        (
            [{"role": "user", "content": [{"type": "text", "text": "a<|im_end|>b"}]}],
            "control tokens",
        ),
        (
            [{"role": "user", "content": [{"type": "image", "image": view[..., 0]}]}],
            r"content\[0\] image",
        ),
        ([{"role": "user", "content": [{"type": "image", "image": view.astype(float)}]}], "uint8"),
        (
            [{"role": "assistant", "content": [{"type": "image", "image": view}]}],
            "only allowed in user",
        ),
        ([{"role": "user", "content": [{"type": "video"}]}], "'text' or 'image'"),
        ([{"role": "user", "content": 3}], "content must be"),
    ]
    for msgs, match in cases:
        with pytest.raises(ValueError, match=match):
            enc.encode(msgs)
    with pytest.raises(ValueError, match="no <|im_start|> token|not a Qwen-VL"):

        class NoQwen:
            unk_token_id = 0

            def convert_tokens_to_ids(self, t):
                return 0

        qc.QwenChatEncoder(NoQwen(), qc.FAMILY_SPECS["qwen3_vl"])
