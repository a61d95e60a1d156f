"""Fixtures for the IO tests: pydicom's BUNDLED test files, resolved inside the installed package
(never through ``get_testdata_file``, which may download files that are not bundled)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pydicom_dir() -> Path:
    pytest.importorskip("pydicom")
    import importlib.util

    spec = importlib.util.find_spec("pydicom")
    directory = Path(list(spec.submodule_search_locations)[0]) / "data" / "test_files"
    if not directory.is_dir():
        pytest.skip("pydicom's bundled test files are not installed")
    return directory


@pytest.fixture(scope="session")
def dicom_file(pydicom_dir):
    """dicom_file("CT_small.dcm") -> path of a bundled file, or skip when it is absent."""

    def get(name: str) -> Path:
        path = pydicom_dir / name
        if not path.exists():
            pytest.skip(f"pydicom test file {name} is not bundled with this pydicom")
        return path

    return get


@pytest.fixture(scope="session")
def demo_png(demo_dir) -> Path:
    """One real RGBA 1024x1024 demo image (CT abdomen)."""
    return demo_dir / "demo" / "06_CT_abdomen.png"
