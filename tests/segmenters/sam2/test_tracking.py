"""SAM2 memory: memory attention (RoPE, object-pointer tokens excluded from RoPE), the memory
encoder and the pointer temporal encoding against transformers' Sam2VideoModel modules on
identical random weights (MedSAM2 512 config); the tracker's memory bank stays bounded."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.segmenters.sam2.config import preset  # noqa: E402
from medsam_agent_rt.segmenters.sam2.hiera import sine_position_encoding  # noqa: E402
from medsam_agent_rt.segmenters.sam2.model import Sam2Model  # noqa: E402
from medsam_agent_rt.segmenters.sam2.tracking import Sam2Tracker, sine_1d  # noqa: E402

from .oracle import hf_model, randomize  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def video_pair():
    torch.manual_seed(0)
    ours = randomize(Sam2Model(preset("medsam2_512")), seed=7).eval()
    return ours, hf_model(ours, video=True)


@pytest.mark.slow
def test_memory_attention_and_encoder_match_transformers(video_pair):
    ours, hf = video_pair
    g = torch.Generator().manual_seed(0)
    hw, frames, ptr_tokens = 32 * 32, 3, 4 * 5  # 5 pointers of 4 tokens
    curr = torch.randn(1, hw, 256, generator=g)
    curr_pos = sine_position_encoding(256, 32, 32).flatten(2).transpose(1, 2)
    memory = torch.randn(1, frames * hw + ptr_tokens, 64, generator=g)
    memory_pos = torch.randn(1, frames * hw + ptr_tokens, 64, generator=g)
    with torch.no_grad():
        a = ours.memory_attention(curr, curr_pos, memory, memory_pos, ptr_tokens)
        b = hf.memory_attention(
            current_vision_features=curr.transpose(0, 1),
            memory=memory.transpose(0, 1),
            current_vision_position_embeddings=curr_pos.transpose(0, 1),
            memory_posision_embeddings=memory_pos.transpose(0, 1),
            num_object_pointer_tokens=ptr_tokens,
        )
        assert (a - b.reshape(a.shape)).abs().max().item() < TOL
        # the comparison can fail: the last memory frame without RoPE gives another result
        c = ours.memory_attention(curr, curr_pos, memory, memory_pos, ptr_tokens + hw)
        assert (a - c).abs().max().item() > 1e-4
        pix = torch.randn(1, 256, 32, 32, generator=g)
        mask = torch.randn(1, 1, 512, 512, generator=g) * 10
        feats = ours.memory_encoder(pix, mask)
        hf_feats, hf_pos = hf.memory_encoder(pix, mask)
        assert (feats - hf_feats).abs().max().item() < TOL
        assert (sine_position_encoding(64, 32, 32) - hf_pos).abs().max().item() < 1e-5
    from transformers.models.sam2_video.modeling_sam2_video import get_1d_sine_pe

    pos = torch.tensor([3.0, 1.0, 2.0, 7.0]) / 15
    assert (sine_1d(pos, 256) - get_1d_sine_pe(pos, 256)).abs().max().item() < 1e-6


@pytest.mark.slow
def test_tracker_memory_is_bounded(video_pair):
    from medsam_agent_rt.data.sequences import phantom_video

    ours, _ = video_pair
    vid = phantom_video(0, 4, 64)
    tr = Sam2Tracker(ours)
    tr.start(vid.frames[0], vid.masks["polyp"][0])
    sizes = []
    for i in range(9):
        step = tr.step(vid.frames[1 + i % 3])
        assert step.mask.shape == (64, 64) and 0.0 <= step.score <= 1.0
        sizes.append((tr.memory_frames(), len(tr.ptrs) + 1))
        mem, _, n_ptr = tr._memory()
        assert mem.shape[1] == tr.memory_frames() * 32 * 32 + n_ptr
    assert sizes[-1] == (7, 10) and max(s[0] for s in sizes) == 7  # 1 conditioning + 6 recent
    with pytest.raises(ValueError, match="empty"):
        tr.start(vid.frames[0], np.zeros((64, 64), bool))
