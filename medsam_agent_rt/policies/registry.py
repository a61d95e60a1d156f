"""``build_policy(spec)``: one string names every policy the CLI, evaluation and training use.

Specs: ``default`` (the embedded policy, see ``default_policy_spec``), ``expert`` /
``expert:seed=3,tau=0.02,...`` (ExpertConfig keys), ``clicker:K``, ``oracle-box``, ``replay:FILE`` (an episode record JSON or a JSON list of texts), a list of texts
(replay), a local model directory (policies.hf, Qwen3-VL / Qwen2.5-VL, needs the ``hf`` extra),
an ``http(s)://`` URL of an OpenAI-compatible server (policies.openai_compat), ``gguf:DIR`` (an
``export policy`` directory) or ``gguf:FILE.gguf`` / a ``.gguf`` path (policies.gguf, llama.cpp,
needs the ``gguf`` extra). A ready Policy object is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsam_agent_rt.policies.base import Policy

SPEC_FORMS = (
    "default (the embedded policy)",
    "expert[:key=value,...]",
    "clicker:K",
    "oracle-box",
    "replay:FILE",
    "a local HF model directory",
    "an http(s):// OpenAI-compatible URL",
    "gguf:DIR or a .gguf file (llama.cpp)",
    "the name of a shipped policy (realpack-tiny, phantom-tiny, or their -gguf exports)",
)


def shipped_policy_spec(name: str) -> str | None:
    """The spec of a policy shipped under medsam_agent_rt/assets/policies/<name> (an HF
    directory, or ``gguf:DIR`` for an export), or None when none has that name."""
    from medsam_agent_rt.assets import ASSETS_DIR

    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = ASSETS_DIR / "policies" / name
    if (path / "manifest.json").is_file():
        return f"gguf:{path}"
    if (path / "config.json").is_file():
        return str(path)
    return None


EMBEDDED_POLICY = "realpack-tiny"  # medsam_agent_rt/assets/policies/<name>/ (see its README)
EMBEDDED_GGUF = "realpack-tiny-gguf"  # its F16 GGUF export (export policy), same directory


def llama_available() -> bool:
    """True when llama-cpp-python is importable (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def default_policy_spec(prefer: str = "auto") -> str | None:
    """The spec of the package's embedded default policy (``realpack-tiny``, a ~2.1M-parameter
    Qwen3-VL: phantom-tiny continued on real images of non-commercial datasets, so its weights
    are non-commercial, see its NOTICE; a demo, not for clinical use): ``gguf:DIR`` of its
    F16 GGUF export when llama-cpp-python is installed (llama.cpp, no torch needed), else the
    Hugging Face directory (the hf policy), or None when the package ships neither.
    ``medsam-agent segment`` uses it when no ``--policy`` is given and asks for one when this
    returns None. ``prefer``: "auto" (as above), "hf" or "gguf" (only that form)."""
    if prefer not in ("auto", "hf", "gguf"):
        raise ValueError(f"prefer must be 'auto', 'hf' or 'gguf', got {prefer!r}")
    gguf = shipped_policy_spec(EMBEDDED_GGUF)
    if gguf and (prefer == "gguf" or (prefer == "auto" and llama_available())):
        return gguf
    if prefer == "gguf":
        return None
    return shipped_policy_spec(EMBEDDED_POLICY)


def build_policy(spec: str | Sequence[str] | Policy, **kwargs: Any) -> Policy:
    """The policy named by ``spec``; ``kwargs`` go to the model-backed policies (hf, openai)."""
    if hasattr(spec, "act") and hasattr(spec, "reset"):
        return spec  # type: ignore[return-value]
    if isinstance(spec, (list, tuple)):
        from medsam_agent_rt.policies.replay import ReplayPolicy

        return ReplayPolicy(list(spec))
    if not isinstance(spec, (str, Path)):
        raise TypeError(
            f"policy spec must be a str, a list of texts or a Policy, got {type(spec).__name__}"
        )
    text = str(spec).strip()
    if text == "default":
        embedded = default_policy_spec()
        if embedded is None:
            raise ValueError("policy 'default': this installation ships no embedded policy")
        return _with_spec(build_policy(embedded, **kwargs), "default")
    name, _, arg = text.partition(":")
    if name == "expert":
        from medsam_agent_rt.policies.expert import ExpertConfig, ExpertPolicy

        return ExpertPolicy(ExpertConfig.from_spec(arg))
    if name == "clicker":
        from medsam_agent_rt.policies.clicker import ClickerPolicy

        try:
            k = int(arg) if arg.strip() else 5
        except ValueError:
            raise ValueError(
                f"clicker spec must be 'clicker:K' with an integer K, got {text!r}"
            ) from None
        return ClickerPolicy(k)
    if text == "oracle-box":
        from medsam_agent_rt.policies.oracle_box import OracleBoxPolicy

        return OracleBoxPolicy()
    if name == "replay":
        from medsam_agent_rt.policies.replay import ReplayPolicy

        if not arg:
            raise ValueError("replay spec must be 'replay:FILE'")
        return ReplayPolicy.from_file(arg)
    if text.startswith(("http://", "https://")):
        cls = _lazy("openai_compat", "OpenAIPolicy", "an OpenAI-compatible server", "")
        return _with_spec(cls(text, **kwargs), text)
    if name == "gguf" or (text.endswith(".gguf") and Path(text).is_file()):
        target = arg if name == "gguf" else text
        if not target:
            raise ValueError("gguf spec must be 'gguf:DIR' (an export) or 'gguf:FILE.gguf'")
        cls = _lazy("gguf", "GGUFPolicy", "a GGUF model (llama.cpp)", "gguf")
        return _with_spec(cls(target, **kwargs), text)
    if text and Path(text).is_dir():
        cls = _lazy("hf", "HFPolicy", "a Hugging Face model directory", "hf")
        return _with_spec(cls(text, **kwargs), text)
    shipped = shipped_policy_spec(text)
    if shipped is not None:
        return _with_spec(build_policy(shipped, **kwargs), text)
    hint = " (no such directory)" if "/" in text or "\\" in text else ""
    raise ValueError(
        f"unknown policy spec {text!r}{hint}; expected one of: {', '.join(SPEC_FORMS)}"
    )


def _with_spec(policy: Any, spec: str) -> Any:
    """Remember the spec a model-backed policy was built from (records show it, not "hf")."""
    try:
        policy.spec = spec
    except AttributeError:  # a policy with __slots__ / read-only attributes keeps its name
        pass
    return policy


def _lazy(module: str, cls: str, what: str, extra: str) -> Any:
    import importlib

    try:
        mod = importlib.import_module(f"medsam_agent_rt.policies.{module}")
    except ImportError as exc:
        need = f" (pip install 'medsam-agent-rt[{extra}]')" if extra else ""
        raise ImportError(
            f"running {what} as the policy needs medsam_agent_rt.policies.{module}{need}: {exc}"
        ) from exc
    return getattr(mod, cls)
