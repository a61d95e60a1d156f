"""training.repatch: a policy checkpoint's vision patch size changed (32 -> 16 px, 16 -> 32 px)
with the patch-embedding kernel resampled so a uniform patch embeds as before (NumPy oracle on the
real convolution), everything else copied, and the result loads and sees 4x the image tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from medsam_agent_rt.training import common  # noqa: E402
from medsam_agent_rt.training import tiny_qwen as tq  # noqa: E402
from medsam_agent_rt.training.repatch import repatch, resample_kernel  # noqa: E402

from medsam_agent_rt.protocol import build_messages  # noqa: E402


def _kernel(model):
    return model.model.visual.patch_embed.proj.weight.detach().numpy()


def _uniform_response(kernel: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Conv response (no bias) to a patch of one colour per input channel: sum over taps."""
    return np.einsum("oitpq,i->o", kernel, colour)


@pytest.mark.parametrize("old,new", [(32, 16), (16, 32)])
def test_repatched_checkpoint_loads_and_embeds_uniform_patches_as_before(tmp_path, old, new):
    src = tq.build_tiny_qwen(
        tmp_path / "src", "qwen3_vl", seed=3, size=tq.TinyQwenSize(vision_patch=old)
    )
    dst = repatch(src, tmp_path / "dst", new)
    a, _, enc_a = common.load_model(src)
    b, _, enc_b = common.load_model(dst)
    ka, kb = _kernel(a), _kernel(b)
    assert ka.shape[-1] == old and kb.shape[-1] == new
    colour = np.array([0.3, -0.7, 0.5], np.float32)
    np.testing.assert_allclose(
        _uniform_response(kb, colour), _uniform_response(ka, colour), rtol=1e-5, atol=1e-6
    )
    # through the model's own patch embedding (bias included) on real pixel rows
    t = a.config.vision_config.temporal_patch_size
    rows_a = torch.tensor(np.tile(np.repeat(colour, t * old * old), (2, 1)))
    rows_b = torch.tensor(np.tile(np.repeat(colour, t * new * new), (2, 1)))
    with torch.no_grad():
        ea, eb = a.model.visual.patch_embed(rows_a), b.model.visual.patch_embed(rows_b)
    torch.testing.assert_close(eb, ea, rtol=1e-4, atol=1e-5)
    # every other tensor is unchanged
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if not k.endswith("patch_embed.proj.weight"):
            torch.testing.assert_close(sb[k], sa[k], rtol=0, atol=0)
    assert json.loads((dst / "preprocessor_config.json").read_text())["patch_size"] == new
    # the same 512 view costs (old / new)^2 times the image tokens
    view = np.zeros((512, 512, 3), np.uint8)
    msgs = build_messages("liver in abdomen CT", [view], [])
    na = int(enc_a.encode(msgs).image_grid_thw.prod())
    nb = int(enc_b.encode(msgs).image_grid_thw.prod())
    assert nb * new * new == na * old * old


def test_repatch_refuses_what_it_cannot_do(tmp_path):
    w = torch.zeros(4, 3, 2, 14, 14)
    with pytest.raises(ValueError, match="only integer factors"):
        resample_kernel(w, 16)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        repatch(tmp_path, tmp_path / "out", 16)
    src = tq.build_tiny_qwen(
        tmp_path / "src", "qwen3_vl", seed=0, size=tq.TinyQwenSize(vision_patch=32)
    )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        repatch(src, tmp_path / "busy", 16)
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
