"""Fixtures of the server tests: one real LiteMedSAM shared by every app (as in production),
an in-process client per app (httpx over ASGI), demo images with their GT masks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install '.[server]')")
pytest.importorskip("httpx", reason="httpx is not installed (the dev extra)")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _client (importlib mode)


@pytest.fixture(scope="session")
def segmenter():
    """A tiny SAM (the real architecture: ViT encoder, prompt encoder, mask decoder; seeded
    random weights; ~20 ms per encode on a loaded CPU): the API tests compare the server's
    masks with in-process runs of the same model, so trained weights add time, not strength."""
    torch = pytest.importorskip("torch")
    from medsam_agent_rt.segmenters.modeling.image_encoder import ViTConfig
    from medsam_agent_rt.segmenters.modeling.sam import SamConfig, SamModel
    from medsam_agent_rt.segmenters.torch_backend import TorchSegmenter

    vit = ViTConfig(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, out_chans=32,
                    window_size=0, global_attn_indexes=())  # fmt: skip
    config = SamConfig(encoder=vit, prompt_embed_dim=32, mask_in_chans=8, decoder_depth=1,
                       decoder_heads=2, decoder_mlp_dim=32, iou_head_hidden_dim=16)  # fmt: skip
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread avoids oversubscription stalls
    seg = TorchSegmenter(SamModel(config), "sam", "cpu", 32, "tiny-sam")
    yield seg
    seg.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def litemedsam():
    """The embedded LiteMedSAM (real weights): for the browser test's figure."""
    pytest.importorskip("torch")
    from medsam_agent_rt.segmenters import build_segmenter

    seg = build_segmenter("litemedsam")
    yield seg
    seg.close()


@pytest.fixture(scope="session")
def demo_pairs(demo_dir: Path) -> list[tuple[Path, Path]]:
    """(image, first GT mask) of each demo image, in name order."""
    pairs = []
    for img in sorted((demo_dir / "demo").glob("*.png")):
        masks = sorted((demo_dir / "demo_mask").glob(img.stem.split("_")[0] + "_*.png"))
        if masks:
            pairs.append((img, masks[0]))
    return pairs


@pytest.fixture(scope="session")
def pydicom_ct() -> Path:
    """pydicom's bundled CT_small.dcm (read in place, never downloaded)."""
    pytest.importorskip("pydicom")
    import importlib.util

    spec = importlib.util.find_spec("pydicom")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "test_files" / "CT_small.dcm"
    if not path.is_file():
        pytest.skip("pydicom's bundled test files are not installed")
    return path
