"""Our SAM2 (original layout) against transformers' Sam2Model on identical random weights:
image embeddings and masks / IoU / object scores for box, clicks, box+clicks and mask input, with
multimask and single-mask (stability fallback) selection, at 512 (MedSAM2) and 1024 (SAM2.1-T)."""

from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.segmenters.sam2.config import PRESETS  # noqa: E402
from medsam_agent_rt.segmenters.sam2.decoder import select_masks  # noqa: E402
from medsam_agent_rt.segmenters.sam2.model import Sam2Model, prompt_tokens  # noqa: E402

from .oracle import hf_config, to_hf  # noqa: E402

TOL = 1e-4


@pytest.mark.parametrize("name", list(PRESETS))
def test_layout_matches_transformers_for_every_size(name):
    """Every released size: our parameter names/shapes map 1:1 onto transformers' video model."""
    from transformers import Sam2VideoModel

    with torch.device("meta"):
        ours = Sam2Model(PRESETS[name])
        hf = Sam2VideoModel(hf_config(ours.config, video=True))
    mapped = {k: tuple(v.shape) for k, v in to_hf(ours.state_dict(), video=True).items()}
    theirs = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    assert mapped == theirs


def test_tiny_has_the_published_parameter_count():
    with torch.device("meta"):
        n = sum(p.numel() for p in Sam2Model(PRESETS["sam2.1_hiera_tiny"]).parameters())
    assert round(n / 1e6, 1) == 39.0 and 38.9e6 < n < 39.0e6  # "38.9M" in the release notes


def _cases(size: int):
    g = torch.Generator().manual_seed(3)
    k = size / 512
    m = size // 4
    return {
        "box": (None, None, [100 * k, 120 * k, 300 * k, 340 * k], None),
        "clicks": ([[200 * k, 210 * k], [50 * k, 60 * k]], [1, 0], None, None),
        "box+clicks": (
            [[200 * k, 210 * k], [50 * k, 60 * k]],
            [1, 0],
            [90 * k, 80 * k, 400 * k, 300 * k],
            None,
        ),
        "mask": ([[200 * k, 210 * k]], [1], None, torch.randn(1, 1, m, m, generator=g) * 3),
    }


def _check(pair):
    ours, hf = pair
    s = ours.config.image_size
    x = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        emb, s0, s1 = ours.encode(x)
        ref = hf.get_image_embeddings(x)
        for a, b in zip((s0, s1, emb), ref):
            assert a.shape == b.shape
            assert (a - b).abs().max().item() < TOL
        m = ours.config.mask_input_size
        for name, (pts, labs, box, mask) in _cases(s).items():
            c, lab = prompt_tokens(pts, labs, box)
            has = torch.tensor([0.0 if mask is None else 1.0])
            m_in = torch.zeros(1, 1, m, m) if mask is None else mask
            low, iou, tok, obj = ours.decode(
                emb, s0, s1, torch.tensor([c]), torch.tensor([lab]), m_in, has
            )
            for multimask in (True, False):
                om, oi, _ = select_masks(low, iou, tok, multimask)
                out = hf(
                    image_embeddings=ref,
                    input_points=torch.tensor([[c[:-1]]]),  # transformers adds the pad point
                    input_labels=torch.tensor([[lab[:-1]]]),
                    input_masks=mask,
                    multimask_output=multimask,
                )
                assert om.shape == out.pred_masks[:, 0].shape, name
                assert (om - out.pred_masks[:, 0]).abs().max().item() < TOL, name
                assert (oi - out.iou_scores[:, 0]).abs().max().item() < TOL, name
                assert (obj - out.object_score_logits[:, 0]).abs().max().item() < TOL, name


@pytest.mark.slow
def test_parity_medsam2_512(tiny512):
    _check(tiny512)


@pytest.mark.slow
def test_parity_sam21_tiny_1024(tiny1024):
    _check(tiny1024)


@pytest.mark.slow
def test_a_wrong_weight_is_detected(tiny512):
    """The comparison can fail: one perturbed decoder weight moves the masks beyond tolerance."""
    ours, hf = tiny512
    x = torch.zeros(1, 3, 512, 512)
    with torch.no_grad():
        emb, s0, s1 = ours.encode(x)
        ref = hf.get_image_embeddings(x)
        c, lab = prompt_tokens([[100.0, 100.0]], [1], None)
        w = ours.sam_mask_decoder.mask_tokens.weight
        saved = w.clone()
        w.add_(0.5)
        try:
            low, iou, tok, _ = ours.decode(
                emb,
                s0,
                s1,
                torch.tensor([c]),
                torch.tensor([lab]),
                torch.zeros(1, 1, 128, 128),
                torch.tensor([0.0]),
            )
        finally:
            w.copy_(saved)
        out = hf(
            image_embeddings=ref,
            input_points=torch.tensor([[c[:-1]]]),
            input_labels=torch.tensor([[lab[:-1]]]),
        )
        assert (low[:, 1:] - out.pred_masks[:, 0]).abs().max().item() > 1e-2
    assert re.match(r"medsam2_512", ours.config.name)
