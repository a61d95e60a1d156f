"""Interpolate two tool checkpoints' weights: ``(1 - w) * A + w * B``.

    python -m medsam_agent_rt.training.tool_average A.pt B.pt --weight 0.3 --out C.pt

A and B are tool weights of one architecture: ``tool_finetune`` checkpoints (``step-N.pt``, a
``last.pt``'s trainable part) or ``.safetensors`` (a shipped tool, LiteMedSAM itself), typically
a run and a continuation of it, or the base model and a fine-tune of it (interpolating weights
only makes sense between models that share a starting point).
C has ``step-N.pt``'s layout, so ``tool_eval --checkpoint C`` and ``tool_ship C`` read it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def load_tool_state(path: Path) -> dict:
    """{name: tensor} of the prompt_encoder.* / mask_decoder.* tensors of a ``step-N.pt``, a
    ``last.pt`` (its trainable part) or a ``.safetensors`` (a shipped tool, or LiteMedSAM's full
    checkpoint: its image encoder is left out, so the base model can be one end)."""
    from medsam_agent_rt.segmenters.checkpoints import read_state_dict

    tool = {
        k: v
        for k, v in read_state_dict(path).items()
        if k.startswith(("prompt_encoder.", "mask_decoder."))
    }
    if not tool:
        raise ValueError(f"{path}: no prompt_encoder.* / mask_decoder.* tensors (not a tool)")
    return tool


def interpolate(a: dict, b: dict, weight: float) -> dict:
    """``(1 - weight) * a + weight * b`` per tensor (float math in float32, each kept in a's
    dtype); non-float tensors must be equal. Raises ValueError on differing names or shapes."""
    import torch

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"--weight must lie in [0, 1] (got {weight})")
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())
        raise ValueError(f"the checkpoints hold different tensors, e.g. {only[:3]}")
    out = {}
    for name, ta in a.items():
        tb = b[name]
        if ta.shape != tb.shape:
            raise ValueError(f"{name}: shape {tuple(ta.shape)} vs {tuple(tb.shape)}")
        if ta.is_floating_point():
            mixed = ta.float() * (1.0 - weight) + tb.float() * weight
            out[name] = mixed.to(ta.dtype)
        elif torch.equal(ta, tb):
            out[name] = ta.clone()
        else:
            raise ValueError(f"{name}: non-float tensors differ; they cannot be interpolated")
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description="interpolate two tool checkpoints' weights")
    ap.add_argument("a", type=Path, help="checkpoint A (weight 1 - w)")
    ap.add_argument("b", type=Path, help="checkpoint B (weight w)")
    ap.add_argument("--weight", type=float, required=True, help="w, B's share in [0, 1]")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    mixed = interpolate(load_tool_state(args.a), load_tool_state(args.b), args.weight)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(mixed, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
