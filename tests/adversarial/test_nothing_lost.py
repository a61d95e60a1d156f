"""Nothing is lost: odd characters in a model's text, one failing sample in an evaluation, or a
policy that never produces a valid action end as recorded outcomes with clear exit codes."""

from __future__ import annotations

import json

import pytest
from _fakes import write_case
from _hostile import BOX, HostileServer

from medsam_agent_rt.cli import main
from medsam_agent_rt.trajectory import EpisodeRecord

SURROGATES = BOX + "\n\ud800 unpaired \udfff and a real \U0001f600"


@pytest.fixture
def hostile():
    s = HostileServer()
    yield s
    s.close()


def segment(capsys, *argv):
    code = main(["segment", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unpaired_surrogates_in_model_text_are_written_and_read_back(
    tmp_path, capsys, hostile, fake_segmenter
):
    image, _ = write_case(tmp_path)
    hostile.text = SURROGATES
    code, _, err = segment(
        capsys, image, "--target", "t", "--policy", hostile.url, "--max-turns", 1,
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert code == 0, err
    rec = EpisodeRecord.load(tmp_path / "o" / "trajectory.json")
    assert rec.turns[0].text == SURROGATES  # exactly what the model said, escapes read back
    assert rec.totals["actions"] == 1


def test_unpaired_surrogates_survive_the_eval_shard_and_results(tmp_path, hostile, fake_segmenter):
    from medsam_agent_rt.evaluation import EvalConfig, evaluate

    hostile.text = SURROGATES
    cfg = EvalConfig(
        dataset="phantoms:n=1,size=64,modalities=fundus", policy=hostile.url, max_turns=1
    )
    results = evaluate(cfg, tmp_path / "ev", show_progress=False, report=False)
    assert results["metrics"]["n_evaluated"] >= 1
    rows = (tmp_path / "ev" / "shards" / "rank000-of-001.jsonl").read_text(encoding="utf-8")
    assert json.loads(rows.splitlines()[0])["record"]["turns"][0]["text"] == SURROGATES


def test_one_http_500_fails_one_sample_not_the_evaluation(
    tmp_path, capsys, hostile, fake_segmenter
):
    hostile.modes = ["ok", "e500", "e500", "e500", "e500"]  # the second sample: 4 attempts, 500
    out = tmp_path / "ev"
    argv = [
        "eval", "--dataset", "phantoms:n=3,size=64,modalities=fundus", "--policy", hostile.url,
        "--max-turns", "1", "--out", str(out), "--no-progress", "--no-report",
    ]  # fmt: skip
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "1 sample(s) failed" in err and "HTTP 500" in err
    results = json.loads((out / "results.json").read_text())
    failed = [s for s in results["samples"] if s["skipped"] == "failed"]
    assert len(failed) == 1 and failed[0]["index"] == 1
    assert hostile.url in failed[0]["error"] and "HTTP 500" in failed[0]["error"]
    n = results["metrics"]["n_samples"]
    assert results["metrics"]["n_evaluated"] == n - 1 >= 2  # the rest was evaluated
    # re-running the same command retries only the failed sample, and it now succeeds
    posts = lambda: sum(r["method"] == "POST" for r in hostile.requests)  # noqa: E731
    calls = posts()
    assert main(argv) == 0
    assert posts() == calls + 1
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["n_evaluated"] == n and not results["metrics"]["skipped"]


def test_an_episode_without_any_valid_answer_has_its_own_exit_code(
    tmp_path, capsys, hostile, fake_segmenter
):
    image, _ = write_case(tmp_path)
    hostile.text = "I would rather not segment this."
    code, stdout, err = segment(
        capsys, image, "--target", "t", "--policy", hostile.url, "--out", tmp_path / "o", "--json"
    )
    assert code == 4
    line = [
        ln for ln in err.splitlines() if ln.startswith("medsam-agent segment: no-valid-action:")
    ]
    assert len(line) == 1 and "none of the 2 answer(s)" in line[0]
    summary = json.loads(stdout)
    assert summary["outcome"] == "no_valid_action" and summary["exit_code"] == 4
    assert (tmp_path / "o" / "trajectory.json").is_file()  # the record is kept for diagnosis


@pytest.mark.parametrize("mode", ["garbage", "redirect", "huge_chunked"])
def test_a_hostile_server_through_the_cli_is_exit_1_naming_the_url(
    tmp_path, capsys, hostile, fake_segmenter, mode
):
    image, _ = write_case(tmp_path)
    hostile.default = mode
    code, _, err = segment(
        capsys, image, "--target", "t", "--policy", hostile.url, "--out", tmp_path / "o"
    )
    assert code == 1 and "Traceback" not in err
    assert f"{hostile.url}/chat/completions" in err
    assert not (tmp_path / "o").exists()


def test_eval_and_segment_agree_on_bad_input(tmp_path, capsys, fake_segmenter):
    image, _ = write_case(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    code, _, err = segment(
        capsys, tmp_path / "broken.png", "--target", "t", "--policy", "oracle-box",
        "--gt", image, "--out", tmp_path / "o",
    )  # fmt: skip
    assert code == 2 and "broken.png" in err
    code = main(
        ["eval", "--dataset", str(tmp_path / "missing"), "--policy", "oracle-box",
         "--out", str(tmp_path / "ev")]
    )  # fmt: skip
    assert code == 2 and "Traceback" not in capsys.readouterr().err


def test_the_guard_travels_to_worker_processes():
    """Spawned evaluation workers receive the guarded runner (pickled) and keep the guard."""
    import pickle

    from medsam_agent_rt.evaluation.datasets import SampleRef
    from medsam_agent_rt.evaluation.rows import EpisodeRunner
    from medsam_agent_rt.evaluation.runner import GuardedRunner

    guarded = pickle.loads(pickle.dumps(GuardedRunner(EpisodeRunner(policy="oracle-box"))))

    class Exploding:
        def run(self, ref):
            raise RecursionError("deep inside a decoder")

    guarded.inner = Exploding()
    ref = SampleRef.from_info(
        {"index": 7, "sample_id": "s", "image_id": "i", "dataset": "d", "split": "test",
         "target": "t", "description": "t", "modality": "CT", "site": "x",
         "image_path": "/nonexistent.png", "mask_path": "/nonexistent_mask.png"}
    )  # fmt: skip
    row = guarded.run(ref)
    assert row["skipped"] == "failed" and row["index"] == 7
    assert row["error"] == "RecursionError: deep inside a decoder"
