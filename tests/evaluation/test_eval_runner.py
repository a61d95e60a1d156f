"""The harness end to end with the embedded LiteMedSAM on small phantoms: sharded runs merged
equal the unsharded run, runs are deterministic, resuming skips finished samples, the
per-sample Dice equals an independent computation at GT resolution, empty GTs are skipped and
counted, shards of different runs are refused, and the CLI merges."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.evaluation import EvalConfig, evaluate, merge
from medsam_agent_rt.evaluation.datasets import _phantom
from medsam_agent_rt.evaluation.shards import SHARD_DIR

DATA = "phantoms:n=1,size=128,modalities=endoscopy+fundus"


@pytest.fixture(scope="module")
def segmenter():
    """The embedded LiteMedSAM, run on one torch thread (two threads on a busy 2-core machine
    are ~10x slower); the previous thread count is restored afterwards."""
    import torch

    from medsam_agent_rt.segmenters import build_segmenter

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_segmenter("litemedsam", backend="torch")
    torch.set_num_threads(before)


def strip_timing(results):
    """results.json without wall-clock fields (they differ between identical runs)."""
    out = {k: v for k, v in results.items() if k not in ("timing", "run")}
    out["samples"] = [{k: v for k, v in s.items() if k != "seconds"} for s in results["samples"]]
    return out


def shard_rows(out):
    (path,) = (out / SHARD_DIR).glob("*.jsonl")
    return path, [json.loads(line) for line in path.read_text().splitlines()]


def test_sharded_equals_unsharded_and_cli_merge(segmenter, tmp_path, monkeypatch, capsys):
    from medsam_agent_rt.cli import main

    cfg = EvalConfig(DATA, "clicker:2", max_turns=2)
    whole = evaluate(cfg, tmp_path / "whole", segmenter=segmenter, report=False)
    n = whole["metrics"]["n_samples"]
    assert n >= 3 and whole["metrics"]["n_evaluated"] == n
    assert evaluate(cfg, tmp_path / "r0", rank=0, world_size=2, segmenter=segmenter) is None
    monkeypatch.setenv("RANK", "1")  # torchrun-style environment
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert evaluate(cfg, tmp_path / "r1", segmenter=segmenter) is None
    _, rows1 = shard_rows(tmp_path / "r1")
    assert [r["index"] for r in rows1] == list(range(1, n, 2))
    with pytest.raises(ValueError, match="have no result"):
        merge([tmp_path / "r0"], tmp_path / "partial", report=False)
    merged = merge([tmp_path / "r0", tmp_path / "r1"], tmp_path / "merged", report=False)
    assert strip_timing(merged) == strip_timing(whole)
    assert merged["run"]["world_size"] == 2
    m = merged["metrics"]
    assert m["click_policy"] and set(m["click"]["noc"]) == {"85", "90"}
    assert m["actions"]["types"].keys() <= {"+point", "-point"}
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    argv = ["eval", "merge", str(tmp_path / "r0"), str(tmp_path / "r1")]
    assert main([*argv, "--out", str(tmp_path / "cli"), "--no-report"]) == 0
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert strip_timing(cli) == strip_timing(merged)
    capsys.readouterr()
    assert main(["eval", "table", f"two={tmp_path / 'cli'}", str(tmp_path / "whole")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| Dice | n | two | `clicker:2` |"
    assert f"| **all** (per sample) | {n} |" in table[-5]
    assert main(["eval", "--policy", "oracle-box"]) == 2  # --dataset / --out missing


def test_deterministic_and_resume_skips_finished_samples(segmenter, tmp_path):
    cfg = EvalConfig(DATA, "expert:seed=7,retries=1", max_turns=2)
    first = evaluate(cfg, tmp_path / "a", segmenter=segmenter, report=False)
    _phantom.cache_clear()  # the phantoms are generated again from their seeds
    again = evaluate(cfg, tmp_path / "b", segmenter=segmenter, report=False)
    assert strip_timing(again) == strip_timing(first)
    _, rows_a = shard_rows(tmp_path / "a")
    _, rows_b = shard_rows(tmp_path / "b")
    for ra, rb in zip(rows_a, rows_b):  # same texts and masks turn by turn
        ta, tb = ra["record"]["turns"], rb["record"]["turns"]
        assert [(t["text"], t["mask"]) for t in ta] == [(t["text"], t["mask"]) for t in tb]

    # interrupt: keep two finished rows and a torn third line, then resume
    path, rows = shard_rows(tmp_path / "a")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:40])
    resumed = evaluate(cfg, tmp_path / "a", segmenter=segmenter, report=False)
    _, rows2 = shard_rows(tmp_path / "a")
    assert [r["index"] for r in rows2] == [r["index"] for r in rows]
    assert rows2[:2] == rows[:2]  # identical wall times: not run again
    assert len(rows) == 3
    assert rows2[2]["seconds"] != rows[2]["seconds"]  # re-run
    assert strip_timing(resumed) == strip_timing(first)
    other = EvalConfig(DATA, "oracle-box", max_turns=2)
    with pytest.raises(ValueError, match=r"different run \(differs in: policy\)"):
        evaluate(other, tmp_path / "a", segmenter=segmenter, report=False)
    evaluate(other, tmp_path / "r", segmenter=segmenter, report=False)
    with pytest.raises(ValueError, match="different run"):
        merge([tmp_path / "a", tmp_path / "r"], report=False)


def test_dice_at_gt_resolution_empty_gt_and_report(segmenter, tmp_path):
    """A demo-style folder with a non-square image: one real target, one empty mask."""
    from medsam_agent_rt.data.phantoms import generate

    ph = generate("ultrasound", 3, (128, 192))
    target, gt = next(iter(ph.masks.items()))
    root = tmp_path / "data"
    (root / "demo").mkdir(parents=True)
    (root / "demo_mask").mkdir()
    Image.fromarray(ph.image).save(root / "demo" / "00_ultrasound_breast.png")
    for name, m in ((target, gt), ("cyst", np.zeros_like(gt))):
        png = Image.fromarray(m.astype(np.uint8) * 255)
        png.save(root / "demo_mask" / f"00_ultrasound_breast_{name.replace(' ', '+')}.png")
    out = tmp_path / "out"
    res = evaluate(EvalConfig(str(root), "oracle-box"), out, segmenter=segmenter, gallery=1)
    m = res["metrics"]
    assert m["n_samples"] == 2 and m["n_evaluated"] == 1 and m["skipped"] == {"empty_gt": 1}
    # independent: the segmenter's own prediction for the tight GT box, Dice in NumPy
    ys, xs = np.nonzero(gt)
    segmenter.set_image(ph.image)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
    pred = segmenter.predict(box=box, multimask_output=False)  # LiteMedSAM: single mask
    mask = pred.masks[0]
    dice = 2 * (mask & gt).sum() / (mask.sum() + gt.sum())
    (sample,) = [s for s in res["samples"] if not s["skipped"]]
    assert sample["dice"] == pytest.approx(dice, abs=1e-12)
    assert m["per_class"] == {target: {"n": 1, "dice": sample["dice"], "iou": sample["iou"]}}
    assert m["rounds"]["dice"] == [sample["dice"]] * 5  # carried forward after stop
    assert m["end_reasons"] == {"stop": 1} and m["actions"]["histogram"] == {"0": 0, "1": 1}
    assert res["config"]["strategy_used"] == "box+all_clicks" and res["config"]["versions"]
    md = (out / "results.md").read_text()
    assert "## Per modality" in md and "| ultrasound | 1 |" in md and "empty_gt" in md
    assert not (out / "gallery" / "worst-1.png").exists()  # one case: it is the best one
    for png in ("dice_vs_turn.png", "gallery/best-1.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 100


def test_cli_errors_leave_nothing_behind(tmp_path, capsys, monkeypatch):
    from medsam_agent_rt import assets
    from medsam_agent_rt.cli import main

    data = "phantoms:n=1,size=64,modalities=fundus"
    out = tmp_path / "out"
    # bad input exits 2, as in `segment` (one exit-code table: commands/_exit.py)
    assert main(["eval", "--dataset", data, "--policy", "nonsense", "--out", str(out)]) == 2
    assert "unknown policy spec 'nonsense'" in capsys.readouterr().err
    args = ["--policy", "oracle-box", "--segmenter", "litemedsam-click", "--backend", "onnx"]
    with monkeypatch.context() as m:  # an install without litemedsam-click's graphs
        m.setattr(assets, "ONNX_DIR", tmp_path / "no-graphs")
        assert main(["eval", "--dataset", data, *args, "--out", str(out), "--no-progress"]) == 2
    assert "ships no ONNX graphs of 'litemedsam-click'" in capsys.readouterr().err
    assert not (out / "shards").exists()
    assert main(["eval", "merge", str(tmp_path / "none")]) == 2
    assert "no shards found" in capsys.readouterr().err
    assert main(["eval", "merged", "x"]) == 2
    assert main(["eval", "table", f"run={tmp_path}"]) == 2
    assert "results.json not found" in capsys.readouterr().err
