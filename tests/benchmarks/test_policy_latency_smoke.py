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
    import json

    row = policy_latency.load_row(json.dumps(row))  # as measure() reads it from a subprocess
    text = policy_latency.table([row, {"kind": "hf", "error": "not installed"}])
    assert "| gguf |" in text and "error: not installed" in text
