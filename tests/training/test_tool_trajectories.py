"""The trajectory generator with the click-aware tool (litemedsam-click): the expert's
corrections pass the IoU-gain acceptance, so the SFT conversations contain refinement turns."""

from __future__ import annotations

import pytest
from medsam_agent_rt.training.conversations import iter_conversations
from medsam_agent_rt.training.trajectories import CONVERSATIONS, TrajectoryConfig, generate

from medsam_agent_rt.protocol import AddPoint, parse_turn

DATA = "phantoms:n=1,size=192,modalities=ct+endoscopy+fundus"


@pytest.mark.slow
def test_click_tool_gives_accepted_correction_turns(tmp_path):
    torch = pytest.importorskip("torch")
    from medsam_agent_rt.segmenters import build_segmenter

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seg = build_segmenter("litemedsam-click")
        cfg = TrajectoryConfig(DATA, segmenter="litemedsam-click", max_actions=4, min_final_iou=0.0)
        stats = generate(cfg, tmp_path, segmenter=seg, threads=None, show_progress=False)
    finally:
        torch.set_num_threads(before)
    acc = stats["acceptance"]
    assert acc["accepted"] >= 1
    corrections = 0
    for conv in iter_conversations(tmp_path / CONVERSATIONS):
        texts = [m["content"][0]["text"] for m in conv["messages"] if m["role"] == "assistant"]
        corrections += sum(isinstance(parse_turn(t).result, AddPoint) for t in texts[1:])
        ious = [t["iou"] for t in conv["meta"]["turns"] if t.get("iou") is not None]
        assert all(b >= a for a, b in zip(ious, ious[1:]))  # accepted turns never lower IoU
    assert corrections == acc["accepted"]
