"""``medsam_agent_rt.cpu``: usable CPUs (affinity, cgroup quota), the thread / spinning policy
under load and its overrides, CPU features from /proc/cpuinfo, and ``medsam-agent info``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from medsam_agent_rt import cpu

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16
processor\t: 1
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16 amx_int8
"""


@pytest.fixture
def machine(monkeypatch):
    """A fake host: 4 CPUs in the affinity mask, no quota, load set by the test."""
    state = {"load": 0.5}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (state["load"], 0.0, 0.0))
    monkeypatch.setattr(cpu, "_cgroup_quota_cpus", lambda: None)
    monkeypatch.delenv("MEDSAM_THREADS", raising=False)
    monkeypatch.delenv("MEDSAM_SPIN", raising=False)
    return state


def test_threads_are_the_usable_cpus_and_spinning_only_on_an_idle_host(machine):
    idle = cpu.thread_policy()
    assert (idle.threads, idle.allow_spinning) == (4, True)
    machine["load"] = 4.0  # as many runnable tasks as CPUs: others wait for our cores
    busy = cpu.thread_policy()
    assert (busy.threads, busy.allow_spinning) == (4, False)
    assert "load 4.00: no spinning" in busy.reason


def test_quota_caps_the_affinity_mask(machine, monkeypatch):
    monkeypatch.setattr(cpu, "_cgroup_quota_cpus", lambda: 2.5)
    assert cpu.available_cpus() == 2 and cpu.thread_policy().threads == 2


def test_cgroup_quota_file(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu._cgroup_quota_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu._cgroup_quota_cpus(tmp_path) is None
    assert cpu._cgroup_quota_cpus(tmp_path / "missing") is None


def test_explicit_values_and_environment_win(machine, monkeypatch):
    assert cpu.thread_policy(threads=1, allow_spinning=False) == cpu.ThreadPolicy(
        1, False, cpu.thread_policy(threads=1, allow_spinning=False).reason
    )
    monkeypatch.setenv("MEDSAM_THREADS", "3")
    monkeypatch.setenv("MEDSAM_SPIN", "0")
    p = cpu.thread_policy()
    assert (p.threads, p.allow_spinning) == (3, False)
    monkeypatch.setenv("MEDSAM_THREADS", "many")
    with pytest.raises(ValueError, match="MEDSAM_THREADS must be an integer"):
        cpu.thread_policy()


def test_cpu_features_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    f = cpu.cpu_features(path)
    assert set(f) == set(cpu.FEATURES)
    assert f["avx512_bf16"] and f["avx512_vnni"] and f["avx2"]
    assert not f["amx_int8"]  # the first CPU's flags
    assert not any(cpu.cpu_features(tmp_path / "none").values())


def test_info_shows_features_backends_and_the_default_pick():
    from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER, default_choice

    out = subprocess.run(
        [sys.executable, "-m", "medsam_agent_rt", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)
    assert info["cpu_features"] == cpu.cpu_features()
    assert info["cpu_usable"] == cpu.available_cpus()
    assert set(info["backends"]) == {"torch", "onnx", "openvino", "trt"}
    assert info["default_segmenter"] == f"{DEFAULT_SEGMENTER}: {default_choice()}"
    text = subprocess.run(
        [sys.executable, "-m", "medsam_agent_rt", "info"], capture_output=True, text=True
    ).stdout
    assert "default_segmenter" in text and default_choice() in text
