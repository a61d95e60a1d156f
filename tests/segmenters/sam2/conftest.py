"""SAM2 fixtures: random-weight models of the real sizes, saved as checkpoints in the ORIGINAL
layout (flat state dict under "model"), and the transformers oracle with the same weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from medsam_agent_rt.segmenters.sam2.config import preset  # noqa: E402
from medsam_agent_rt.segmenters.sam2.model import Sam2Model  # noqa: E402

from .oracle import hf_model, randomize  # noqa: E402


@pytest.fixture(scope="session")
def tiny512():
    """(ours, transformers Sam2Model) of the MedSAM2 512 config, identical random weights."""
    torch.manual_seed(0)
    ours = randomize(Sam2Model(preset("medsam2_512")), seed=1).eval()
    return ours, hf_model(ours)


@pytest.fixture(scope="session")
def tiny1024():
    torch.manual_seed(0)
    ours = randomize(Sam2Model(preset("sam2.1_hiera_tiny")), seed=2).eval()
    return ours, hf_model(ours)


@pytest.fixture(scope="session")
def medsam2_file(tmp_path_factory, tiny512):
    """A MedSAM2-named checkpoint (Hiera-T weights) as the official .pt: {"model": state}."""
    path = tmp_path_factory.mktemp("sam2") / "MedSAM2_latest.pt"
    torch.save({"model": tiny512[0].state_dict()}, path)
    return path
