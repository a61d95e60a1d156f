"""The package skeleton: import with NumPy alone, build info, the CLI's info command."""

from __future__ import annotations

import json
import subprocess
import sys

import medsam_agent_rt
from medsam_agent_rt import build_info, has_ext

HEAVY = [
    "torch",
    "onnxruntime",
    "tensorrt",
    "transformers",
    "llama_cpp",
    "scipy",
    "cv2",
    "pydicom",
    "nibabel",
    "PIL",
    "matplotlib",
]


def test_import_with_numpy_alone():
    """Importing the package and its public API pulls in no heavy dependency."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import medsam_agent_rt, medsam_agent_rt.ops, medsam_agent_rt.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(HEAVY) + "))\n"
        "print('medsam_agent_rt.episode' in sys.modules)\n"
        "from medsam_agent_rt import Episode, build_policy, build_segmenter, read_image\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(HEAVY) + "))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "False", "[]"]  # lazy, and still NumPy alone


def test_top_level_names_are_the_real_objects():
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.io import read_image, read_mask
    from medsam_agent_rt.policies import build_policy
    from medsam_agent_rt.segmenters import build_segmenter
    from medsam_agent_rt.session_config import SessionConfig

    got = [getattr(medsam_agent_rt, n) for n in ("Episode", "build_policy", "build_segmenter",
                                                 "read_image", "read_mask", "SessionConfig")]  # fmt: skip
    assert got == [Episode, build_policy, build_segmenter, read_image, read_mask, SessionConfig]
    assert {"Episode", "build_policy", "build_segmenter", "read_image"} <= set(
        medsam_agent_rt.__all__
    ) and set(medsam_agent_rt.__all__) <= set(dir(medsam_agent_rt))
    try:
        medsam_agent_rt.Session  # noqa: B018 - the old name is gone, not aliased
    except AttributeError as exc:
        assert "no attribute 'Session'" in str(exc)
    else:
        raise AssertionError("medsam_agent_rt.Session should not exist")


def test_build_info_fields():
    info = build_info()
    for key in (
        "package_version",
        "extension",
        "cuda",
        "cuda_version",
        "cuda_archs",
        "compiler",
        "ops_backend",
        "cuda_devices",
    ):
        assert key in info
    assert info["package_version"] == medsam_agent_rt.__version__
    assert info["extension"] == has_ext()
    json.dumps(info)


def test_extension_is_built():
    """The test environment is an installed package: _C must load."""
    assert has_ext(), build_info().get("extension_error")


def test_cli_info_json():
    out = subprocess.run(
        [sys.executable, "-m", "medsam_agent_rt", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["package_version"] == medsam_agent_rt.__version__


def test_export_and_training_are_mapped_into_the_package():
    import medsam_agent_rt.export
    import medsam_agent_rt.training

    assert medsam_agent_rt.export.__name__ == "medsam_agent_rt.export"
    assert medsam_agent_rt.training.__name__ == "medsam_agent_rt.training"


def test_wheel_layout(tmp_path):
    """The wheel holds medsam_agent_rt with export/ and training/ mapped in and _C built, and
    leaves benchmarks/ and tests/ out (built without CUDA to keep it quick)."""
    import os
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MSRT_CUDA": "OFF"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "-q",
            "-C",
            f"build-dir={tmp_path / 'build'}",
            "-w",
            str(tmp_path),
            str(repo),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("medsam_agent_rt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "medsam_agent_rt/export/__init__.py" in names
    assert "medsam_agent_rt/training/__init__.py" in names
    assert any(n.startswith("medsam_agent_rt/_C") and n.endswith(".so") for n in names)
    # the server's web page ships with the package (served from package data, air-gapped)
    for page in ("index.html", "app.js", "style.css"):
        assert f"medsam_agent_rt/server/static/{page}" in names
    # the embedded LiteMedSAM weights ship with their licence notice
    for asset in ("lite_medsam.safetensors", "LICENSE-lite_medsam", "NOTICE-lite_medsam"):
        assert f"medsam_agent_rt/assets/{asset}" in names
    # litemedsam-click's decoder side and notice; the shipped ONNX exports, every file each
    # manifest lists (litemedsam-click's names LiteMedSAM's encoders: no second copy ships)
    for asset in ("lite_medsam_click.safetensors", "NOTICE-lite_medsam_click"):
        assert f"medsam_agent_rt/assets/{asset}" in names
    import posixpath

    onnx_dir = repo / "medsam_agent_rt" / "assets" / "onnx"
    for spec in ("litemedsam", "litemedsam-click"):
        manifest = json.loads((onnx_dir / spec / "manifest.json").read_text())
        base = f"medsam_agent_rt/assets/onnx/{spec}/"
        assert base + "manifest.json" in names
        for name in manifest["files"]:
            assert posixpath.normpath(base + name) in names, (spec, name)
    click = [n for n in names if n.startswith("medsam_agent_rt/assets/onnx/litemedsam-click/")]
    assert not any(posixpath.basename(n).startswith("encoder.") for n in click), click
    # the embedded default policy (realpack-tiny) and phantom-tiny (Apache-2.0, by name) ship
    # whole: weights, configs, tokenizer, notes (realpack-tiny's NOTICE: non-commercial terms)
    for name in ("realpack-tiny", "phantom-tiny"):
        policy = f"medsam_agent_rt/assets/policies/{name}/"
        for f in (
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "preprocessor_config.json",
            "README.md",
            "NOTICE",
        ):
            assert policy + f in names, (name, f)
    assert "medsam_agent_rt/assets/policies/realpack-tiny-gguf/manifest.json" in names
    assert not any(n.startswith(("benchmarks/", "tests/", "export/", "training/")) for n in names)
