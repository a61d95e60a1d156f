"""clicker:K — K simulator clicks checked against an independent SciPy click simulator."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from runtime_fakes import FakeFactory, blob_gt, make_image, rule_mask  # noqa: E402

from medsam_agent_rt.episode import Episode  # noqa: E402
from medsam_agent_rt.policies import ClickerPolicy  # noqa: E402
from medsam_agent_rt.protocol import AddPoint, parse_action  # noqa: E402
from medsam_agent_rt.session_config import SessionConfig  # noqa: E402


def scipy_click(pred, gt, exclude):
    """RITM-style: EDT of padded FN / FP, excluded pixels zeroed, larger max wins (ties: FP)."""
    fn = ndimage.distance_transform_edt(np.pad(gt & ~pred, 1))[1:-1, 1:-1]
    fp = ndimage.distance_transform_edt(np.pad(pred & ~gt, 1))[1:-1, 1:-1]
    for x, y in exclude:
        fn[y, x] = fp[y, x] = 0
    if fn.max() == 0 and fp.max() == 0:
        return None
    pos = fn.max() > fp.max()
    d = fn if pos else fp
    y, x = np.unravel_index(np.argmax(d), d.shape)
    return int(x), int(y), bool(pos)


@pytest.mark.parametrize("k", [1, 3])
def test_clicks_follow_the_simulator_then_stop(k):
    image, gt = make_image(48, 48), blob_gt(48, 48)  # square, <= 1000 px: exact pixel round trip
    mask, rec = Episode(FakeFactory(radius=5), ClickerPolicy(k)).run(image, "t", gt)
    pred, clicks = np.zeros_like(gt), []
    for turn in rec.turns[:k]:
        exp = scipy_click(pred, gt, [c[:2] for c in clicks])
        a = parse_action(turn.text)
        assert isinstance(a, AddPoint)
        assert turn.action["pixels"] == [exp[0], exp[1]] and a.positive == exp[2]
        clicks.append(exp)
        pred = rule_mask(48, 48, None, clicks, 5)
        np.testing.assert_array_equal(rec.masks()[len(clicks) - 1], pred)
    assert [t.outcome for t in rec.turns] == ["executed"] * k + ["stop"]
    assert rec.turns[0].phrase == "Locate the target with a point."
    if k > 1:
        assert rec.turns[1].phrase == "Need refinement."
    np.testing.assert_array_equal(mask, pred)


def test_clicker_respects_the_session_budget_and_validates_k():
    _, rec = Episode(FakeFactory(), ClickerPolicy(9), SessionConfig(max_actions=5)).run(
        make_image(), "t", blob_gt()
    )
    assert rec.end_reason == "budget" and rec.totals["actions"] == 5
    with pytest.raises(ValueError, match="K >= 1"):
        ClickerPolicy(0)
