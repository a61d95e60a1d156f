"""Expert trajectories with the embedded LiteMedSAM on small phantoms: the conversations parse
back to the recorded actions and replay (policy ``replay``) to the same masks and images; the
statistics agree with the conversations; resuming after a crash gives the same files; two
worker processes give byte-identical conversations, and the final-IoU filter keeps exactly the
episodes above it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from medsam_agent_rt.training.conversations import iter_conversations, load_images
from medsam_agent_rt.training.trajectories import (
    CONVERSATIONS,
    LEDGER,
    TrajectoryConfig,
    generate,
)
from medsam_agent_rt.training.trajectory_stats import mask_digest

from medsam_agent_rt.evaluation import resolve_dataset
from medsam_agent_rt.protocol import AddBox, AddPoint, Stop, parse_turn

DATA = "phantoms:n=1,size=128,modalities=fundus+endoscopy"
CFG = TrajectoryConfig(DATA, per_sample=2, max_actions=3, retries=1, min_final_iou=0.0)


@pytest.fixture(scope="module")
def segmenter():
    """The embedded LiteMedSAM on one torch thread (restored afterwards)."""
    import torch

    from medsam_agent_rt.segmenters import build_segmenter

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_segmenter("litemedsam", backend="torch")
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def generated(segmenter, tmp_path_factory):
    out = tmp_path_factory.mktemp("traj")
    stats = generate(CFG, out, segmenter=segmenter, threads=None, show_progress=False)
    return out, stats


def assistant_texts(msgs):
    return [m["content"][0]["text"] for m in msgs if m["role"] == "assistant"]


def label_of(action):
    if isinstance(action, AddBox):
        return "box", [action.x1, action.y1, action.x2, action.y2]
    if isinstance(action, AddPoint):
        return ("+point" if action.positive else "-point"), [action.x, action.y]
    assert isinstance(action, Stop)
    return "stop", None


def test_conversations_parse_back_and_replay_to_the_same_masks(generated, segmenter):
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.policies import ReplayPolicy
    from medsam_agent_rt.session_config import SessionConfig

    out, stats = generated
    refs = {r.sample_id: r for r in resolve_dataset(DATA)}
    convs = list(iter_conversations(out / CONVERSATIONS))
    assert len(convs) == stats["episodes"]["kept"] == 2 * len(refs)  # threshold 0 keeps all
    for conv in convs:
        ref = refs[conv["sample_id"]]
        assert conv["target"] == ref.description and conv["modality"] == ref.modality
        msgs = load_images(conv, out)
        roles = [m["role"] for m in msgs]
        assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles[1:], roles[2:]))  # user / assistant alternate
        assert ref.description in msgs[1]["content"][1]["text"]
        texts, turns = assistant_texts(msgs), conv["meta"]["turns"]
        assert len(texts) == len(turns)
        for text, turn in zip(texts, turns):
            parsed = parse_turn(text)
            assert parsed.ok and parsed.repairs == ()
            assert label_of(parsed.result) == (turn["action"], turn["grid"])
        # replay through the same segmenter: same masks, same final IoU, same images
        image, gt = ref.load()
        cfg = SessionConfig(max_actions=CFG.max_actions)
        _, rec = Episode(segmenter, ReplayPolicy(texts), cfg).run(image, ref.description, gt)
        assert [mask_digest(m) for m in rec.masks()] == [t["mask"] for t in turns if t["mask"]]
        assert rec.final["iou"] == conv["meta"]["final_iou"]
        replayed = rec.conversation(image)
        assert assistant_texts(replayed) == texts
        imgs = [p["image"] for m in msgs for p in m["content"] if p["type"] == "image"]
        imgs2 = [p["image"] for m in replayed for p in m["content"] if p["type"] == "image"]
        assert len(imgs) == len(imgs2) and all(np.array_equal(a, b) for a, b in zip(imgs, imgs2))


def test_statistics_agree_with_the_conversations(generated):
    out, stats = generated
    convs = list(iter_conversations(out / CONVERSATIONS))
    firsts = [assistant_texts(c["messages"])[0] for c in convs]
    box = sum('"add_bbox"' in t for t in firsts)
    assert stats["openings"] == {k: v for k, v in (("box", box), ("click", len(firsts) - box)) if v}
    corrections = sum('"add_point"' in t for c in convs for t in assistant_texts(c["messages"])[1:])
    acc = stats["acceptance"]
    assert acc["accepted"] == corrections and acc["tried"] >= corrections
    assert acc["rate"] == (corrections / acc["tried"] if acc["tried"] else None)
    hist = stats["turns_histogram"]["actions"]
    assert sum(hist.values()) == len(convs)
    for c in convs:
        assert c["meta"]["num_actions"] == sum(t["action"] != "stop" for t in c["meta"]["turns"])
    assert stats["final_iou"]["kept"]["n"] == len(convs)
    assert stats["final_iou"]["kept"]["mean"] == pytest.approx(
        np.mean([c["meta"]["final_iou"] for c in convs])
    )
    assert stats["episodes"]["filtered"] == {}


def test_resume_after_a_crash_gives_the_same_files(generated, segmenter, tmp_path):
    src, _ = generated
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    ledger = (out / LEDGER).read_text().splitlines(keepends=True)
    convs = (out / CONVERSATIONS).read_text().splitlines(keepends=True)
    # crash: ledger has 1 episode, conversations 2 (+ a torn third line)
    (out / LEDGER).write_text(ledger[0])
    (out / CONVERSATIONS).write_text(convs[0] + convs[1] + convs[2][:50])
    generate(CFG, out, segmenter=segmenter, threads=None, show_progress=False)
    assert (out / CONVERSATIONS).read_text() == "".join(convs)
    after = [json.loads(x) for x in (out / LEDGER).read_text().splitlines()]
    assert after[0] == json.loads(ledger[0])  # kept, not re-run
    assert after[1]["id"] == json.loads(convs[1])["id"] and after[1]["seconds"] is None
    assert sorted(r["id"] for r in after) == sorted(json.loads(x)["id"] for x in ledger)
    with pytest.raises(ValueError, match=r"other parameters \(tau\)"):
        generate(replace(CFG, tau=0.05), out)


def test_two_workers_byte_identical_and_final_iou_filter(generated, tmp_path):
    src, stats = generated
    lines = (src / CONVERSATIONS).read_text().splitlines(keepends=True)
    lines = [x for x in lines if json.loads(x)["id"].endswith("#0")]  # per_sample=1 below
    ious = sorted(json.loads(x)["meta"]["final_iou"] for x in lines)
    thr = ious[len(ious) // 2]  # keeps about half
    cfg = replace(CFG, per_sample=1, min_final_iou=thr)
    out = tmp_path / "w2"
    st = generate(cfg, out, workers=2, threads=1, show_progress=False)
    kept = [x for x in lines if json.loads(x)["meta"]["final_iou"] >= thr]
    assert (out / CONVERSATIONS).read_text() == "".join(kept)
    assert st["episodes"]["kept"] == len(kept) and 0 < len(kept) < len(lines)
    assert st["episodes"]["filtered"] == {"low_iou": len(lines) - len(kept)}
    for x in kept:
        for m in json.loads(x)["messages"]:
            for p in m["content"]:
                if p["type"] == "image":
                    assert (out / p["image"]).read_bytes() == (src / p["image"]).read_bytes()


def test_command_line_validates_parameters(tmp_path, capsys):
    from medsam_agent_rt.training.trajectories import main

    out = tmp_path / "t"
    assert main(["--dataset", "phantoms:1", "--out", str(out), "--tau", "1.5"]) == 1
    assert "tau must be in [0, 1)" in capsys.readouterr().err
    assert main(["--dataset", "phantoms:1", "--out", str(out), "--per-sample", "0"]) == 1
    assert "per_sample must be an integer >= 1" in capsys.readouterr().err
    args = ["--dataset", "phantoms:n=1,size=64", "--modalities", "sonar", "--out", str(out)]
    assert main(args) == 1
    assert "sonar" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
