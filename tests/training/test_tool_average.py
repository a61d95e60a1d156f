"""Weight interpolation of two tool checkpoints (training.tool_average) against a NumPy oracle."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.training import tool_average  # noqa: E402
from medsam_agent_rt.training.tool_finetune import load_tool_weights, trainable_state  # noqa: E402

from medsam_agent_rt.segmenters.safetensors_np import save_file  # noqa: E402
from tests.training.test_tool_finetune import tiny_model  # noqa: E402


def _two_checkpoints(tmp_path):
    """A as a step-N.pt, B as a last.pt (trainable + optimizer), from two differently seeded
    tiny models; returns their paths and NumPy copies of the tool tensors."""
    a, b = trainable_state(tiny_model(0)), trainable_state(tiny_model(1))
    pa, pb = tmp_path / "step-10.pt", tmp_path / "last.pt"
    torch.save(a, pa)
    torch.save({"trainable": b, "optimizer": {"state": {}}}, pb)
    return (
        pa,
        pb,
        {k: v.numpy().astype(np.float64) for k, v in a.items()},
        {k: v.numpy().astype(np.float64) for k, v in b.items()},
    )


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_interpolation_matches_numpy_and_loads_as_tool(tmp_path, weight):
    pa, pb, na, nb = _two_checkpoints(tmp_path)
    out = tmp_path / "mix.pt"
    assert tool_average.main([str(pa), str(pb), "--weight", str(weight), "--out", str(out)]) == 0
    mixed = torch.load(out, weights_only=True)
    assert mixed.keys() == na.keys()
    for k, v in mixed.items():
        want = (1 - weight) * na[k] + weight * nb[k]
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-6, atol=1e-6, err_msg=k)
    assert any(not np.allclose(na[k], nb[k]) for k in na)  # the two ends really differ
    model = tiny_model(2)
    load_tool_weights(model, out)  # the result is a step-N.pt the tool tools read
    got = model.state_dict()
    for k, v in mixed.items():
        assert torch.equal(got[k], v)


def test_safetensors_end_keeps_only_tool_tensors(tmp_path):
    """A full SAM checkpoint (image encoder included) can be one end: only its tool tensors count."""
    full = {k: v.numpy() for k, v in tiny_model(3).state_dict().items()}
    assert any(k.startswith("image_encoder.") for k in full)
    st = tmp_path / "base.safetensors"
    save_file(full, st)
    state = tool_average.load_tool_state(st)
    assert state and all(k.startswith(("prompt_encoder.", "mask_decoder.")) for k in state)
    pa, _, na, _ = _two_checkpoints(tmp_path)
    mixed = tool_average.interpolate(tool_average.load_tool_state(pa), state, 0.5)
    k = next(iter(na))
    np.testing.assert_allclose(mixed[k].numpy(), 0.5 * na[k] + 0.5 * full[k], rtol=1e-6, atol=1e-7)


def test_bad_inputs_are_named(tmp_path):
    pa, pb, _, _ = _two_checkpoints(tmp_path)
    a, b = tool_average.load_tool_state(pa), tool_average.load_tool_state(pb)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tool_average.interpolate(a, b, 1.5)
    k = next(iter(b))
    with pytest.raises(ValueError, match="different tensors"):
        tool_average.interpolate(a, {n: v for n, v in b.items() if n != k}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        tool_average.interpolate(a, {**b, k: torch.zeros(3, 3)}, 0.5)
    with pytest.raises(FileNotFoundError, match="not found"):
        tool_average.load_tool_state(tmp_path / "missing.pt")
    junk = tmp_path / "other.pt"
    torch.save({"policy.weight": torch.zeros(2)}, junk)
    with pytest.raises(ValueError, match="not a tool"):
        tool_average.load_tool_state(junk)
