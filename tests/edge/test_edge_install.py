"""The torch-free edge install (extra ``edge``): a fresh virtual environment with this checkout's
wheel and the edge extra only, where ``import torch`` fails, runs ``medsam-agent segment`` on
held-out phantoms with the embedded defaults (LiteMedSAM on ONNX Runtime, the embedded policy's
GGUF on llama.cpp) and gives the torch path's actions and masks (torch LiteMedSAM + the hf
policy on transformers, run here in the test process).

Offline: requirements come from the wheelhouse ``.whl/edge`` that scripts/setup_tests.sh fills
(benchmarks/edge_env.py). About 70 s of CPU time (the wheel's C++ build ~30 s, the install, two
episodes in each environment).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.edge, pytest.mark.slow, pytest.mark.needs_llama]
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # benchmarks/ is a repository folder, not an installed package
    sys.path.insert(0, str(REPO))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _actions(turns: list) -> list[tuple]:
    """Per policy call: outcome and the parsed action (name, 0..999 grid, point type)."""
    out = []
    for t in turns:
        a = t["action"] or {}
        out.append((t["outcome"], a.get("name"), a.get("grid"), a.get("positive")))
    return out


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory):
    """The python of a fresh venv holding this checkout's wheel + the edge extra."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (extra gguf): no GGUF policy to run")
    from benchmarks import edge_env

    missing = [
        r
        for r in ("onnxruntime", "llama_cpp_python")
        if not any(p.name.lower().startswith(r) for p in edge_env.WHEELHOUSE.glob("*.whl"))
    ]
    if missing:
        pytest.fail(
            f"the edge wheelhouse {edge_env.WHEELHOUSE} lacks {missing}: run "
            "scripts/setup_tests.sh (step 4 fills it while it has network)"
        )
    root = tmp_path_factory.mktemp("edge")
    wheel = edge_env.build_wheel(root / "wheel", root / "build")
    return edge_env.create_venv(root / "venv", wheel, "edge")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    from benchmarks import edge_env

    return edge_env.make_phantoms(tmp_path_factory.mktemp("phantoms"))


def test_edge_venv_has_no_torch(edge_venv, tmp_path):
    from benchmarks.edge_env import FORBIDDEN_ON_EDGE

    python = edge_venv
    for module in FORBIDDEN_ON_EDGE:
        proc = subprocess.run(
            [str(python), "-c", f"import {module}"], cwd=tmp_path, capture_output=True, text=True
        )
        assert proc.returncode != 0 and f"No module named '{module}'" in proc.stderr, module
    proc = subprocess.run(
        [
            str(python),
            "-c",
            "import onnxruntime, llama_cpp, medsam_agent_rt as m; print(m.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    # the installed wheel, not this checkout's sources
    assert Path(proc.stdout.strip()).is_relative_to(python.parents[1]), proc.stdout


def test_edge_segment_matches_the_torch_path(edge_venv, phantoms, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from medsam_agent_rt import Episode, build_policy, build_segmenter, read_image
    from medsam_agent_rt.io import read_mask
    from medsam_agent_rt.policies import default_policy_spec
    from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER
    from medsam_agent_rt.trajectory import rle_decode

    python = edge_venv
    cli = python.parent / "medsam-agent"
    torch_seg = build_segmenter(DEFAULT_SEGMENTER, backend="torch")  # what the edge CLI runs
    hf_policy = build_policy(default_policy_spec(prefer="hf"))
    from benchmarks.edge_env import CASES

    for name, target in CASES:
        out = tmp_path / Path(name).stem
        proc = subprocess.run(
            [str(cli), "segment", str(phantoms / name), "--target", target, "--out", str(out)]
            + ["--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["policy"].startswith("gguf:") and summary["backend"] == "onnx", summary
        edge = json.loads((out / "trajectory.json").read_text())
        edge_mask = read_mask(out / "mask.png")

        ref_mask, ref = Episode(torch_seg, hf_policy).run(read_image(phantoms / name).rgb, target)
        ref_turns = ref.to_dict()["turns"]
        # the same decisions, turn by turn (the policy sees the overlays the masks produce)
        assert _actions(edge["turns"]) == _actions(ref_turns), name
        assert any(t["outcome"] == "executed" for t in ref_turns), name  # a real episode
        # ORT vs torch fp32 low-res logits differ by ~1e-4 (export manifest), so a pixel whose
        # logit sits at the 0 threshold may flip: IoU >= 0.99 per executed turn and at the end.
        edge_masks = [rle_decode(t["mask"]) for t in edge["turns"] if t["mask"] is not None]
        ref_masks = [rle_decode(t["mask"]) for t in ref_turns if t["mask"] is not None]
        assert len(edge_masks) == len(ref_masks) >= 1
        for a, b in zip(edge_masks, ref_masks):
            assert _iou(a, b) >= 0.99, (name, _iou(a, b))
        assert edge_mask.shape == ref_mask.shape and edge_mask.any()
        assert _iou(edge_mask, ref_mask) >= 0.99, (name, _iou(edge_mask, ref_mask))
