"""TensorRT backend. Here (no TensorRT): the engine cache key and path layout, the cache logic,
the builder calls per TensorRT version (a recording stand-in of the builder API, no engine),
the decoder's optimisation profile against the exported graph, the missing-TensorRT errors.
Where TensorRT and a GPU exist (``needs_trt``): real engines, parity with ONNX Runtime, a cache
hit on the second construction. Engine outputs are never faked."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from medsam_agent_rt.segmenters.trt_engine import (
    TokenProfile,
    decoder_profile_shapes,
    default_cache_dir,
    engine_key,
    engine_path,
    load_or_build,
    require_tensorrt,
)

KEY = dict(
    onnx_sha256="ab" * 32,
    trt_version="10.13.0",
    gpu_name="NVIDIA Jetson Orin",
    compute_capability=(8, 7),
    precision="fp16",
    profile=TokenProfile(),
    allow_tf32=False,
)


def test_engine_key_depends_on_every_field():
    base = engine_key(**KEY)
    assert base == engine_key(**dict(KEY)) and len(base) == 64
    changes = {
        "onnx_sha256": "cd" * 32,
        "trt_version": "11.0.0",
        "gpu_name": "NVIDIA H100",
        "compute_capability": (9, 0),
        "precision": "fp32",
        "profile": TokenProfile(1, 4, 32),
        "allow_tf32": True,
    }
    keys = {engine_key(**dict(KEY, **{k: v})) for k, v in changes.items()}
    assert base not in keys and len(keys) == len(changes)
    assert engine_key(**dict(KEY, profile=None)) != base  # the encoder has no profile


def test_engine_path_layout(tmp_path):
    key = engine_key(**KEY)
    p = engine_path(tmp_path, "litemedsam", "decoder", "fp16", key)
    assert p.parent == tmp_path and p.name == f"litemedsam-decoder-fp16-{key[:24]}.engine"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("MSRT_TRT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "medsam-agent-rt" / "trt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "medsam-agent-rt" / "trt"
    monkeypatch.setenv("MSRT_TRT_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_token_profile_validation():
    assert (TokenProfile().min, TokenProfile().opt, TokenProfile().max) == (1, 4, 16)
    for bad in ((0, 4, 16), (1, 5, 4), (3, 2, 16)):
        with pytest.raises(ValueError, match="1 <= min <= opt <= max"):
            TokenProfile(*bad)


def test_cache_builds_once_then_hits(tmp_path):
    """The on-disk cache logic with a stand-in build step (bytes, not an engine: no engine is
    deserialized or run here)."""
    calls = []

    def build():
        calls.append(1)
        return b"serialized-plan"

    path = tmp_path / "cache" / "x-decoder-fp16-0123.engine"
    fields = {"onnx_sha256": "ab", "profile": [1, 4, 16]}
    plan, hit = load_or_build(None, tmp_path / "decoder.onnx", path, fields, build)
    assert (plan, hit, len(calls)) == (b"serialized-plan", False, 1)
    assert path.read_bytes() == b"serialized-plan"
    assert json.loads(path.with_suffix(".json").read_text()) == fields
    plan, hit = load_or_build(None, tmp_path / "decoder.onnx", path, fields, build)
    assert (plan, hit, len(calls)) == (b"serialized-plan", True, 1)

    def failing():
        raise RuntimeError("builder failed")

    other = tmp_path / "cache" / "y.engine"
    with pytest.raises(RuntimeError, match="builder failed"):
        load_or_build(None, tmp_path / "d.onnx", other, fields, failing)
    assert not other.exists()


def test_decoder_profile_fits_the_exported_graph(tiny_export):
    """The profile's shapes match the decoder graph's static dims, and only its dynamic token
    axis varies (what TensorRT requires of an optimisation profile)."""
    pytest.importorskip("onnx")
    from medsam_agent_rt.export.onnx_checks import graph_io

    _, exported, _ = tiny_export
    for precision in exported.precisions:
        io = graph_io(exported.graph(precision, "decoder"))["inputs"]
        shapes = decoder_profile_shapes(
            exported.embedding_shape, exported.mask_input_size, TokenProfile(2, 6, 20)
        )
        assert set(shapes) == set(io)
        for name, (dtype, dims) in io.items():
            lo, opt, hi = shapes[name]
            assert dtype == "float32" and len(lo) == len(dims)
            for axis, d in enumerate(dims):
                if isinstance(d, str):
                    assert (name, axis) == ("sparse_embeddings", 1)
                    assert (lo[axis], opt[axis], hi[axis]) == (2, 6, 20)
                else:
                    assert lo[axis] == opt[axis] == hi[axis] == d
        enc = graph_io(exported.graph(precision, "encoder"))["inputs"]
        assert all(isinstance(d, int) for _, dims in enc.values() for d in dims)  # no profile


def test_missing_tensorrt_names_the_extra(monkeypatch, tiny_export):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ImportError, match=r"medsam-agent-rt\[trt\]"):
        require_tensorrt()
    from medsam_agent_rt.segmenters import build_segmenter

    _, exported, _ = tiny_export
    with pytest.raises(ImportError, match=r"medsam-agent-rt\[trt\]"):
        build_segmenter(str(exported.directory), backend="trt")


# ----------------------------------------------------------------------------- real TensorRT


@pytest.fixture(scope="module")
def trt_pair(tiny_export, tmp_path_factory):
    pytest.importorskip("torch")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from medsam_agent_rt.segmenters.onnx_backend import OnnxSegmenter

    _, exported, _ = tiny_export
    return exported, OnnxSegmenter(exported), tmp_path_factory.mktemp("trt_cache")


@pytest.mark.needs_trt
@pytest.mark.parametrize("precision, atol", [("fp32", 1e-3), ("fp16", 5e-2)])
def test_engines_match_onnx_runtime_and_are_cached(trt_pair, precision, atol):
    from medsam_agent_rt.segmenters.trt_backend import TrtSegmenter

    exported, ort_seg, cache = trt_pair
    seg = TrtSegmenter(exported, precision=precision, cache_dir=cache)
    assert seg.cache_hits == {"encoder": False, "decoder": False}
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)
    box = np.array([5.0, 4.0, 70.0, 45.0])
    pts, labels = np.array([[10.0, 12.0], [60.5, 30.0]]), np.array([1, 0])
    for s in (ort_seg, seg):
        s.set_image(image)
    scale = max(1.0, float(np.abs(ort_seg.image_embedding).max()))
    assert np.abs(seg.image_embedding - ort_seg.image_embedding).max() <= atol * scale
    a = ort_seg.predict(pts, labels, box)
    b = seg.predict(pts, labels, box)
    c = seg.predict(pts[:1], labels[:1], None, b.low_res_logits[:1], False)
    d = ort_seg.predict(pts[:1], labels[:1], None, a.low_res_logits[:1], False)
    for want, got in ((a, b), (d, c)):
        scale = max(1.0, float(np.abs(want.low_res_logits).max()))
        assert np.abs(got.low_res_logits - want.low_res_logits).max() <= atol * scale
        assert np.abs(got.scores - want.scores).max() <= atol * 10
        assert (got.masks == want.masks).mean() > 0.99
    again = TrtSegmenter(exported, precision=precision, cache_dir=cache)
    assert again.cache_hits == {"encoder": True, "decoder": True}
    again.set_image(image)
    np.testing.assert_array_equal(again.predict(pts, labels, box).low_res_logits, b.low_res_logits)


@pytest.mark.needs_trt
def test_token_profile_limit_is_enforced(trt_pair):
    from medsam_agent_rt.segmenters.trt_backend import TrtSegmenter

    exported, _, cache = trt_pair
    seg = TrtSegmenter(exported, precision="fp32", cache_dir=cache, max_prompt_tokens=4)
    seg.set_image(np.zeros((40, 40, 3), np.uint8))
    pts = np.tile([[10.0, 10.0]], (6, 1))
    with pytest.raises(ValueError, match="exceed the TensorRT decoder profile"):
        seg.predict(pts, np.ones(6, int))


class _RecordingTrt:
    """A stand-in for the ``tensorrt`` module's BUILDER API only (no engine is produced or run):
    records the calls ``build_serialized_engine`` makes, to check the 10.x / 11.x handling."""

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class BuilderFlag:
        TF32 = "tf32"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    def __init__(self, version, parse_ok=True, plan=b"plan"):
        self.__version__ = version
        self.calls = []
        rec, outer = self.calls, self

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                rec.append(("create_network", flags))
                return "network"

            def create_builder_config(self):
                class Config:
                    def set_memory_pool_limit(self, pool, size):
                        rec.append(("pool", pool, size))

                    def clear_flag(self, flag):
                        rec.append(("clear_flag", flag))

                    def add_optimization_profile(self, profile):
                        rec.append(("add_profile",))

                return Config()

            def create_optimization_profile(self):
                class Profile:
                    def set_shape(self, name, lo, opt, hi):
                        rec.append(("set_shape", name, lo, opt, hi))

                return Profile()

            def build_serialized_network(self, network, config):
                return outer.plan

        class OnnxParser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                rec.append(("parse", path))
                return parse_ok

            def get_error(self, i):
                return "unsupported operator Foo"

        self.Builder, self.OnnxParser, self.plan = Builder, OnnxParser, plan


@pytest.mark.parametrize("version, flags", [("10.13.2", 1 << 5), ("11.1.0", 0)])
def test_builder_calls_per_tensorrt_version(version, flags):
    from medsam_agent_rt.segmenters.trt_engine import build_serialized_engine

    shapes = decoder_profile_shapes((1, 256, 64, 64), (256, 256), TokenProfile())
    trt = _RecordingTrt(version)
    assert build_serialized_engine(trt, "d.onnx", shapes, "fp32", 1 << 20) == b"plan"
    assert ("create_network", flags) in trt.calls  # STRONGLY_TYPED on 10.x only
    assert ("pool", "workspace", 1 << 20) in trt.calls and ("clear_flag", "tf32") in trt.calls
    assert ("set_shape", "sparse_embeddings", (1, 1, 256), (1, 4, 256), (1, 16, 256)) in trt.calls
    trt = _RecordingTrt(version)
    build_serialized_engine(trt, "e.onnx", None, "fp16")
    assert not any(c[0] in ("clear_flag", "set_shape", "add_profile") for c in trt.calls)
    with pytest.raises(RuntimeError, match="could not parse d.onnx: unsupported operator Foo"):
        build_serialized_engine(_RecordingTrt(version, parse_ok=False), "d.onnx", None, "fp32")
    with pytest.raises(RuntimeError, match="failed to build an engine"):
        build_serialized_engine(_RecordingTrt(version, plan=None), "d.onnx", None, "fp32")
