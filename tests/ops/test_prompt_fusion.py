"""Prompt-embedding fusion against the OFFICIAL segment-anything PromptEncoder on identical
weights (random and the real LiteMedSAM checkpoint), and against the float64 NumPy reference.

Tolerances: vs the official float32 module 1e-5 absolute (its own float32 rounding of
2*pi*(q @ G) is ~|2*pi*q.G| * 6e-8, a few 1e-6 for SAM's Gaussian); vs the float64 reference
5e-7 absolute (the kernel reduces the angle exactly in float64 and evaluates sin/cos in float32,
error < 1e-7, then adds the label row in float64 and rounds once: < 1e-7 + half an ulp of |x| < 4).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsam_agent_rt import has_ext, ops
from medsam_agent_rt.ops import prompt_encoder_weights
from medsam_agent_rt.ops import reference as ref

pytestmark = pytest.mark.skipif(not has_ext(), reason="medsam_agent_rt._C is not built")

ATOL_OFFICIAL = 1e-5
ATOL_REFERENCE = 5e-7


def official_encoder(sam_oracle, embed_dim, input_size, seed):
    import torch

    torch.manual_seed(seed)
    h, w = input_size
    enc = sam_oracle.PromptEncoder(
        embed_dim=embed_dim,
        image_embedding_size=(h // 16, w // 16),
        input_image_size=(h, w),
        mask_in_chans=4,
    )
    with torch.no_grad():  # every weight the fusion reads, random (not the init values)
        enc.pe_layer.positional_encoding_gaussian_matrix.normal_(0.0, 2.0)
        for emb in [*enc.point_embeddings, enc.not_a_point_embed]:
            emb.weight.normal_(0.0, 1.0)
    return enc.eval()


def official_sparse(enc, points, labels, box):
    import torch

    pts = None
    if points is not None:
        pts = (torch.from_numpy(points)[None].float(), torch.from_numpy(labels)[None].int())
    boxes = torch.from_numpy(box)[None].float() if box is not None else None
    with torch.no_grad():
        sparse, _ = enc(points=pts, boxes=boxes, masks=None)
    return sparse[0].numpy()


def prompts(rng, kind, n_points, input_size):
    h, w = input_size
    points = labels = box = None
    if kind in ("points", "points+box"):
        points = (rng.random((n_points, 2)) * [w, h]).astype(np.float32)
        labels = rng.integers(0, 2, n_points).astype(np.int32)
    if kind in ("box", "points+box"):
        x0, y0 = rng.random(2) * [w / 2, h / 2]
        box = np.array([x0, y0, x0 + rng.random() * w / 2, y0 + rng.random() * h / 2], np.float32)
    return points, labels, box


@pytest.mark.parametrize("embed_dim", [256, 32])
@pytest.mark.parametrize("input_size", [(1024, 1024), (256, 256), (768, 1024)])
@pytest.mark.parametrize("kind", ["points", "box", "points+box"])
def test_equals_official_prompt_encoder(sam_oracle, embed_dim, input_size, kind):
    enc = official_encoder(sam_oracle, embed_dim, input_size, seed=embed_dim + input_size[1])
    weights = prompt_encoder_weights(enc)
    rng = np.random.default_rng(embed_dim * 7 + input_size[0])
    for n_points in (1, 5):
        points, labels, box = prompts(rng, kind, n_points, input_size)
        want = official_sparse(enc, points, labels, box)
        coords, labs = ops.sam_prompt_tokens(points, labels, box)
        got = ops.encode_sparse_prompts(coords, labs, weights)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL_OFFICIAL)
        exact = ref.encode_sparse_prompts(
            coords, labs, weights.gaussian_matrix, weights.label_embeddings, input_size
        )
        np.testing.assert_allclose(got, exact, rtol=0, atol=ATOL_REFERENCE)
        # flash-attention criterion: no further from float64 than the float32 module, x2
        assert np.abs(got - exact).max() <= 2 * np.abs(want - exact).max() + 1e-7


def test_equals_official_on_real_litemedsam_weights(sam_oracle, litemedsam_checkpoint):
    import torch

    enc = sam_oracle.PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16
    )
    state = torch.load(litemedsam_checkpoint, map_location="cpu", weights_only=True)
    prefix = "prompt_encoder."
    enc.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    weights = prompt_encoder_weights(enc)
    assert weights.input_size == (256, 256) and weights.embed_dim == 256
    rng = np.random.default_rng(0)
    for kind in ("points", "box", "points+box"):
        points, labels, box = prompts(rng, kind, 3, (256, 256))
        want = official_sparse(enc.eval(), points, labels, box)
        got = ops.encode_sparse_prompts(*ops.sam_prompt_tokens(points, labels, box), weights)
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL_OFFICIAL)


def test_weights_extracted_from_module(sam_oracle):
    enc = official_encoder(sam_oracle, 64, (256, 256), seed=1)
    weights = prompt_encoder_weights(enc)
    g = enc.pe_layer.positional_encoding_gaussian_matrix.detach().numpy()
    np.testing.assert_array_equal(weights.gaussian_matrix, g)
    rows = [enc.not_a_point_embed] + [enc.point_embeddings[i] for i in range(4)]
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(weights.label_embeddings[i], row.weight.detach().numpy()[0])
    assert (
        weights.gaussian_matrix.flags.c_contiguous and weights.label_embeddings.dtype == np.float32
    )
    with pytest.raises(TypeError, match="module must be a SAM PromptEncoder"):
        prompt_encoder_weights(object())


def random_weights(rng, dim, input_size=(1024, 1024)):
    g = rng.normal(0, 3, (2, dim // 2))
    e = rng.normal(0, 1, (5, dim))
    return ops.PromptEncoderWeights(g, e, input_size)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    s=st.integers(0, 20),
    half=st.integers(1, 40),
    size=st.tuples(st.integers(1, 2048), st.integers(1, 2048)),
    extra_slots=st.integers(0, 4),
    scale=st.sampled_from([1.0, 1e3, 1e5]),
)
def test_matches_reference_on_random_tokens(seed, s, half, size, extra_slots, scale):
    rng = np.random.default_rng(seed)
    weights = random_weights(rng, 2 * half, size)
    coords = (rng.uniform(-0.5, 1.5, (s, 2)) * scale).astype(np.float32)  # also outside
    labels = rng.integers(-1, 4, s)
    got = ops.encode_sparse_prompts(coords, labels, weights, num_slots=s + extra_slots)
    want = ref.encode_sparse_prompts(
        coords, labels, weights.gaussian_matrix, weights.label_embeddings, size, s + extra_slots
    )
    assert got.shape == (s + extra_slots, 2 * half)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL_REFERENCE)
    np.testing.assert_array_equal(
        got[s:], np.broadcast_to(weights.label_embeddings[0], got[s:].shape)
    )


def test_input_forms_and_layouts():
    rng = np.random.default_rng(3)
    weights = random_weights(rng, 16)
    coords = (rng.random((6, 2)) * 1024).astype(np.float32)
    labels = np.array([0, 1, -1, 2, 3, 1])
    want = ops.encode_sparse_prompts(coords, labels, weights)
    forms = [
        (coords.tolist(), labels.tolist()),
        (coords.astype(np.float64), labels.astype(np.int32)),
        (np.asfortranarray(coords), labels.astype(np.int8)),
        (np.repeat(coords, 2, axis=0)[::2], np.repeat(labels, 3)[::3]),
        (coords.astype(">f4"), labels.astype(">i8")),
    ]
    for c, lab in forms:
        np.testing.assert_array_equal(ops.encode_sparse_prompts(c, lab, weights), want)


def test_read_only_weights_and_host_capsules():
    """Weights are only read: read-only arrays (e.g. memory-mapped checkpoints) are accepted, and
    a host DLPack capsule reads like the array it wraps."""
    rng = np.random.default_rng(4)
    g, e = rng.standard_normal((2, 8)).astype(np.float32), rng.standard_normal((5, 16))
    w = ops.PromptEncoderWeights(g, e, (64, 48))
    w.gaussian_matrix.flags.writeable = False
    w.label_embeddings.flags.writeable = False
    coords = np.array([[3.0, 4.0], [40.0, 10.0]], np.float32)
    labels = np.array([1, 2], np.int64)
    want = ref.encode_sparse_prompts(coords, labels, g, e.astype(np.float32), (64, 48), 3)
    np.testing.assert_allclose(ops.encode_sparse_prompts(coords, labels, w, 3), want, atol=5e-7)
    torch = pytest.importorskip("torch")
    out = np.empty((3, 16), np.float32)
    from medsam_agent_rt import _C

    _C.encode_sparse_prompts(
        torch.from_numpy(coords).__dlpack__(), labels, g, w.label_embeddings, 64, 48, out
    )
    np.testing.assert_allclose(out, want, atol=5e-7)


def test_no_tokens_and_pad_only():
    rng = np.random.default_rng(4)
    weights = random_weights(rng, 8)
    coords, labels = ops.sam_prompt_tokens(None, None, None)
    assert ops.encode_sparse_prompts(coords, labels, weights).shape == (0, 8)
    padded = ops.encode_sparse_prompts(coords, labels, weights, num_slots=3)
    np.testing.assert_array_equal(padded, np.tile(weights.label_embeddings[0], (3, 1)))


@pytest.mark.parametrize(
    "coords,labels,match",
    [
        (np.zeros((2, 3), np.float32), np.zeros(2, np.int32), r"coords must be \(S, 2\)"),
        (np.zeros((2, 2), np.float32), np.zeros(3, np.int32), r"labels must be \(2,\)"),
        (np.zeros((2, 2), np.float32), np.array([0, 4]), "labels must be in -1..3"),
        (np.zeros((2, 2), np.float32), np.array([-2, 0]), "labels must be in -1..3"),
        (np.zeros((2, 2), np.float32), np.array([0.5, 1.0]), "labels must be integers"),
    ],
)
def test_bad_tokens_raise_naming_the_argument(coords, labels, match):
    weights = random_weights(np.random.default_rng(5), 8)
    with pytest.raises(ValueError, match=match):
        ops.encode_sparse_prompts(coords, labels, weights)


def test_too_many_tokens_and_bad_weights():
    rng = np.random.default_rng(6)
    weights = random_weights(rng, 8)
    with pytest.raises(ValueError, match="do not fit in num_slots=1"):
        ops.encode_sparse_prompts(np.zeros((2, 2)), np.zeros(2, int), weights, num_slots=1)
    with pytest.raises(ValueError, match=r"gaussian_matrix must be \(2, 4\)"):
        ops.PromptEncoderWeights(np.zeros((2, 3)), np.zeros((5, 8)), (64, 64))
    with pytest.raises(ValueError, match=r"label_embeddings must be \(5, C\)"):
        ops.PromptEncoderWeights(np.zeros((2, 4)), np.zeros((4, 8)), (64, 64))
    with pytest.raises(ValueError, match="input_size must be"):
        ops.PromptEncoderWeights(np.zeros((2, 4)), np.zeros((5, 8)), (0, 64))


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.needs_cuda
def test_cuda_matches_host(sam_oracle):
    import torch

    enc = official_encoder(sam_oracle, 256, (1024, 1024), seed=7)
    weights = prompt_encoder_weights(enc)
    rng = np.random.default_rng(7)
    points, labels, box = prompts(rng, "points+box", 9, (1024, 1024))
    coords, labs = ops.sam_prompt_tokens(points, labels, box)
    want = official_sparse(enc, points, labels, box)
    got = ops.encode_sparse_prompts(
        torch.from_numpy(coords).cuda(), torch.from_numpy(labs).cuda(), weights, num_slots=16
    )
    assert got.is_cuda and got.shape == (16, 256)
    host = ops.encode_sparse_prompts(coords, labs, weights, num_slots=16)
    np.testing.assert_allclose(got.cpu().numpy(), host, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.cpu().numpy()[: len(want)], want, rtol=0, atol=ATOL_OFFICIAL)
    # strided CUDA inputs, int64 labels, float64 coords
    c2 = torch.from_numpy(np.repeat(coords, 2, axis=0)).double().cuda()[::2]
    got2 = ops.encode_sparse_prompts(c2, torch.from_numpy(labs).long().cuda(), weights)
    np.testing.assert_allclose(got2.cpu().numpy(), host[: len(coords)], rtol=0, atol=1e-6)


@pytest.mark.needs_cuda
def test_cuda_bad_labels_raise():
    import torch

    weights = random_weights(np.random.default_rng(8), 8)
    coords = torch.zeros((2, 2), device="cuda")
    with pytest.raises(ValueError, match="labels must be in -1..3"):
        ops.encode_sparse_prompts(coords, torch.tensor([0, 7], device="cuda"), weights)
    with pytest.raises(ValueError, match="labels must be on cuda:0"):
        ops.encode_sparse_prompts(coords, np.array([0, 1]), weights)
