"""The episode record: RLE masks, JSON round trip, strict loading, JSON-safe extras."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medsam_agent_rt.trajectory import (
    EpisodeRecord,
    TurnRecord,
    jsonable,
    mask_stats,
    rle_decode,
    rle_encode,
)


@given(arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_rle_round_trip(mask):
    rle = rle_encode(mask)
    assert sum(rle["counts"]) == mask.size and rle["shape"] == list(mask.shape)
    np.testing.assert_array_equal(rle_decode(json.loads(json.dumps(rle))), mask)


def test_rle_layout_is_row_major_runs_starting_with_false():
    m = np.array([[1, 1, 0], [0, 1, 1]], bool)
    assert rle_encode(m) == {"shape": [2, 3], "counts": [0, 2, 2, 2]}
    assert rle_encode(np.zeros((2, 2), bool))["counts"] == [4]
    assert rle_encode(np.ones((2, 2), np.uint8))["counts"] == [0, 4]
    big = np.zeros((512, 512), bool)
    big[100:300, 50:400] = True
    assert len(rle_encode(big)["counts"]) == 401  # two runs per covered row + the first gap


@pytest.mark.parametrize(
    "bad",
    [{"shape": [2, 2], "counts": [3]}, {"shape": [2, 2], "counts": [5, -1]}, {"counts": [4]}, "x"],
)
def test_rle_decode_rejects_inconsistent_input(bad):
    with pytest.raises(ValueError, match="rle"):
        rle_decode(bad)


def test_rle_encode_needs_2d():
    with pytest.raises(ValueError, match="2-D"):
        rle_encode(np.zeros((2, 2, 2), bool))


def test_mask_stats_against_hand_counts():
    m = np.zeros((6, 6), bool)
    m[0:2, 0:2] = True
    m[4:6, 4:6] = True
    gt = np.zeros((6, 6), bool)
    gt[0:2, 0:3] = True
    s = mask_stats(m, gt)
    assert s == {"area": 8, "components": 2, "iou": 4 / 10, "dice": 8 / 14}
    assert mask_stats(np.zeros((3, 3), bool)) == {
        "area": 0,
        "components": 0,
        "iou": None,
        "dice": None,
    }
    diag = np.eye(3, dtype=bool)
    assert mask_stats(diag, connectivity=4)["components"] == 3
    assert mask_stats(diag, connectivity=8)["components"] == 1


def test_jsonable():
    obj = {
        "a": np.float32(1.5),
        "b": np.arange(3),
        "c": (1, np.int64(2)),
        "d": float("nan"),
        3: object,
    }
    out = jsonable(obj)
    assert out["a"] == 1.5 and out["b"] == [0, 1, 2] and out["c"] == [1, 2] and out["d"] is None
    assert isinstance(out["3"], str)
    json.dumps(out, allow_nan=False)


def _record() -> EpisodeRecord:
    rec = EpisodeRecord(
        image_id="a", image_shape=[4, 4], image_sha256="0" * 64, target="t", policy="p",
        segmenter="s", backend="b", strategy="x", config={"max_actions": 5},
        view={"height": 4, "width": 4, "view_size": 512},
    )  # fmt: skip
    rec.turns.append(TurnRecord(0, 0, "text", "executed", mask=rle_encode(np.eye(4, dtype=bool))))
    rec.end_reason = "budget"
    rec.summarize({"encode": 0.1, "episode": 0.2})
    return rec


def test_record_json_round_trip_and_strict_loading(tmp_path):
    rec = _record()
    assert EpisodeRecord.from_json(rec.to_json()) == rec
    assert rec.totals["actions"] == 1 and rec.totals["seconds"]["encode"] == 0.1
    data = rec.to_dict()
    with pytest.raises(ValueError, match="unknown episode record fields"):
        EpisodeRecord.from_dict({**data, "surprise": 1})
    with pytest.raises(ValueError, match="unknown turn record fields"):
        EpisodeRecord.from_dict({**data, "turns": [{**data["turns"][0], "zzz": 1}]})
    with pytest.raises(ValueError, match="schema version"):
        EpisodeRecord.from_dict({**data, "version": 99})
    with pytest.raises(ValueError, match="not an episode record"):
        EpisodeRecord.from_dict([1, 2])
    path = rec.save(tmp_path / "r.json")
    assert EpisodeRecord.load(path) == rec and not (tmp_path / "r.json.tmp").exists()
    np.testing.assert_array_equal(rec.masks()[0], np.eye(4, dtype=bool))
    with pytest.raises(ValueError, match="turn must be"):
        rec.messages(np.zeros((4, 4, 3), np.uint8), 5)
