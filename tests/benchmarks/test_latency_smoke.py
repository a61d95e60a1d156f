"""Smoke run of ``python -m benchmarks.latency`` on one demo image (256 px copy, 1 action): it
runs, reports every stage with a value, its JSON agrees with itself (the stages of a turn add up
to no more than the episode), and an unavailable backend becomes a row with its error instead of
aborting the run. Not a timing assertion."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # benchmarks/ is a repository folder, not an installed package
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="module")
def tiny_demo(demo_dir, tmp_path_factory):
    """A demo-layout folder with one image (256 px) and its first mask."""
    root = tmp_path_factory.mktemp("demo1")
    (root / "demo").mkdir()
    (root / "demo_mask").mkdir()
    stem, target = "06_CT_abdomen", "left+kidney"
    img = Image.open(demo_dir / "demo" / f"{stem}.png").convert("RGB")
    img.resize((256, 256), Image.Resampling.BICUBIC).save(root / "demo" / f"{stem}.png")
    gt = Image.open(demo_dir / "demo_mask" / f"{stem}_{target}.png").convert("L")
    gt = np.asarray(gt.resize((256, 256), Image.Resampling.NEAREST)) > 127
    Image.fromarray(gt.astype(np.uint8) * 255).save(root / "demo_mask" / f"{stem}_{target}.png")
    return root


def test_latency_smoke_reports_every_stage(tiny_demo, tmp_path, capsys):
    from benchmarks import latency

    out = tmp_path / "latency.json"
    code = latency.main(
        ["--data", str(tiny_demo), "--repeats", "1", "--warmup", "0", "--load-repeats", "1",
         "--max-turns", "1", "--policy", "expert:box_prob=1", "--backend", "torch", "no-such",
         "--quiet", "--json", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "latency" and data["stages"] == list(latency.STAGES)
    assert data["data"]["images"] == ["biomedparse-demo/test/06_CT_abdomen"]
    assert "machine" in data and "build" in data["environment"]

    ok, missing = data["rows"]
    assert ok["status"] == "ok" and ok["config"]["backend"] == "torch"
    assert missing["status"] == "error" and "no-such" in missing["error"]
    stages = ok["stages"]
    for stage in latency.STAGES:
        s = stages[stage]
        assert s["n"] >= 1 and s["median"] is not None and s["median"] >= 0, stage
        assert s["p90"] >= s["median"], stage
        assert f"| {stage} |" in printed, stage
    counts = ok["counts"]
    assert counts["episodes"] == 1 and counts["actions"] == 1
    assert counts["h2d_bytes"] == counts["d2h_bytes"] == 0  # a CPU tool moves nothing
    assert "host <-> device bytes per turn: 0 to the device, 0 back" in printed
    assert stages["episode"]["n"] == 1 and stages["encode"]["n"] == 1
    assert stages["policy"]["n"] == stages["tool"]["n"] == counts["turns"]
    assert stages["render"]["n"] == counts["actions"]  # render: executed actions only
    assert stages["tool_call"]["n"] == counts["tool_calls"] >= counts["actions"]
    # with a single episode each median is a sum over its turns' values at most: the stages of
    # one episode cannot take longer than the episode itself
    per_turn = sum(stages[s]["median"] for s in ("policy", "tool", "postprocess"))
    assert stages["encode"]["median"] + per_turn <= stages["episode"]["median"] * 1.01
    assert "not available: ValueError" in printed


def test_latency_times_zoomed_corrections(tiny_demo, tmp_path):
    """The expert's corrections on the small kidney zoom in (litemedsam-click's default
    strategy): the crop's encoder run (``encode(crop, keep=False)``) goes through the probe too
    and the row stays ok."""
    from benchmarks import latency

    out = tmp_path / "latency.json"
    code = latency.main(
        ["--data", str(tiny_demo), "--repeats", "1", "--warmup", "0", "--load-repeats", "1",
         "--max-turns", "3", "--policy", "expert", "--backend", "torch", "--quiet",
         "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "ok", row.get("error")
    # the image, then the crop the expert's previewed corrections ran on
    assert row["stages"]["encode"]["n"] == 2, row["stages"]["encode"]
