"""The shipped litemedsam-click weights: strict load over LiteMedSAM's image encoder, and a
recorded click-only episode (the family's default strategy) reproduced exactly.

Re-record after shipping new weights (and say why in the commit):
    .venv/bin/python tests/segmenters/test_litemedsam_click.py --record
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

RECORD = Path(__file__).with_name("data") / "litemedsam_click_episode.json"


def _steps(steps, gt) -> list[dict]:
    from medsam_agent_rt import ops

    return [
        {
            "mask_sha256": hashlib.sha256(np.packbits(s.mask).tobytes()).hexdigest(),
            "area": int(s.mask.sum()),
            "score": float(s.score),
            "dice": float(ops.dice(s.mask, gt)),
            "frame": None if s.frame is None else [s.frame.x0, s.frame.y0, s.frame.w, s.frame.h],
        }
        for s in steps
    ]


def run_recorded_episode(seg) -> dict:
    """A CT phantom (seed 7, 256 px), its first target: 4 ``ops.next_click`` clicks (the first on
    the empty mask: the clicker policy's episode), every one kept, the family's default strategy.
    Then ``zoom_episode``: the same phantom at 512 px, its smallest target, the GT box and 3
    corrective clicks (zoomed in by the default strategy). Per step: mask SHA-256, mask area,
    score, Dice, the zoom crop."""
    from medsam_agent_rt import ops
    from medsam_agent_rt.data.phantoms import generate
    from medsam_agent_rt.policies._gt import gt_box
    from medsam_agent_rt.segmenters import PromptChain

    ph = generate("CT", 7, 256)
    target, gt = next(iter(ph.masks.items()))
    ep = PromptChain(seg, ph.image)
    clicked: list[list[int]] = []
    steps = []
    for _ in range(4):
        c = ops.next_click(ep.mask, gt, np.asarray(clicked) if clicked else None)
        clicked.append([c.x, c.y])
        steps.append(ep.add_point((c.x, c.y), c.positive))
    big = generate("CT", 7, 512)
    small, small_gt = min(big.masks.items(), key=lambda kv: int(kv[1].sum()))
    zoom = PromptChain(seg, big.image)
    zsteps = [zoom.add_box(gt_box(small_gt))]
    for _ in range(3):
        c = ops.next_click(zoom.mask, small_gt, None)
        zsteps.append(zoom.add_point((c.x, c.y), c.positive))
    return {
        "target": target,
        "strategy": ep.strategy,
        "steps": _steps(steps, gt),
        "zoom_episode": {"target": small, "steps": _steps(zsteps, small_gt)},
    }


@pytest.fixture(scope="module")
def click_seg():
    torch = pytest.importorskip("torch")
    from medsam_agent_rt.segmenters import build_segmenter

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_segmenter("litemedsam-click", backend="torch")  # the weights themselves
    torch.set_num_threads(before)


def test_weights_load_strictly_over_litemedsam_encoder(click_seg):
    torch = pytest.importorskip("torch")
    from medsam_agent_rt.assets import lite_medsam_click_path
    from medsam_agent_rt.segmenters.checkpoints import load_embedded_litemedsam, read_state_dict

    shipped = read_state_dict(lite_medsam_click_path())
    base = load_embedded_litemedsam().state_dict()
    assert set(shipped) == {k for k in base if k.startswith(("prompt_encoder.", "mask_decoder."))}
    model = click_seg.model.state_dict()
    for k, v in base.items():
        if k.startswith("image_encoder."):
            assert torch.equal(model[k], v), k  # the frozen encoder is LiteMedSAM's
        else:
            assert torch.equal(model[k], shipped[k]), k
    changed = [k for k in shipped if not torch.equal(shipped[k], base[k])]
    assert "mask_decoder.iou_token.weight" in changed  # actually fine-tuned
    assert click_seg.family == "litemedsam-click"


def test_export_and_family_defaults(click_seg):
    torch = pytest.importorskip("torch")
    from medsam_agent_rt.commands.export import _load
    from medsam_agent_rt.segmenters import FAMILIES, build_segmenter

    model, fam, variant, source = _load("litemedsam-click", None)
    assert fam.name == "litemedsam-click" and variant == "tinyvit_5m"
    assert "lite_medsam_click.safetensors" in source
    assert fam.preprocessing == FAMILIES["litemedsam"].preprocessing  # same encoder input
    for k, v in model.state_dict().items():
        assert torch.equal(v, click_seg.model.state_dict()[k]), k
    with pytest.raises(ValueError, match="LiteMedSAM family 'litemedsam-click'"):
        build_segmenter("litemedsam-click", family="litemedsam")


def test_recorded_episode_is_reproduced(click_seg):
    want = json.loads(RECORD.read_text())
    got = run_recorded_episode(click_seg)
    assert got["target"] == want["target"] and got["strategy"] == want["strategy"]
    zoomed = got["zoom_episode"]
    assert zoomed["target"] == want["zoom_episode"]["target"]
    for g, w in zip(
        got["steps"] + zoomed["steps"], want["steps"] + want["zoom_episode"]["steps"], strict=True
    ):
        assert g["mask_sha256"] == w["mask_sha256"] and g["area"] == w["area"]
        assert g["score"] == pytest.approx(w["score"], rel=1e-5, abs=1e-6)
        assert g["frame"] == w["frame"]
    # the tool listens to corrections: they raise Dice over the first click / the box
    assert got["steps"][-1]["dice"] > got["steps"][0]["dice"]
    assert zoomed["steps"][-1]["dice"] > zoomed["steps"][0]["dice"]
    # the default strategy zooms the corrections of a small target in, never the box
    assert zoomed["steps"][0]["frame"] is None
    assert all(s["frame"] is not None for s in zoomed["steps"][1:])


if __name__ == "__main__":
    if "--record" in sys.argv:
        import torch

        from medsam_agent_rt.segmenters import build_segmenter

        torch.set_num_threads(1)
        RECORD.parent.mkdir(exist_ok=True)
        rec = run_recorded_episode(build_segmenter("litemedsam-click", backend="torch"))
        RECORD.write_text(json.dumps(rec, indent=1) + "\n")
        print(json.dumps(rec, indent=1))
