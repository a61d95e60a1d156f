"""A separate virtual environment holding the package with chosen extras, built offline from this
checkout, and the ``medsam-agent`` command run in it with its wall time and peak RSS.

Shared by ``tests/edge`` (CI: the ``edge`` extra without torch runs an episode that matches the
torch path) and ``python -m benchmarks.edge_footprint`` (installed size and RSS of the edge
install beside the torch install).

The package's wheel is built from the checkout with the running interpreter's build tools (no
build isolation, CPU-only extension, its own build folder). Requirements come from
``WHEELHOUSE`` (``.whl/edge``), which ``scripts/setup_tests.sh`` fills while it has network:
``pip wheel`` there takes llama-cpp-python's wheel from pip's cache (built once by the test
set-up), so an edge environment installs with ``--no-index`` in seconds and no compiler.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = REPO / ".whl" / "edge"
FORBIDDEN_ON_EDGE = ("torch", "transformers", "scipy")  # what the edge install must not hold
# Held-out phantoms (test split, seed 2000000 as in scripts/demo.sh): (image file, target).
CASES = (
    ("02000000_CT_abdomen.png", "liver in abdomen CT"),
    ("02000001_CT_abdomen.png", "left kidney in abdomen CT"),
)


def requirements(*extras: str, pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The package's own requirements plus those of ``extras``, as pyproject.toml states them."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def build_wheel(out_dir: Path, build_dir: Path) -> Path:
    """This checkout's wheel (CPU-only ``_C``) in ``out_dir``; ``build_dir``: CMake's folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps"]
    cmd += ["-C", f"build-dir={build_dir}", "-w", str(out_dir), str(REPO)]
    _check(cmd, {**os.environ, "MSRT_CUDA": "OFF"})
    (wheel,) = out_dir.glob("medsam_agent_rt-*.whl")
    return wheel


def create_venv(
    venv: Path,
    wheel: Path,
    extras: str,
    *,
    find_links: Sequence[Path] = (WHEELHOUSE,),
    offline: bool = True,
    first: Sequence[str] = (),
) -> Path:
    """A fresh venv at ``venv`` with ``wheel[extras]``; returns its python. ``first``:
    requirements installed before (e.g. the CPU torch pin). No pip inside: the running
    interpreter's pip installs into it (``pip --python``), so it holds the runtime only."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    pip += ["--disable-pip-version-check"]
    if offline:
        pip.append("--no-index")
    for d in find_links:
        pip += ["--find-links", str(d)]
    if first:
        _check(pip + list(first))
    _check(pip + [f"{wheel}[{extras}]"])
    return python


def site_packages(venv: Path) -> Path:
    (path,) = venv.glob("lib/python*/site-packages")
    return path


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed): its installed size."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.stat(p).st_size
    return total


@dataclass
class Run:
    """One child process: exit code, output, wall seconds, peak RSS (MiB, of that process)."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float


def run_measured(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``cmd``; its own peak RSS comes from ``wait4``'s rusage (not the whole tree's max)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            seconds,
            usage.ru_maxrss / 1024,  # Linux: KiB
        )


def make_phantoms(out: Path) -> Path:
    """Write the phantoms of ``CASES`` under ``out`` (this interpreter); returns their folder."""
    cmd = [sys.executable, "-m", "medsam_agent_rt", "data", "phantoms", "--out", str(out)]
    cmd += ["--n", "2", "--seed", "2000000", "--size", "256", "--modalities", "ct"]
    _check(cmd + ["--splits", "test=2", "--no-progress"])
    return out / "phantom-ct" / "test"


def _check(cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run ``cmd``; on failure raise with its output (pip's reason is the useful part)."""
    proc = subprocess.run(list(cmd), env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
