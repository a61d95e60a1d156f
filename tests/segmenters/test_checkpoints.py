"""Checkpoint loading: family recognition for every family, strict keys, and clear errors for
corrupt, truncated, unknown or mismatching files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.segmenters.checkpoints import (  # noqa: E402
    CheckpointError,
    infer_config,
    load_checkpoint,
)
from medsam_agent_rt.segmenters.modeling.image_encoder import VIT_B, VIT_H, VIT_L  # noqa: E402
from medsam_agent_rt.segmenters.modeling.sam import SamConfig, SamModel  # noqa: E402
from medsam_agent_rt.segmenters.modeling.tiny_vit import (  # noqa: E402
    LITEMEDSAM_TINYVIT,
    MOBILESAM_TINYVIT,
)


def _meta_state(cfg: SamConfig) -> dict:
    """The state dict of a full-size model without allocating it (meta tensors: shapes only)."""
    with torch.device("meta"):
        return SamModel(cfg).state_dict()


@pytest.mark.parametrize(
    "enc, variant, kind",
    [
        (VIT_B, "vit_b", "vit"),
        (VIT_L, "vit_l", "vit"),
        (VIT_H, "vit_h", "vit"),
        (LITEMEDSAM_TINYVIT, "tinyvit_5m", "tinyvit-lite"),
        (MOBILESAM_TINYVIT, "tinyvit_5m", "tinyvit-mobile"),
    ],
)
def test_released_architectures_are_read_from_shapes(enc, variant, kind):
    cfg = SamConfig(encoder=enc)
    got, v, k = infer_config(_meta_state(cfg))
    assert (v, k) == (variant, kind)
    assert got == cfg  # every hyper-parameter recovered (window, global blocks, heads, stem...)


def _small_vit_sam(tiny_configs):
    # decoder heads are invisible in shapes: use SAM's 8 so the file round-trips unaided
    return dataclasses.replace(tiny_configs.vit, decoder_heads=8)


def _save(model, path):
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def vit_model(tiny_configs):
    torch.manual_seed(0)
    return SamModel(_small_vit_sam(tiny_configs)).eval()


@pytest.mark.parametrize(
    "name, family, how",
    [
        ("sam_vit_tiny.pth", "sam", "filename"),
        ("medsam_vit_tiny.pth", "medsam", "filename"),
        ("MedSAM-finetune.pt", "medsam", "filename"),
    ],
)
def test_vit_family_from_file_name(tmp_path, vit_model, name, family, how):
    loaded = load_checkpoint(_save(vit_model, tmp_path / name))
    assert (loaded.family.name, loaded.identified_by) == (family, how)
    assert loaded.family.preprocessing.input_size == 64  # adapted to the model
    assert loaded.family.preprocessing.normalize == ("minmax" if family == "medsam" else "mean_std")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.encode(x), vit_model.encode(x), rtol=0, atol=0)


def test_ambiguous_vit_needs_family(tmp_path, vit_model):
    path = _save(vit_model, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="family='sam' or family='medsam'"):
        load_checkpoint(path)
    assert load_checkpoint(path, family="medsam").identified_by == "family="
    with pytest.raises(CheckpointError, match="does not fit this checkpoint's encoder"):
        load_checkpoint(path, family="litemedsam")
    with pytest.raises(ValueError, match="family must be one of"):
        load_checkpoint(path, family="sam3")
    with pytest.raises(CheckpointError, match="does not fit this checkpoint's encoder"):
        load_checkpoint(path, family="sam2")  # a real family now, but a Hiera one


def test_safetensors_checkpoint(tmp_path, vit_model):
    from medsam_agent_rt.segmenters.safetensors_np import save_file

    path = tmp_path / "sam_vit_tiny.safetensors"
    save_file({k: v.numpy() for k, v in vit_model.state_dict().items()}, path)
    assert load_checkpoint(path).family.name == "sam"


def test_tinyvit_families_from_keys(tmp_path, tiny_configs):
    lite = SamModel(tiny_configs.tinyvit)
    loaded = load_checkpoint(_save(lite, tmp_path / "anything.pth"))
    assert (loaded.family.name, loaded.identified_by) == ("litemedsam", "keys")
    assert loaded.family.preprocessing.input_size == 256
    mobile_cfg = dataclasses.replace(
        tiny_configs.tinyvit,
        encoder=dataclasses.replace(
            tiny_configs.tinyvit.encoder, img_size=1024, stem="mobile", num_classes=10
        ),
    )
    loaded = load_checkpoint(_save(SamModel(mobile_cfg), tmp_path / "x.pt"))
    assert (loaded.family.name, loaded.identified_by) == ("mobilesam", "keys")
    assert loaded.family.preprocessing.input_size == 1024
    assert loaded.family.preprocessing.normalize == "mean_std"


def test_official_litemedsam_file_by_sha256(litemedsam_checkpoint, embedded_litemedsam):
    loaded = load_checkpoint(litemedsam_checkpoint)
    assert (loaded.family.name, loaded.identified_by, loaded.variant) == (
        "litemedsam",
        "sha256",
        "tinyvit_5m",
    )
    a, b = loaded.model.state_dict(), embedded_litemedsam.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_wrapper_is_unwrapped(tmp_path, vit_model):
    path = tmp_path / "sam_vit_ckpt.pth"
    torch.save({"model": vit_model.state_dict(), "epoch": 3}, path)
    assert load_checkpoint(path).family.name == "sam"


def test_corrupt_and_truncated_files(tmp_path, vit_model):
    good = _save(vit_model, tmp_path / "sam_vit_a.pth")
    data = good.read_bytes()
    (tmp_path / "sam_vit_trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "sam_vit_trunc.pth")
    (tmp_path / "sam_vit_junk.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "sam_vit_junk.pth")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pth")


def test_pickled_objects_are_refused(tmp_path):
    """weights_only=True: a checkpoint that needs arbitrary code to unpickle is rejected."""
    path = tmp_path / "sam_vit_evil.pth"
    import argparse

    torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


def test_unknown_and_mismatching_state_dicts(tmp_path, vit_model):
    torch.save({"backbone.weight": torch.zeros(3), "head.bias": torch.zeros(2)}, tmp_path / "u.pth")
    with pytest.raises(
        CheckpointError, match="not a SAM-family checkpoint.*first keys are: backbone"
    ):
        load_checkpoint(tmp_path / "u.pth")
    sd = vit_model.state_dict()
    extra = dict(sd, **{"mask_decoder.extra.weight": torch.zeros(2)})
    del extra["mask_decoder.iou_token.weight"]
    torch.save(extra, tmp_path / "sam_vit_x.pth")
    with pytest.raises(
        CheckpointError,
        match=r"assumed sam, vit_32x3.*1 missing keys \(first: mask_decoder.iou_token.weight\).*"
        r"1 unexpected keys \(first: mask_decoder.extra.weight\)",
    ):
        load_checkpoint(tmp_path / "sam_vit_x.pth")
    partial = {k: v for k, v in sd.items() if not k.startswith("prompt_encoder.")}
    torch.save(partial, tmp_path / "sam_vit_p.pth")
    with pytest.raises(CheckpointError, match="incomplete SAM-family checkpoint, missing key"):
        load_checkpoint(tmp_path / "sam_vit_p.pth")


def test_truncated_safetensors(tmp_path, vit_model):
    from medsam_agent_rt.segmenters.safetensors_np import save_file

    path = tmp_path / "sam_vit_t.safetensors"
    save_file({k: v.numpy() for k, v in vit_model.state_dict().items()}, path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
