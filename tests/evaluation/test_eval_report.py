"""results.md and the run comparison table render the aggregates (hand-made rows)."""

from __future__ import annotations

import pytest

from medsam_agent_rt.evaluation.metrics import summarise, timing
from medsam_agent_rt.evaluation.report import comparison_markdown, results_markdown


def results(policy, rows, max_turns=3):
    config = {"policy": policy, "segmenter": "litemedsam", "backend": "torch", "dataset": "d"}
    config |= {"strategy": None, "max_turns": max_turns, "device": "cpu", "limit": None}
    return {
        "config": config,
        "metrics": summarise(rows, max_turns, click_policy=policy.startswith("clicker")),
        "timing": timing(rows),
    }


def row(i, modality, ious, actions):
    return {
        "index": i,
        "modality": modality,
        "target": "t",
        "dataset": "d",
        "skipped": None,
        "iou": ious[-1],
        "dice": 2 * ious[-1] / (1 + ious[-1]),
        "round_iou": ious,
        "round_dice": [2 * v / (1 + v) for v in ious],
        "actions": actions,
        "end_reason": "stop",
        "seconds": {"episode": 1.5, "encode": 0.5},
    }


BOX = [row(0, "CT", [0.5], ["box"]), row(1, "MRI", [0.8], ["box"])]
CLICK = [row(0, "CT", [0.2, 0.9], ["+point"] * 2), row(1, "MRI", [0.6, 0.7], ["+point"] * 2)]


def test_results_markdown_tables():
    md = results_markdown(results("clicker:2", CLICK))
    assert "| CT | 1 | 0.947 | 0.900 |" in md  # dice = 2 * 0.9 / 1.9
    assert "| 1 | " + f"{(1 / 3 + 0.75) / 2:.3f}" in md  # round 1 Dice: (0.333 + 0.75) / 2
    assert "| NoC@85 (cap 20) | 11.00 |" in md  # 2 clicks and never (20)
    assert "| mIoU@2 | 0.800 |" in md
    assert "mean 1.50, median 1.50" in md
    assert "Click metrics" not in results_markdown(results("oracle-box", BOX))


def test_comparison_table():
    md = comparison_markdown(
        [("box", results("oracle-box", BOX)), ("clk", results("clicker:2", CLICK))]
    )
    lines = md.splitlines()
    assert lines[0] == "| Dice | n | box | clk |"
    assert "| CT | 1 | 0.667 | 0.947 |" in lines
    assert "| NoC@85 | | - | 11.00 |" in lines
    iou = comparison_markdown([("box", results("oracle-box", BOX))], "iou")
    assert "| **all** (per sample) | 2 | 0.650 |" in iou
    with pytest.raises(ValueError, match="metric must be"):
        comparison_markdown([], "acc")
