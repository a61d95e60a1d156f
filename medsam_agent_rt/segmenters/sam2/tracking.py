"""SAM2's memory tracker (SAM2Base.track_step at inference, one object): a frame's features are
conditioned on a bounded memory bank by memory attention, SAM heads predict the mask, and the
memory encoder turns the prediction into that frame's memory.

Memory (bounded, as released): the conditioning frame (the frame given with a mask) plus the 6
most recent tracked frames (``num_maskmem`` = 7), each a (mem_dim=64, s, s) map with its sine
position encoding and a temporal encoding ``maskmem_tpos_enc``; up to 16 object pointers (the
conditioning frame's, then the most recent tracked frames'), each 256-d split into 4 tokens of
64 with a projected 1-D sine encoding of the frame distance. Tracking frames ask the decoder for
3 masks and keep the best IoU; an object score <= 0 means "not visible" (mask -1024, the
``no_obj_ptr`` pointer, ``no_obj_embed_spatial`` added to the memory).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from medsam_agent_rt.propagation.tracker import TrackStep, _rgb
from medsam_agent_rt.segmenters.sam2.hiera import sine_position_encoding
from medsam_agent_rt.segmenters.sam2.model import Sam2Model
from medsam_agent_rt.segmenters.sam2.preprocess import preprocess, upsample_logits

NO_OBJ_SCORE = -1024.0


def sine_1d(pos: Tensor, dim: int) -> Tensor:
    """(N,) positions -> (N, dim) [sin, cos] encoding (SAM2's get_1d_sine_pe)."""
    half = dim // 2
    t = torch.arange(half, dtype=torch.float32, device=pos.device)
    t = 10000.0 ** (2 * torch.div(t, 2, rounding_mode="floor") / half)
    x = pos.float()[:, None] / t
    return torch.cat([x.sin(), x.cos()], -1)


def encode_memory(
    model: Sam2Model, pix: Tensor, high_res: Tensor, obj_score: Tensor, binarize: bool
):
    """pix (1, 256, s, s) raw features, high_res (1, 1, S, S) logits -> (memory (1, 64, s, s),
    its position encoding (1, 64, s, s))."""
    m = (high_res > 0).float() if binarize else torch.sigmoid(high_res)
    m = m * model.config.sigmoid_scale_for_mem_enc + model.config.sigmoid_bias_for_mem_enc
    feats = model.memory_encoder(pix, m)
    absent = (obj_score <= 0).float().view(-1, 1, 1, 1)
    feats = feats + absent * model.no_obj_embed_spatial.view(1, -1, 1, 1)
    pos = sine_position_encoding(feats.shape[1], feats.shape[2], feats.shape[3], feats.device)
    return feats, pos


def sam_heads(
    model: Sam2Model,
    embed: Tensor,
    s0: Tensor,
    s1: Tensor,
    mask_input: Tensor | None,
    multimask: bool,
):
    """No point prompts (one padding point). Returns (low (1,1,s4,s4), high (1,1,S,S), iou,
    object pointer (1, 256), object score (1, 1))."""
    from medsam_agent_rt.segmenters.sam2.decoder import select_masks

    m = model.config.mask_input_size
    coords, labels = (
        torch.zeros(1, 1, 2, device=embed.device),
        -torch.ones(1, 1, dtype=torch.long, device=embed.device),
    )
    has = torch.tensor([0.0 if mask_input is None else 1.0], device=embed.device)
    mi = torch.zeros(1, 1, m, m, device=embed.device) if mask_input is None else mask_input
    low4, iou4, tok4, obj = model.decode(embed, s0, s1, coords, labels, mi, has)
    low, iou, tok = select_masks(low4, iou4, tok4, multimask)
    if multimask:
        best = int(iou[0].argmax())
        low, iou, tok = low[:, best : best + 1], iou[:, best : best + 1], tok[:, best]
    else:
        tok = tok[:, 0]
    visible = obj > 0
    low = torch.where(visible[..., None, None], low, torch.full_like(low, NO_OBJ_SCORE))
    s = model.config.image_size
    high = F.interpolate(low, (s, s), mode="bilinear", align_corners=False)
    ptr = model.obj_ptr_proj(tok)
    lam = visible.float()
    ptr = lam * ptr + (1 - lam) * model.no_obj_ptr
    return low, high, iou, ptr, obj


class Sam2Tracker:
    """Tracker protocol over a Sam2Model: ``start(frame, mask)`` makes the conditioning frame
    (mask used as output, SAM2's ``_use_mask_as_output``); each ``step(frame)`` tracks one frame.
    Memory never exceeds 1 + (num_maskmem - 1) frames and max_obj_ptrs pointers."""

    def __init__(self, model: Sam2Model, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        cfg = model.config
        self.recent: deque = deque(maxlen=cfg.num_maskmem - 1)  # (memory, pos, ptr) newest last
        self.ptrs: deque = deque(maxlen=cfg.max_obj_ptrs - 1)
        self.cond: tuple[Tensor, Tensor, Tensor] | None = None
        self.frames_since_cond = 0
        self._size: tuple[int, int] | None = None

    def _features(self, frame: np.ndarray):
        x = torch.from_numpy(preprocess(_rgb(frame), self.model.config.image_size)).to(self.device)
        return self.model.backbone(x)

    @torch.inference_mode()
    def start(self, frame: np.ndarray, mask: np.ndarray) -> None:
        mask = np.asarray(mask, bool)
        if mask.shape != np.asarray(frame).shape[:2]:
            raise ValueError(
                f"mask must be (H, W) = {np.asarray(frame).shape[:2]}, got {mask.shape}"
            )
        if not mask.any():
            raise ValueError("start(frame, mask): the mask is empty; nothing to track")
        model, s = self.model, self.model.config.image_size
        pix, s0, s1 = self._features(frame)
        m = torch.from_numpy(mask.astype(np.float32))[None, None].to(self.device)
        m = (
            F.interpolate(m, (s, s), mode="bilinear", align_corners=False, antialias=True) >= 0.5
        ).float()
        high = m * 20.0 - 10.0
        embed = pix + model.no_mem_embed.view(1, -1, 1, 1)
        _, _, _, ptr, _ = sam_heads(model, embed, s0, s1, model.mask_downsample(m), multimask=False)
        obj = torch.full((1, 1), 10.0, device=self.device)
        feats, pos = encode_memory(model, pix, high, obj, binarize=False)
        self.cond = (feats, pos, ptr)
        self.recent.clear()
        self.ptrs.clear()
        self._size = mask.shape

    def _memory(self) -> tuple[Tensor, Tensor, int]:
        """(memory (1, M, 64), memory pos (1, M, 64), number of pointer tokens)."""
        model = self.model
        tpos = model.maskmem_tpos_enc  # (7, 1, 1, 64): index t_rel - 1; the last for cond
        feats, pos, _ = self.cond
        mems = [feats.flatten(2).transpose(1, 2)]
        poss = [pos.flatten(2).transpose(1, 2) + tpos[-1].view(1, 1, -1)]
        n = len(self.recent)
        for i, (f, p, _) in enumerate(self.recent):  # oldest first, t_rel = n - i
            mems.append(f.flatten(2).transpose(1, 2))
            poss.append(p.flatten(2).transpose(1, 2) + tpos[n - i - 1].view(1, 1, -1))
        ptrs = [self.cond[2]] + [p for p in reversed(self.ptrs)]  # cond, then newest first
        offsets = [self.frames_since_cond] + list(range(1, len(self.ptrs) + 1))
        ptr = torch.cat(ptrs, 0)  # (P, 256)
        t = sine_1d(
            torch.tensor(offsets, device=ptr.device) / (model.config.max_obj_ptrs - 1), ptr.shape[1]
        )
        ppos = model.obj_ptr_tpos_proj(t)  # (P, 64)
        mem_dim = model.config.mem_dim
        split = ptr.shape[1] // mem_dim
        ptr_tok = ptr.reshape(-1, split, mem_dim).reshape(1, -1, mem_dim)
        ppos = ppos.repeat_interleave(split, 0)[None]
        return torch.cat(mems + [ptr_tok], 1), torch.cat(poss + [ppos], 1), ptr_tok.shape[1]

    @torch.inference_mode()
    def step(self, frame: np.ndarray) -> TrackStep:
        if self.cond is None or self._size is None:
            raise RuntimeError("step() before start(frame, mask)")
        model = self.model
        if np.asarray(frame).shape[:2] != self._size:
            raise ValueError(
                f"frame must be {self._size} like the start frame, got {np.asarray(frame).shape[:2]}"
            )
        pix, s0, s1 = self._features(frame)
        self.frames_since_cond += 1
        b, c, h, w = pix.shape
        curr = pix.flatten(2).transpose(1, 2)
        curr_pos = sine_position_encoding(c, h, w, pix.device).flatten(2).transpose(1, 2)
        memory, memory_pos, n_ptr = self._memory()
        cond = model.memory_attention(curr, curr_pos, memory, memory_pos, n_ptr)
        embed = cond.transpose(1, 2).reshape(b, c, h, w)
        low, high, iou, ptr, obj = sam_heads(model, embed, s0, s1, None, multimask=True)
        feats, pos = encode_memory(model, pix, high, obj, binarize=False)
        self.recent.append((feats, pos, ptr))
        self.ptrs.append(ptr)
        mask = upsample_logits(low[0].float().cpu().numpy(), self._size)[0] > 0
        score = float(iou[0, 0]) if float(obj[0, 0]) > 0 else 0.0
        return TrackStep(mask, score)

    def memory_frames(self) -> int:
        """Memory frames held (conditioning frame included)."""
        return (self.cond is not None) + len(self.recent)


def build_tracker(model: Any, device: str = "cpu") -> Sam2Tracker:
    return Sam2Tracker(model, device)
