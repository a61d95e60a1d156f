"""Hypothesis fuzzing of the readers with mutated REAL files (pydicom's and nibabel's bundled test
data, PNG / JPEG / TIFF written here): whatever the bytes, ``read_image`` returns an RGB uint8
image or raises ImageReadError naming the file (never TypeError, RecursionError, MemoryError...);
the GT mask reader and the dataset reader fail only with their documented errors."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from medsam_agent_rt.io import ImageReadError, read_image

# CI runs the listed counts, derandomized; MSRT_FUZZ_SCALE=K runs K times more, random seeds.
SCALE = int(os.environ.get("MSRT_FUZZ_SCALE", "1"))


def fast(n: int) -> settings:
    """``n`` examples (x $MSRT_FUZZ_SCALE), reproducible unless scaled, no deadline."""
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


SEEDS: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def seeds(pydicom_files, nibabel_files) -> None:
    """Fills SEEDS: name -> bytes of one valid file per reader path (a module global, so a
    failing example prints its mutation, not megabytes of seed bytes)."""
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(0)
    out = {
        "ct.dcm": (pydicom_files / "CT_small.dcm").read_bytes(),
        "mr.dcm": (pydicom_files / "MR_small.dcm").read_bytes(),
        "rle.dcm": (pydicom_files / "SC_rgb_rle.dcm").read_bytes(),
        "anat.nii": (nibabel_files / "anatomical.nii").read_bytes(),
        "v2.nii.gz": (nibabel_files / "example_nifti2.nii.gz").read_bytes(),
    }
    d = Path(tempfile.mkdtemp())
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(img).save(d / "a.png")
    Image.fromarray(img).save(d / "a.jpg", quality=80)
    tifffile.imwrite(d / "a.tif", rng.integers(0, 65535, (24, 32, 3), dtype=np.uint16))
    for name in ("a.png", "a.jpg", "a.tif"):
        out[name] = (d / name).read_bytes()
    for name, data in out.items():  # every seed reads cleanly before it is mutated
        (d / name).write_bytes(data)
        assert read_image(d / name).rgb.dtype == np.uint8, name
    SEEDS.update(out)


def mutate(data: bytes, draw) -> bytes:
    """Byte flips (biased to the header), a truncation, or an inserted run."""
    buf = bytearray(data)
    kind = draw(st.sampled_from(["flip", "header", "truncate", "insert"]))
    if kind == "truncate":
        return bytes(buf[: draw(st.integers(0, len(buf) - 1))])
    if kind == "insert":
        i = draw(st.integers(0, len(buf)))
        return bytes(buf[:i]) + draw(st.binary(min_size=1, max_size=64)) + bytes(buf[i:])
    limit = min(len(buf), 1024) if kind == "header" else len(buf)
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, limit - 1))
        buf[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01])) if i % 2 else buf[i] ^ 0xFF
    return bytes(buf)


def check_read(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            loaded = read_image(path)
        except ImageReadError as exc:
            assert str(exc).startswith(str(path)), exc
            return
    rgb = loaded.rgb
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert min(rgb.shape[:2]) >= 2


NAMES = ["ct.dcm", "mr.dcm", "rle.dcm", "anat.nii", "v2.nii.gz", "a.png", "a.jpg", "a.tif"]


@fast(400)
@given(st.sampled_from(NAMES), st.data())
def test_mutated_real_files_read_or_fail_cleanly(name, data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(mutate(SEEDS[name], data.draw))
        check_read(path)


@fast(150)
@given(st.sampled_from(["a.png", "a.jpg", "a.tif"]), st.data())
def test_mutated_gt_masks_read_or_fail_cleanly(name, data):
    from medsam_agent_rt.io import read_mask

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(mutate(SEEDS[name], data.draw))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mask = read_mask(path)
            except (ValueError, OSError):  # the documented errors (they name the file)
                return
        assert mask.dtype == bool and mask.ndim == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = ["file_name", "mask_file", "split", "target", "sentences", "modality", "site", "image_id",
        "category_id", "seed", "sequence"]  # fmt: skip
annotation = st.dictionaries(st.sampled_from(KEYS), json_values | st.sampled_from(
    ["img_CT_liver.png", "img_CT_liver_liver.png", "test", "../x.png", "/etc/hostname", ""]
), max_size=6)  # fmt: skip
documents = st.one_of(
    json_values,
    st.fixed_dictionaries({"annotations": st.lists(annotation, max_size=4)}, optional={
        "images": json_values, "categories": json_values, "info": json_values}),
)  # fmt: skip


@fast(300)
@given(documents)
def test_fuzzed_dataset_json_reads_or_fails_cleanly(doc):
    from medsam_agent_rt.data.biomedparse import DatasetFormatError, read_split

    with tempfile.TemporaryDirectory() as d:
        ds = Path(d) / "ds"
        for sub in ("test", "test_mask"):
            (ds / sub).mkdir(parents=True)
        Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(ds / "test" / "img_CT_liver.png")
        Image.fromarray(np.eye(8, dtype=np.uint8)).save(ds / "test_mask" / "img_CT_liver_liver.png")
        (ds / "test.json").write_text(json.dumps(doc))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                samples = read_split(ds, "test")
            except (DatasetFormatError, FileNotFoundError):
                return
        root = ds.resolve()
        for s in samples:
            for p in (s.image_path, s.mask_path):
                assert root in Path(p).resolve().parents
