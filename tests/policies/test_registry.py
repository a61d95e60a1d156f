"""build_policy: every spec form, and clear errors for the rest."""

from __future__ import annotations

import json
import sys
import types

import pytest

from medsam_agent_rt.policies import (
    ClickerPolicy,
    ExpertPolicy,
    OracleBoxPolicy,
    ReplayPolicy,
    build_policy,
    registry,
)


def test_builtin_specs(tmp_path):
    e = build_policy("expert")
    assert isinstance(e, ExpertPolicy) and e.name == "expert" and e.config.seed == 0
    e = build_policy("expert:seed=7,tau=0.02,retries=1,box_prob=0.5")
    assert (e.config.seed, e.config.tau, e.config.retries, e.config.box_prob) == (7, 0.02, 1, 0.5)
    assert e.name == "expert:seed=7,box_prob=0.5,tau=0.02,retries=1"
    assert build_policy(e.name).config == e.config  # the recorded name rebuilds the same policy
    c = build_policy("clicker:3")
    assert isinstance(c, ClickerPolicy) and c.clicks == 3 and c.name == "clicker:3"
    assert build_policy("clicker").clicks == 5
    assert isinstance(build_policy("oracle-box"), OracleBoxPolicy)
    (tmp_path / "s.json").write_text(json.dumps(["a"]))
    assert build_policy(f"replay:{tmp_path / 's.json'}").texts == ["a"]
    r = build_policy(["a", "b"])
    assert isinstance(r, ReplayPolicy) and r.texts == ["a", "b"]
    assert build_policy(r) is r
    for p in (e, c, r):
        assert p.requires_gt == (not isinstance(p, ReplayPolicy))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("expert:seed", "key=value"),
        ("expert:speed=3", "key=value"),
        ("expert:seed=x", "not a int"),
        ("expert:tau=2", "tau"),
        ("expert:jitter_min=0.2,jitter_max=0.1", "jitter"),
        ("clicker:x", "integer K"),
        ("clicker:0", "K >= 1"),
        ("replay:", "replay:FILE"),
        ("gguf:", "gguf:DIR"),
        ("nonsense", "unknown policy spec"),
        ("/no/such/dir", "no such directory"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        build_policy(spec)
    with pytest.raises(TypeError):
        build_policy(3)


def test_model_backed_specs_dispatch_lazily(tmp_path, monkeypatch):
    """A directory -> policies.hf.HFPolicy, a URL -> policies.openai_compat.OpenAIPolicy, each
    imported only when asked for (stand-in modules record the call)."""
    made = []
    for module, cls in (("hf", "HFPolicy"), ("openai_compat", "OpenAIPolicy")):
        fake = types.ModuleType(f"medsam_agent_rt.policies.{module}")
        setattr(
            fake,
            cls,
            lambda spec, _m=module, **kw: (
                made.append((_m, spec, kw)) or types.SimpleNamespace(kind=_m)
            ),
        )
        monkeypatch.setitem(sys.modules, f"medsam_agent_rt.policies.{module}", fake)
    p = build_policy(str(tmp_path), device="cpu")
    assert (p.kind, p.spec) == ("hf", str(tmp_path))
    p = build_policy("http://127.0.0.1:8080", model="m")
    assert (p.kind, p.spec) == ("openai_compat", "http://127.0.0.1:8080")
    assert made == [
        ("hf", str(tmp_path), {"device": "cpu"}),
        ("openai_compat", "http://127.0.0.1:8080", {"model": "m"}),
    ]
    # 'default' is the embedded policy directory, loaded by the same hf path
    from medsam_agent_rt.policies import default_policy_spec

    monkeypatch.setattr(registry, "llama_available", lambda: False)  # the HF form
    p = build_policy("default", device="cpu")
    assert (p.kind, p.spec) == ("hf", "default")
    assert made[-1] == ("hf", default_policy_spec(), {"device": "cpu"})
    monkeypatch.setattr(registry, "default_policy_spec", lambda: None)
    with pytest.raises(ValueError, match="ships no embedded policy"):
        build_policy("default")


def test_missing_backend_module_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "medsam_agent_rt.policies.hf", None)  # import -> ImportError
    with pytest.raises(ImportError, match=r"medsam-agent-rt\[hf\]"):
        build_policy(str(tmp_path))
