"""``read_image`` dispatch: format detection from content, clear errors for unsupported or
broken inputs, argument checks, the JSON metadata and the NumPy-only import."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.io import (
    ImageReadError,
    UnsupportedFormatError,
    detect_format,
    read_image,
)


def test_detects_by_content_not_name(tmp_path, dicom_file):
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[2:6, 2:6] = 200  # not constant: a constant image is refused (nothing to segment)
    for fmt, name in [("PNG", "a.jpg"), ("JPEG", "b.png"), ("TIFF", "c"), ("BMP", "d.dat")]:
        Image.fromarray(arr).save(tmp_path / name, format=fmt)
        assert detect_format(tmp_path / name) == fmt.lower()
        assert read_image(tmp_path / name).format == fmt.lower()
    (tmp_path / "ct.png").write_bytes(dicom_file("CT_small.dcm").read_bytes())
    assert detect_format(tmp_path / "ct.png") == "dicom"


def test_detects_nifti_plain_and_gzip(tmp_path):
    nib = pytest.importorskip("nibabel")
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    nib.save(img, tmp_path / "v.nii")
    raw = (tmp_path / "v.nii").read_bytes()
    (tmp_path / "v_nii_renamed.bin").write_bytes(gzip.compress(raw))
    assert detect_format(tmp_path / "v.nii") == "nifti"
    assert detect_format(tmp_path / "v_nii_renamed.bin") == "nifti"
    nib.save(nib.Nifti2Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), tmp_path / "v2.nii")
    assert detect_format(tmp_path / "v2.nii") == "nifti"


def test_unsupported_and_broken_files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "noise.bin").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedFormatError, match=r"noise\.bin: unsupported or unrecognised"):
        read_image(tmp_path / "noise.bin")
    (tmp_path / "noise.png").write_bytes(b"\x01\x02not really a png" * 10)
    with pytest.raises(UnsupportedFormatError, match=r"its name says PNG but"):
        read_image(tmp_path / "noise.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(UnsupportedFormatError, match=r"x\.gz: gzip-compressed file"):
        read_image(tmp_path / "x.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage-after-gzip-magic")
    with pytest.raises(ImageReadError, match=r"bad\.nii\.gz: corrupt gzip"):
        read_image(tmp_path / "bad.nii.gz")
    (tmp_path / "noise.dcm").write_bytes(rng.integers(0, 256, 600, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=r"noise\.dcm"):
        read_image(tmp_path / "noise.dcm")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="is a directory without DICOM images"):
        read_image(tmp_path)  # a directory of non-DICOM files


def test_argument_checks_happen_before_reading(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="axis applies to NIfTI volumes only"):
        read_image(tmp_path / "a.png", axis=0)
    with pytest.raises(ValueError, match="slice_index applies to NIfTI"):
        read_image(tmp_path / "a.png", slice_index=0)
    with pytest.raises(ValueError, match="window width must be > 0"):
        read_image(tmp_path / "missing.png", window=(40, 0))  # before the file is looked at
    with pytest.raises(ValueError, match="window preset must be one of"):
        read_image(tmp_path / "a.png", window="kidney")
    with pytest.raises(ValueError, match="frame must be an int"):
        read_image(tmp_path / "a.png", frame="1")


def test_metadata_is_json_serialisable(demo_png, dicom_file):
    for path in (demo_png, dicom_file("CT_small.dcm")):
        meta = read_image(path).to_dict()
        assert json.loads(json.dumps(meta)) == meta
        assert meta["shape"] and meta["mapping"]["kind"]


def test_loaded_image_validates_rgb():
    from medsam_agent_rt.io import IntensityMapping, LoadedImage

    with pytest.raises(ValueError, match=r"rgb must be an \(H, W, 3\) uint8 array, got 3-D float"):
        LoadedImage(np.zeros((2, 2, 3)), "x", "png", "uint8", (2, 2), IntensityMapping("identity"))


def test_import_io_with_numpy_alone():
    heavy = ["PIL", "pydicom", "nibabel", "tifffile", "cv2", "torch", "scipy"]
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {heavy!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import medsam_agent_rt.io as io_pkg\n"
        "assert callable(io_pkg.read_image)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_extra_is_named(tmp_path, monkeypatch, dicom_file):
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r"medsam-agent-rt\[medical\]"):
        read_image(dicom_file("CT_small.dcm"))
