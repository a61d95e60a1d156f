"""oracle-box: the tight GT box once (exact grid values), then stop."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))  # the shared fake tool
from runtime_fakes import FakeFactory, blob_gt, make_image, rule_mask  # noqa: E402

from medsam_agent_rt.episode import Episode  # noqa: E402
from medsam_agent_rt.policies import OracleBoxPolicy  # noqa: E402
from medsam_agent_rt.protocol import AddBox, parse_action  # noqa: E402


def grid(p: int, s: int, pad: int) -> int:
    return int(np.floor((p + pad) * 999 / (s - 1) + 0.5))


def test_gt_box_then_stop():
    image, gt = make_image(64, 96), blob_gt(64, 96)
    ys, xs = np.nonzero(gt)
    x1, y1, x2, y2 = xs.min(), ys.min(), xs.max(), ys.max()
    factory = FakeFactory()
    mask, rec = Episode(factory, OracleBoxPolicy()).run(image, "t", gt)
    # S = 96, pad_y = 16; 96 <= 1000 so the box comes back to the exact pixels
    assert parse_action(rec.turns[0].text) == AddBox(
        grid(x1, 96, 0), grid(y1, 96, 16), grid(x2, 96, 0), grid(y2, 96, 16)
    )
    assert rec.turns[0].action["pixels"] == [x1, y1, x2, y2]
    assert [t.outcome for t in rec.turns] == ["executed", "stop"] and rec.end_reason == "stop"
    np.testing.assert_array_equal(mask, rule_mask(64, 96, [x1, y1, x2, y2], [], 6))
    assert rec.policy == "oracle-box" and rec.turns[0].phrase == "Locate the target with a box."


def test_empty_gt_stops_and_a_one_pixel_target_gets_a_valid_box():
    image = make_image(32, 32)
    mask, rec = Episode(FakeFactory(), OracleBoxPolicy()).run(image, "t", np.zeros((32, 32), bool))
    assert [t.outcome for t in rec.turns] == ["refused_stop", "stop"] and not mask.any()
    assert rec.final["iou"] == 1.0  # empty GT and empty prediction
    dot = np.zeros((32, 32), bool)
    dot[5, 7] = True
    _, rec = Episode(FakeFactory(), OracleBoxPolicy()).run(image, "t", dot)
    a = parse_action(rec.turns[0].text)
    assert isinstance(a, AddBox) and a.x1 < a.x2 and a.y1 < a.y2
    assert rec.turns[0].outcome == "executed"
