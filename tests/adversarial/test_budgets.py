"""Turn budget: one ceiling in SessionConfig, so the CLI, the evaluation and the API all refuse
an absurd --max-turns before any work; a policy that never stops ends at the budget."""

from __future__ import annotations

import numpy as np
import pytest
from _fakes import BoxToolFactory, write_case

from medsam_agent_rt.cli import main
from medsam_agent_rt.episode import Episode
from medsam_agent_rt.policies.base import PolicyTurn
from medsam_agent_rt.protocol import PHRASE_BOX, assistant_text
from medsam_agent_rt.session_config import DEFAULT_MAX_ACTIONS_LIMIT, SessionConfig


@pytest.mark.parametrize(
    "n", [DEFAULT_MAX_ACTIONS_LIMIT + 1, 10**9, 10**5000], ids=["limit+1", "1e9", "1e5000"]
)
def test_session_config_refuses_a_turn_budget_over_the_ceiling(n):
    with pytest.raises(
        ValueError, match=rf"max_actions must be at most {DEFAULT_MAX_ACTIONS_LIMIT}"
    ):
        SessionConfig(max_actions=n)


def test_the_ceiling_is_configurable(monkeypatch):
    monkeypatch.setenv("MSRT_MAX_ACTIONS_LIMIT", "200")
    assert SessionConfig(max_actions=200).max_actions == 200
    monkeypatch.setenv("MSRT_MAX_ACTIONS_LIMIT", "lots")
    with pytest.raises(ValueError, match="MSRT_MAX_ACTIONS_LIMIT must be an integer"):
        SessionConfig(max_actions=3)


def test_segment_refuses_a_huge_max_turns_before_any_work(tmp_path, capsys, fake_segmenter):
    image, gt = write_case(tmp_path)
    code = main(
        ["segment", str(image), "--target", "t", "--policy", "oracle-box", "--gt", str(gt),
         "--max-turns", "1000000000", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "at most 50" in err and fake_segmenter.episodes == 0
    assert not (tmp_path / "o").exists()


def test_eval_config_uses_the_same_ceiling():
    from medsam_agent_rt.evaluation import EvalConfig

    with pytest.raises(ValueError, match="at most 50"):
        EvalConfig(dataset="demo", policy="oracle-box", max_turns=10**9)


class NeverStops:
    """A policy that answers a box forever (the attacker of the turn budget)."""

    name = "never-stops"
    requires_gt = False

    def __init__(self) -> None:
        self.calls = 0

    def reset(self, task=None) -> None:
        pass

    def act(self, observation) -> PolicyTurn:
        self.calls += 1
        return PolicyTurn(assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [100, 100, 600, 600]}))


def test_a_never_stopping_policy_ends_at_the_budget():
    policy = NeverStops()
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    _, rec = Episode(BoxToolFactory(), policy, SessionConfig(max_actions=7)).run(img, "t")
    assert rec.end_reason == "budget" and policy.calls == 7 and rec.totals["actions"] == 7


def test_a_huge_hole_area_is_refused_before_the_episode(tmp_path, capsys, fake_segmenter):
    """It used to reach the C++ kernel after the whole episode as a raw TypeError."""
    image, gt = write_case(tmp_path)
    code = main(
        ["segment", str(image), "--target", "t", "--policy", "oracle-box", "--gt", str(gt),
         "--fill-holes", "9" * 30, "--out", str(tmp_path / "o")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "max_hole_area must be None" in err and "TypeError" not in err
    assert fake_segmenter.episodes == 0
