"""Our NumPy safetensors reader/writer: round trips, agreement with the reference `safetensors`
package in both directions, and clear errors for broken files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsam_agent_rt.segmenters.safetensors_np import (
    SafetensorsError,
    load_file,
    read_metadata,
    save_file,
)


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal((5,)).astype(np.float16),
        "f64": rng.standard_normal((2, 2, 2)),
        "i64_scalar": np.array(4416366, np.int64),  # BatchNorm's num_batches_tracked
        "i32": rng.integers(-9, 9, (7,)).astype(np.int32),
        "u8": rng.integers(0, 255, (2, 3), dtype=np.uint8),
        "bool": rng.random((4,)) > 0.5,
        "empty": np.zeros((0, 3), np.float32),
        "big_endian": np.arange(3, dtype=">f4"),
    }


def test_round_trip_and_metadata(tmp_path):
    path = tmp_path / "t.safetensors"
    src = _tensors()
    save_file(src, path, {"source": "test", "sha": "abc"})
    back = load_file(path)
    assert list(back) == list(src)
    for k, v in src.items():
        assert back[k].shape == v.shape and back[k].dtype == v.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back[k], v)
    assert read_metadata(path) == {"source": "test", "sha": "abc"}
    back["f32"][0, 0] = 1.0  # writable


def test_agrees_with_the_reference_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    src = {k: v for k, v in _tensors().items() if k != "big_endian"}
    ours = tmp_path / "ours.safetensors"
    theirs = tmp_path / "theirs.safetensors"
    save_file(src, ours, {"k": "v"})
    st.save_file(src, str(theirs), metadata={"k": "v"})
    for path in (ours, theirs):
        a, b = load_file(path), st.load_file(str(path))
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape


def test_bf16_is_widened(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2")  # exact in bfloat16
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "b.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw.tobytes())
    np.testing.assert_array_equal(load_file(path)["x"], values)


def _write(path, header: dict, data: bytes):
    blob = json.dumps(header).encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data)


@pytest.mark.parametrize(
    "header, data, match",
    [
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 4,
            "cover 8 data bytes but the file holds 4",
        ),
        (
            {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
            b"\0" * 8,
            "needs 12 bytes",
        ),
        (
            {"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}},
            b"\0",
            "unsupported dtype Q7",
        ),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "leaves a hole"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            b"\0" * 8,
            "overlaps",
        ),
        ({"a": {"dtype": "F32"}}, b"", "malformed entry"),
    ],
)
def test_broken_files_are_rejected(tmp_path, header, data, match):
    path = tmp_path / "bad.safetensors"
    _write(path, header, data)
    with pytest.raises(SafetensorsError, match=match):
        load_file(path)


def test_truncated_and_garbage_headers(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(SafetensorsError, match="too short"):
        load_file(path)
    path.write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(SafetensorsError, match="does not fit"):
        load_file(path)
    path.write_bytes((4).to_bytes(8, "little") + b"{{{{")
    with pytest.raises(SafetensorsError, match="corrupt JSON header"):
        load_file(path)


def test_the_embedded_weights_file_is_valid():
    from medsam_agent_rt.assets import lite_medsam_path

    path = lite_medsam_path()
    meta = read_metadata(path)
    assert (
        meta["source_sha256"] == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
    )
    tensors = load_file(path)
    assert len(tensors) == 435
    assert tensors["image_encoder.neck.0.weight"].shape == (256, 320, 1, 1)
    notice = (path.parent / "NOTICE-lite_medsam").read_text()
    assert meta["source_sha256"] in notice and "0.1.1" in notice
    assert "Apache License" in (path.parent / "LICENSE-lite_medsam").read_text()
