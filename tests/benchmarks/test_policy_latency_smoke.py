"""Smoke run of ``benchmarks.policy_latency`` for the GGUF policy on one scripted conversation:
turn k shows k views, all five turns are timed, the table renders rows and errors. Not a timing
assertion."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_llama
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # benchmarks/ is a repository folder, not an installed package
    sys.path.insert(0, str(REPO))


def test_policy_latency_rows_and_table():
    pytest.importorskip("transformers")  # the scripted conversations use the phantom presets
    from benchmarks import policy_latency

    convs = policy_latency.conversations(1)
    assert [sum(p["type"] == "image" for m in c for p in m["content"]) for c in convs[0]] == [
        1,
        2,
        3,
        4,
        5,
    ]
    gguf_dir, _ = policy_latency.default_paths()
    row = policy_latency.run_one("gguf", gguf_dir, "", 1, 1)
    assert set(row["turns"]) == {1, 2, 3, 4, 5}
    assert all(row["turns"][k]["wall"] > 0 for k in row["turns"])
    # turn 1 is cold (the warm-up showed another phantom, the cache was cleared): the whole
    # prompt evaluated; later turns evaluate only their new view and text
    assert row["samples"][1]["evaluated_share"] == [1.0] * len(row["samples"][1]["wall"])
    assert all(x < 0.6 for k in (2, 3, 4, 5) for x in row["samples"][k]["evaluated_share"])
    # rounds merge into medians over every sample
    twice = policy_latency.merge_rows([row, row])
    import statistics

    assert twice["rounds"] == 2 and twice["peak_rss_mib"] == row["peak_rss_mib"]
    walls = row["samples"][3]["wall"]
    assert twice["turns"][3]["wall"] == statistics.median(walls + walls)
    import json

    row = policy_latency.load_row(json.dumps(row))  # as measure() reads it from a subprocess
    text = policy_latency.table([row, {"kind": "hf", "error": "not installed"}])
    assert "| gguf |" in text and "error: not installed" in text
