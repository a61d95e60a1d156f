"""Policies: what drives the segmentation tool. ``build_policy(spec)`` builds one from a spec
string; model-backed policies (hf, openai_compat) are imported only when asked for."""

from medsam_agent_rt.policies.base import Observation, Policy, PolicyTurn, Task
from medsam_agent_rt.policies.clicker import ClickerPolicy
from medsam_agent_rt.policies.expert import ExpertConfig, ExpertPolicy
from medsam_agent_rt.policies.oracle_box import OracleBoxPolicy
from medsam_agent_rt.policies.registry import build_policy, default_policy_spec
from medsam_agent_rt.policies.replay import ReplayPolicy

__all__ = [
    "ClickerPolicy",
    "ExpertConfig",
    "ExpertPolicy",
    "Observation",
    "OracleBoxPolicy",
    "Policy",
    "PolicyTurn",
    "ReplayPolicy",
    "Task",
    "build_policy",
    "default_policy_spec",
]
