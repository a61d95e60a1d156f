"""The oracle fixtures load the official code without torchvision/timm and build real models."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")


def test_sam_oracle_builds_a_prompt_encoder(sam_oracle):
    enc = sam_oracle.PromptEncoder(
        embed_dim=32, image_embedding_size=(8, 8), input_image_size=(128, 128), mask_in_chans=4
    )
    sparse, dense = enc(points=None, boxes=torch.tensor([[1.0, 2.0, 30.0, 40.0]]), masks=None)
    assert sparse.shape == (1, 2, 32) and dense.shape == (1, 32, 8, 8)
    assert "torchvision" not in sys.modules


def test_tinyvit_oracle_and_official_checkpoint(tinyvit_oracle, litemedsam_checkpoint):
    state = torch.load(litemedsam_checkpoint, map_location="cpu", weights_only=True)
    assert any(k.startswith("image_encoder.") for k in state)
    assert hasattr(tinyvit_oracle, "TinyViT")
    assert "timm" not in sys.modules and "torchvision" not in sys.modules
