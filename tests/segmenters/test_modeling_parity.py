"""Our SAM-1 modules vs the official code (segment-anything's modeling/, LiteMedSAM's TinyViT)
with identical random weights: same embeddings, low-res logits and IoU predictions (1e-4)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt import ops  # noqa: E402
from medsam_agent_rt.segmenters.torch_backend import prompt_encoder_weights  # noqa: E402

TOL = 1e-4


def _prompts(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    s = cfg.input_size
    pts = torch.rand(1, 3, 2, generator=g) * (s - 1)
    labels = torch.tensor([[1, 0, 1]])
    xy = torch.rand(2, 2, generator=g) * (s - 1)
    box = torch.cat([xy.min(0).values, xy.max(0).values]).reshape(1, 4)
    m = cfg.embedding_size * 4
    mask = torch.randn(1, 1, m, m, generator=g) * 3
    return pts, labels, box, mask


def _check_pair(ref, ours, cfg, seed, cases=("box", "points", "points+box+mask")):
    """Embeddings, sparse/dense prompt embeddings, and the logits + IoU of ALL four mask tokens
    (token 0 = single-mask output, 1..3 = multimask) through both of our decoder paths."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, cfg.input_size, cfg.input_size, generator=g)
    with torch.no_grad():
        emb_ref = ref.image_encoder(x)
        emb = ours.encode(x)
    assert emb.shape == emb_ref.shape
    torch.testing.assert_close(emb, emb_ref, atol=TOL, rtol=0)

    pts, labels, box, mask = _prompts(cfg, seed + 1)
    weights = prompt_encoder_weights(ours.prompt_encoder)
    table = {
        "box": (None, box, None),
        "points": ((pts, labels), None, None),
        "points+box+mask": ((pts, labels), box, mask),
    }
    for name in cases:
        points, boxes, masks = table[name]
        with torch.no_grad():
            sp_ref, de_ref = ref.prompt_encoder(points=points, boxes=boxes, masks=masks)
            lo_ref, iou_ref = ref.mask_decoder.predict_masks(
                emb_ref, ref.prompt_encoder.get_dense_pe(), sp_ref, de_ref
            )
            # (a) the official interface of our modules
            sp, de = ours.prompt_encoder(points=points, boxes=boxes, masks=masks)
            lo_a, iou_a = ours.mask_decoder.predict_masks(
                emb, ours.prompt_encoder.get_dense_pe(), sp, de
            )
            # (b) the runtime path: ops fusion kernel + export-friendly decode
            coords, labs = ops.sam_prompt_tokens(
                None if points is None else points[0][0].numpy(),
                None if points is None else points[1][0].numpy(),
                None if boxes is None else boxes[0].numpy(),
            )
            fused = torch.from_numpy(ops.encode_sparse_prompts(coords, labs, weights))[None]
            m = torch.zeros(1, 1, *ours.mask_input_size) if masks is None else masks
            has = torch.tensor([0.0 if masks is None else 1.0])
            lo_b, iou_b = ours.decode(emb, fused, m, has)
        assert lo_ref.shape[1] == 4
        torch.testing.assert_close(sp, sp_ref, atol=TOL, rtol=0, msg=name)
        torch.testing.assert_close(de, de_ref, atol=TOL, rtol=0, msg=name)
        torch.testing.assert_close(fused, sp_ref, atol=TOL, rtol=0, msg=name)
        for lo, iou in ((lo_a, iou_a), (lo_b, iou_b)):
            torch.testing.assert_close(lo, lo_ref, atol=TOL, rtol=0, msg=name)
            torch.testing.assert_close(iou, iou_ref, atol=TOL, rtol=0, msg=name)
    # the official forward() selection (multimask -> tokens 1..3, else token 0)
    for multimask, sl in ((True, slice(1, None)), (False, slice(0, 1))):
        with torch.no_grad():
            lo_f, iou_f = ours.mask_decoder(
                emb, ours.prompt_encoder.get_dense_pe(), sp, de, multimask
            )
        torch.testing.assert_close(lo_f, lo_a[:, sl])
        torch.testing.assert_close(iou_f, iou_a[:, sl])


