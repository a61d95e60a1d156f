"""Aggregation of result rows against hand-computed cases: group means (class / dataset /
modality), macro means, per-round curves with carry-forward, action histogram, end reasons,
NoC capping, NoF and mIoU@k."""

from __future__ import annotations

import pytest

from medsam_agent_rt.evaluation.metrics import (
    carry,
    click_metrics,
    group_means,
    is_click_policy,
    noc,
    round_curves,
    summarise,
    timing,
)


def row(index, modality, target, dataset, round_iou, round_dice, actions, end="stop", **kw):
    return {
        "index": index,
        "modality": modality,
        "target": target,
        "dataset": dataset,
        "skipped": None,
        "iou": round_iou[-1] if round_iou else 0.0,
        "dice": round_dice[-1] if round_dice else 0.0,
        "round_iou": round_iou,
        "round_dice": round_dice,
        "actions": actions,
        "end_reason": end,
        **kw,
    }


ROWS = [
    row(0, "CT", "liver", "a", [0.5, 0.75], [0.6, 0.8], ["box", "+point"]),
    row(1, "CT", "kidney", "a", [0.25], [0.4], ["box"]),
    row(2, "MRI", "liver", "b", [0.9, 0.8, 1.0], [0.9, 0.85, 1.0], ["box", "-point", "+point"]),
    row(3, "MRI", "tumor", "b", [], [], [], end="invalid_output"),
    {"index": 4, "modality": "MRI", "target": "tumor", "dataset": "b", "skipped": "empty_gt"},
]


def test_group_means_by_class_dataset_modality():
    by_mod = group_means(ROWS, "modality")
    assert by_mod == {
        "CT": {"n": 2, "dice": pytest.approx((0.8 + 0.4) / 2), "iou": pytest.approx(0.5)},
        "MRI": {"n": 2, "dice": pytest.approx(0.5), "iou": pytest.approx(0.5)},
    }
    by_class = group_means(ROWS, "target")
    assert list(by_class) == ["kidney", "liver", "tumor"]  # sorted; the skipped row is not a sample
    assert by_class["liver"] == {"n": 2, "dice": pytest.approx(0.9), "iou": pytest.approx(0.875)}
    assert by_class["tumor"] == {"n": 1, "dice": 0.0, "iou": 0.0}
    assert group_means(ROWS, "dataset")["b"]["n"] == 2


def test_summary_means_counts_and_macro():
    s = summarise(ROWS, rounds=3)
    assert s["n_samples"] == 5 and s["n_evaluated"] == 4
    assert s["skipped"] == {"empty_gt": 1}
    assert s["mean"]["dice"] == pytest.approx((0.8 + 0.4 + 1.0 + 0.0) / 4)
    assert s["mean"]["iou"] == pytest.approx((0.75 + 0.25 + 1.0 + 0.0) / 4)
    # macro over classes: kidney 0.4, liver 0.9, tumor 0.0
    assert s["macro"]["class"]["dice"] == pytest.approx((0.4 + 0.9 + 0.0) / 3)
    assert s["macro"]["modality"]["iou"] == pytest.approx((0.5 + 0.5) / 2)
    assert s["end_reasons"] == {"invalid_output": 1, "stop": 3}
    assert s["click_policy"] is False and s["click"] is None


def test_round_curves_carry_forward_after_stop():
    c = round_curves(ROWS, 4)
    # round k: row0 [0.6, 0.8, 0.8, 0.8], row1 [0.4]*4, row2 [0.9, 0.85, 1, 1], row3 zeros
    assert c["dice"] == pytest.approx(
        [(0.6 + 0.4 + 0.9) / 4, (0.8 + 0.4 + 0.85) / 4, (0.8 + 0.4 + 1.0) / 4, 2.2 / 4]
    )
    assert c["iou"][0] == pytest.approx((0.5 + 0.25 + 0.9) / 4)
    assert c["active"] == [3, 2, 1, 0]
    s = summarise(ROWS, rounds=2)
    assert s["rounds_per_modality"]["MRI"]["dice"] == pytest.approx([0.45, 0.425])
    assert s["rounds_per_modality"]["CT"]["iou"] == pytest.approx([0.375, 0.5])


def test_action_histogram_and_types():
    a = summarise(ROWS, rounds=3)["actions"]
    assert a["histogram"] == {"0": 1, "1": 1, "2": 1, "3": 1}
    assert a["mean"] == pytest.approx(6 / 4)
    assert a["types"] == {"+point": 2, "-point": 1, "box": 3}


def test_carry():
    assert carry([0.1, 0.2], 1) == 0.1
    assert carry([0.1, 0.2], 5) == 0.2
    assert carry([], 3) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        carry([0.1], 0)


def test_noc_capping():
    assert noc([0.5, 0.86, 0.95], 0.85) == 2
    assert noc([0.5, 0.86, 0.95], 0.90) == 3
    assert noc([0.85], 0.85) == 1  # reaching the threshold exactly counts
    assert noc([0.1, 0.2, 0.3], 0.85) == 20  # never reached -> cap
    assert noc([], 0.85) == 20
    assert noc([0.0] * 25 + [0.99], 0.85) == 20  # reached only after the cap
    assert noc([0.0] * 7 + [0.99], 0.85, cap=5) == 5


def test_click_metrics_noc_nof_and_miou_at_k():
    rows = [
        row(0, "CT", "a", "d", [0.3, 0.87, 0.92], [0] * 3, ["+point"] * 3),
        row(1, "CT", "b", "d", [0.95], [0], ["+point"]),  # stopped early: carried forward
        row(2, "CT", "c", "d", [0.1, 0.2], [0] * 2, ["+point", "-point"]),
    ]
    c = click_metrics(rows)
    assert c["cap"] == 20
    assert c["noc"]["85"] == pytest.approx((2 + 1 + 20) / 3)
    assert c["noc"]["90"] == pytest.approx((3 + 1 + 20) / 3)
    assert c["nof"] == {"85": 1, "90": 1}
    assert c["miou_at_k"]["1"] == pytest.approx((0.3 + 0.95 + 0.1) / 3)
    assert c["miou_at_k"]["2"] == pytest.approx((0.87 + 0.95 + 0.2) / 3)
    assert c["miou_at_k"]["5"] == pytest.approx((0.92 + 0.95 + 0.2) / 3)
    assert is_click_policy(rows)
    s = summarise(rows, rounds=3)
    assert s["click_policy"] and s["click"]["noc"] == c["noc"]
    assert summarise(rows, rounds=3, click_policy=False)["click"] is None
    assert not is_click_policy(ROWS)


def test_order_independent_and_timing():
    shuffled = [ROWS[3], ROWS[0], ROWS[4], ROWS[2], ROWS[1]]
    assert summarise(shuffled, 3) == summarise(ROWS, 3)
    rows = [dict(r, seconds={"episode": s, "encode": 0.0}) for r, s in zip(ROWS[:4], [1, 2, 3, 10])]
    t = timing(rows)["episode"]
    assert t["mean"] == 4.0 and t["median"] == 2.5 and t["max"] == 10 and t["total"] == 16
    assert t["p90"] == pytest.approx(3 + 0.7 * 7)
