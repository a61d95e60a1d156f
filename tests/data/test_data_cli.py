"""``medsam-agent data``: phantoms, summary, preview, and clear errors (exit code 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.cli import main
from medsam_agent_rt.data import load_samples


def test_phantoms_then_summary(tmp_path, capsys):
    out = tmp_path / "ph"
    rc = main(
        [
            "data",
            "phantoms",
            "--out",
            str(out),
            "--n",
            "3",
            "--seed",
            "2",
            "--size",
            "64",
            "--modalities",
            "ct,fundus",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "wrote 6 images (0 already there)" in capsys.readouterr().out
    assert main(["data", "summary", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    samples = load_samples(out)
    assert got["samples"] == len(samples) and got["images"] == 6
    assert set(got["datasets"]) == {"phantom-ct", "phantom-fundus"}
    assert got["datasets"]["phantom-fundus"]["train"] == {"optic disc": 2, "optic cup": 2}
    assert main(["data", "summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert "phantom-fundus/train: 4" in text and "optic cup" in text


def test_summary_of_the_demo(demo_dir, capsys):
    assert main(["data", "summary", str(demo_dir), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["samples"], got["images"], got["modalities"]["MRI"]) == (71, 27, 25)


def test_preview(tmp_path, capsys):
    path = tmp_path / "sheet.png"
    assert (
        main(
            [
                "data",
                "preview",
                str(path),
                "--modalities",
                "ct,endoscopy",
                "--n",
                "2",
                "--size",
                "64",
            ]
        )
        == 0
    )
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (2 * 68 + 4, 4 * 68 + 4, 3)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["phantoms", "--out", "{tmp}/a", "--n", "2", "--modalities", "pet"], "unknown modality"),
        (["phantoms", "--out", "{tmp}/a", "--n", "2", "--splits", "train:1"], "splits:"),
        (["phantoms", "--out", "{tmp}/a", "--n", "2", "--size", "9x9"], "size:"),
        (["summary", "{tmp}"], "no '<dataset>/<split>.json'"),
        (["summary", "{tmp}/missing"], "dataset path not found"),
    ],
)
def test_errors(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["data", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medsam-agent data {argv[0]}: error:") and message in err


def test_usage_errors():
    with pytest.raises(SystemExit) as e:
        main(["data", "phantoms", "--n", "2"])  # --out is required
    assert e.value.code == 2