def test_vit_encoder_and_decoder_match_official(sam_oracle, tiny_configs, paired):
    cfg = tiny_configs.vit
    ref, ours = paired(sam_oracle, cfg, seed=1)
    _check_pair(ref, ours, cfg, seed=10)


def test_tinyvit_encoder_and_decoder_match_official(
    sam_oracle, tinyvit_oracle, tiny_configs, paired
):
    cfg = tiny_configs.tinyvit
    ref, ours = paired(sam_oracle, cfg, seed=2, tinyvit_oracle=tinyvit_oracle)
    _check_pair(ref, ours, cfg, seed=20, cases=("points+box+mask",))  # 256-wide decoder: 1 case


def test_state_dict_keys_equal_official(sam_oracle, tinyvit_oracle, tiny_configs, oracle_builder):
    from medsam_agent_rt.segmenters.modeling.sam import SamModel

    for cfg, tv in ((tiny_configs.vit, None), (tiny_configs.tinyvit, tinyvit_oracle)):
        ref = oracle_builder(sam_oracle, cfg, tv)
        ours = SamModel(cfg)
        a = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        b = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert a == b


def test_padded_prompt_slots_are_exact_with_prompt_mask(sam_oracle, tiny_configs, paired):
    """Fixed slot count for export: masked padding slots give the unpadded result; unmasked
    not-a-point padding does NOT (so the mask is needed)."""
    cfg = tiny_configs.vit
    _, ours = paired(sam_oracle, cfg, seed=3)
    weights = prompt_encoder_weights(ours.prompt_encoder)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(1, cfg.prompt_embed_dim, cfg.embedding_size, cfg.embedding_size, generator=g)
    coords, labs = ops.sam_prompt_tokens(
        np.array([[10.0, 20.0], [30.0, 5.0]]), np.array([1, 0]), np.array([4.0, 6.0, 50.0, 40.0])
    )
    n = len(labs)
    plain = torch.from_numpy(ops.encode_sparse_prompts(coords, labs, weights))[None]
    padded = torch.from_numpy(ops.encode_sparse_prompts(coords, labs, weights, num_slots=8))[None]
    mask = torch.zeros(1, 8)
    mask[0, :n] = 1
    m = torch.zeros(1, 1, *ours.mask_input_size)
    has = torch.zeros(1)
    with torch.no_grad():
        lo, iou = ours.decode(emb, plain, m, has)
        lo_p, iou_p = ours.decode(emb, padded, m, has, prompt_mask=mask)
        lo_u, _ = ours.decode(emb, padded, m, has)
    torch.testing.assert_close(lo_p, lo, atol=1e-6, rtol=0)  # float32 rounding only
    torch.testing.assert_close(iou_p, iou, atol=1e-6, rtol=0)
    assert (lo_u - lo).abs().max() > 1e-4  # ~1% of these random-weight logits (|lo| ~ 0.14)


def test_mobilesam_tinyvit_variant_structure():
    """MobileSAM's TinyViT: 3x3 stride-2 stem (1024 -> 256 tokens), ImageNet head kept for strict
    loading, 64x64 output; the published MobileSAM module names and shapes."""
    from medsam_agent_rt.segmenters.modeling.tiny_vit import MOBILESAM_TINYVIT, TinyViT

    enc = TinyViT(MOBILESAM_TINYVIT).eval()
    sd = enc.state_dict()
    assert tuple(sd["patch_embed.seq.0.c.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["patch_embed.seq.2.c.weight"].shape) == (64, 32, 3, 3)
    assert tuple(sd["head.weight"].shape) == (1000, 320)
    assert tuple(sd["norm_head.weight"].shape) == (320,)
    assert tuple(sd["layers.2.blocks.5.attn.attention_biases"].shape) == (5, 196)
    assert MOBILESAM_TINYVIT.resolutions() == [256, 128, 64, 64]
