"""The CPU the runtime really has: usable cores, load, instruction-set features, and the thread
policy every CPU backend (ONNX Runtime, OpenVINO) follows on a busy shared machine.

Thread policy (:func:`thread_policy`):

- threads = the CPUs this process may run on (``os.sched_getaffinity``: taskset / cgroup cpusets),
  capped by a cgroup CPU quota (``/sys/fs/cgroup/cpu.max``, e.g. a container limited to 2 CPUs
  on a 64-core host), never ``os.cpu_count()`` of the whole host;
- spinning (idle worker threads busy-waiting for the next parallel region) only when the host is
  idle: when the 1-minute load average is at or above the usable CPUs, other processes are
  waiting for those cores and a spinning thread steals their time slices (and a descheduled
  thread stalls every parallel region of ours: the stalls the README saw with torch's OpenMP);
- ``MEDSAM_THREADS=N`` / ``MEDSAM_SPIN=0|1`` override both for a deployment that knows better.

NumPy-free, import-light: ``medsam-agent info`` and the backends call it at start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: /proc/cpuinfo flags shown by ``medsam-agent info`` (and used to pick precisions).
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def _cgroup_quota_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup v2 CPU quota ("max" or "QUOTA PERIOD"), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(float(quota) / float(period), 1.0)
    except (ValueError, ZeroDivisionError):
        return None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (>= 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota_cpus()
    if quota is not None:
        n = min(n, int(quota))
    return max(1, n)


def load_average() -> float | None:
    """1-minute load average (runnable + uninterruptible tasks), None where unknown."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (empty where unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, bool]:
    """{feature: present} for :data:`FEATURES` (AMX: amx_bf16 / amx_int8 tiles)."""
    flags = cpu_flags(cpuinfo)
    return {f: f in flags for f in FEATURES}


@dataclass(frozen=True)
class ThreadPolicy:
    """threads: intra-op threads per session; allow_spinning: idle threads busy-wait;
    reason: one line saying why (for ``medsam-agent info`` and benchmark records)."""

    threads: int
    allow_spinning: bool
    reason: str


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


def thread_policy(threads: int | None = None, allow_spinning: bool | None = None) -> ThreadPolicy:
    """The policy of the module docstring; explicit ``threads`` / ``allow_spinning`` (then the
    MEDSAM_THREADS / MEDSAM_SPIN variables) take precedence over what is measured."""
    cpus = available_cpus()
    load = load_average()
    why = [f"{cpus} usable CPU(s)"]
    if threads is None:
        threads = _env_int("MEDSAM_THREADS") or cpus
        why.append("MEDSAM_THREADS" if os.environ.get("MEDSAM_THREADS") else "one thread each")
    else:
        why.append("threads as asked")
    if allow_spinning is None:
        env = _env_int("MEDSAM_SPIN")
        if env is not None:
            allow_spinning = bool(env)
            why.append("MEDSAM_SPIN")
        else:
            busy = load is None or load >= cpus
            allow_spinning = not busy
            shown = "unknown" if load is None else f"{load:.2f}"
            why.append(f"load {shown}: {'no spinning' if busy else 'spinning'}")
    return ThreadPolicy(max(1, int(threads)), bool(allow_spinning), ", ".join(why))
