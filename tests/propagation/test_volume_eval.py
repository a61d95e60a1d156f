"""3-D evaluation (``medsam-agent eval`` on volume datasets): each row's 3-D Dice / NSD equal
those of the prediction recomputed by hand (the episode on the key slice, the tracker through
the volume, NumPy Dice); the CLI writes one row per volume and target and their means."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsam_agent_rt.cli import main
from medsam_agent_rt.data.sequences import phantom_volume


def _dice(a, b):
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("mode", ["propagate", "slices"])
def test_a_row_is_the_3d_score_of_the_prediction_made_by_hand(mode, standins):
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.evaluation.volumes import evaluate_case, volume_cases
    from medsam_agent_rt.policies import build_policy
    from medsam_agent_rt.propagation import BoxTracker, nsd_3d, propagate_volume
    from medsam_agent_rt.session_config import SessionConfig

    (case,) = volume_cases("sequences:n=1,seed=2,depth=8,size=64")
    vol = phantom_volume(2, 8, 64)
    np.testing.assert_array_equal(case.gt, vol.masks["organ"])
    seg, config = standins.ThresholdSegmenter(140), SessionConfig(max_actions=2)
    row = evaluate_case(case, seg, build_policy("oracle-box"), config, mode)

    gt, d = vol.masks["organ"], len(vol.frames)
    rgb = np.repeat(vol.frames[..., None], 3, axis=3)
    pred = np.zeros_like(gt)
    areas = gt.reshape(d, -1).sum(1)
    for k in [int(np.argmax(areas))] if mode == "propagate" else np.flatnonzero(areas):
        ep = Episode(standins.ThresholdSegmenter(140), build_policy("oracle-box"), config)
        pred[k] = np.asarray(ep.run(rgb[k], "organ", gt[k])[0], bool)
    if mode == "propagate":
        k = int(np.argmax(areas))
        make = lambda: BoxTracker(standins.ThresholdSegmenter(140))  # noqa: E731
        pred, _ = propagate_volume(rgb, k, pred[k], make)
        assert row["key_slice"] == k and row["episodes"] == 1
    else:
        assert row["episodes"] == int((areas > 0).sum())
    assert row["dice_3d"] == pytest.approx(_dice(pred, gt))
    assert row["nsd"] == pytest.approx(nsd_3d(pred, gt, vol.spacing, 2.0))
    assert row["dice_3d"] > 0.7


def test_eval_cli_on_a_sequences_folder(tmp_path, threshold_segmenter, capsys):
    data = tmp_path / "data"
    assert (
        main(["data", "sequences", "--out", str(data), "--n", "2", "--depth", "6", "--size", "48"])
        == 0
    )
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--dataset",
            str(data),
            "--policy",
            "oracle-box",
            "--out",
            str(out),
            "--max-turns",
            "2",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert sorted((r["volume"], r["target"]) for r in rows) == [
        ("volume_0", "lesion"),
        ("volume_0", "organ"),
        ("volume_1", "lesion"),
        ("volume_1", "organ"),
    ]
    done = [r for r in rows if r["skipped"] is None]
    assert results["metrics"]["mean"]["dice_3d"] == pytest.approx(
        np.mean([r["dice_3d"] for r in done])
    )
    assert results["metrics"]["n_evaluated"] == len(done) >= 2
    assert "mean 3-D Dice" in stdout and "| **mean** |" in (out / "results.md").read_text()


def test_a_bad_volume_spec_exits_2(tmp_path, capsys):
    code = main(
        [
            "eval",
            "--dataset",
            "sequences:depth=x",
            "--policy",
            "oracle-box",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "depth must be an integer" in capsys.readouterr().err
