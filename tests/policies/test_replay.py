"""replay: scripted texts, from a list or a file (record or list)."""

from __future__ import annotations

import json

import pytest

from medsam_agent_rt.policies import Observation, ReplayPolicy


def obs():
    return Observation(messages=[], turn=0, step=0)


def test_texts_in_order_and_reset_restarts():
    p = ReplayPolicy(["a", "b"])
    assert [p.act(obs()).text, p.act(obs()).text] == ["a", "b"]
    with pytest.raises(RuntimeError, match="exhausted"):
        p.act(obs())
    p.reset(None)
    assert p.act(obs()).text == "a"
    with pytest.raises(TypeError):
        ReplayPolicy("ab")


def test_from_file(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps(["x", "y"]))
    assert ReplayPolicy.from_file(tmp_path / "list.json").texts == ["x", "y"]
    (tmp_path / "rec.json").write_text(json.dumps({"turns": [{"text": "t1"}, {"text": "t2"}]}))
    p = ReplayPolicy.from_file(tmp_path / "rec.json")
    assert p.texts == ["t1", "t2"] and p.name.startswith("replay:")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        ReplayPolicy.from_file(tmp_path / "bad.json")
    (tmp_path / "num.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="string"):
        ReplayPolicy.from_file(tmp_path / "num.json")
    (tmp_path / "obj.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="episode record or a JSON list"):
        ReplayPolicy.from_file(tmp_path / "obj.json")
    with pytest.raises(FileNotFoundError):
        ReplayPolicy.from_file(tmp_path / "missing.json")
