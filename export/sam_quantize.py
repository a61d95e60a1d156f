"""Static int8 (QDQ) image encoder for an exported SAM-family model, calibrated on real-looking
images, added to the export as precision "int8".

Why only the encoder: it is the whole cost of an episode on a CPU (the decoder is ~10 % of an
encode and runs once per turn on 4 + T tokens, where int8 buys little and costs accuracy on the
mask logits). The int8 entry of the manifest names the quantised encoder and the fp32 decoder.

Scheme: ONNX Runtime ``quantize_static``, QDQ format (QuantizeLinear/DequantizeLinear pairs: ONNX
Runtime fuses them into integer kernels — VNNI on AVX512-VNNI CPUs — and OpenVINO reads them as
its own int8 ops), int8 weights per output channel (symmetric), uint8 activations per tensor,
only Conv / Gemm and the MatMuls with a weight operand quantised (attention's activation x
activation MatMuls, layer norms, softmax, GELU stay float), calibrated with
per-tensor min/max over the calibration set (:func:`calibration_images`: phantoms of every
modality and the realpack train split — never the demo set, which is for evaluation).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from medsam_agent_rt.io.errors import missing_extra
from medsam_agent_rt.segmenters.exported import (
    MANIFEST_NAME,
    ExportedModel,
    load_export,
    sha256_file,
)

INT8 = "int8"
QUANTISED_OPS = ("Conv", "MatMul", "Gemm")
REALPACK_EXTS = (".png", ".jpg", ".jpeg")


def _require_quantization():
    try:
        from onnxruntime import quantization
    except ImportError as e:
        raise missing_extra("onnxruntime", "onnx", "int8 quantisation") from e
    return quantization


def calibration_images(
    realpack: str | Path | None, per_dataset: int = 8, phantom_seeds: int = 2
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) uint8 RGB) calibration images: ``phantom_seeds`` phantoms of every
    modality (512 px), then ``per_dataset`` images spread evenly over each dataset's ``train``
    folder of a realpack root (``realpack`` None: phantoms only). Deterministic order."""
    from PIL import Image

    from medsam_agent_rt.data.phantoms import PHANTOM_MODALITIES, generate

    for seed in range(phantom_seeds):
        for modality in PHANTOM_MODALITIES:
            yield f"phantom/{modality}/{seed}", generate(modality, 1000 + seed).image
    if realpack is None:
        return
    root = Path(realpack)
    for train in sorted(p for p in root.glob("*/train") if p.is_dir()):
        files = sorted(f for f in train.iterdir() if f.suffix.lower() in REALPACK_EXTS)
        if not files:
            continue
        picks = np.linspace(0, len(files) - 1, min(per_dataset, len(files))).round().astype(int)
        for i in dict.fromkeys(picks.tolist()):
            with Image.open(files[i]) as im:
                yield f"realpack/{train.parent.name}/{files[i].name}", np.asarray(im.convert("RGB"))


class _EncoderInputs:
    """ONNX Runtime CalibrationDataReader over preprocessed calibration images."""

    def __init__(self, images: Sequence[np.ndarray], exported: ExportedModel) -> None:
        from medsam_agent_rt.segmenters.preprocess import preprocess_image

        pre = exported.preprocessing
        self._feeds = iter([{"image": preprocess_image(im, pre)[0]} for im in images])

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax calibration
        raise NotImplementedError


def quantize_encoder(
    export_dir: str | Path, images: Sequence[np.ndarray], sources: Sequence[str] = ()
) -> ExportedModel:
    """Add precision "int8" to the export at ``export_dir``: ``encoder.int8.onnx`` quantised from
    the fp32 encoder with ``images`` as calibration set, the fp32 decoder, and a manifest entry
    recording the scheme, the calibration sources and the time taken. Rewrites manifest.json."""
    q = _require_quantization()
    exported = load_export(export_dir)
    if "fp32" not in exported.precisions:
        raise ValueError(f"{export_dir} has no fp32 graphs to quantise")
    if not len(images):
        raise ValueError("int8 calibration needs at least one image")
    directory = Path(export_dir)
    fp32 = exported.manifest["graphs"]["fp32"]
    out_name = f"encoder.{INT8}.onnx"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "encoder.prep.onnx"
        q.shape_inference.quant_pre_process(
            str(exported.graph("fp32", "encoder")), str(prepared), skip_symbolic_shape=True
        )
        q.quantize_static(
            str(prepared),
            str(directory / out_name),
            _EncoderInputs(images, exported),
            quant_format=q.QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTISED_OPS),
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True},
        )
    manifest = dict(exported.manifest)
    manifest["graphs"] = dict(manifest["graphs"])
    manifest["graphs"][INT8] = {
        "encoder": {**fp32["encoder"], "file": out_name, "data": []},
        "decoder": dict(fp32["decoder"]),
        "quantization": {
            "scheme": "onnxruntime quantize_static, QDQ, weights int8 per channel, "
            "activations uint8 per tensor, MinMax calibration",
            "ops": list(QUANTISED_OPS),
            "matmul_const_b_only": True,
            "calibration_images": len(images),
            "calibration_sources": sorted({s.rsplit("/", 1)[0] for s in sources}),
            "seconds": round(time.perf_counter() - t0, 1),
        },
    }
    manifest["graphs"][INT8]["encoder"].pop("export_seconds", None)
    manifest["files"] = {**manifest["files"], out_name: sha256_file(directory / out_name)}
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return load_export(directory)


def share_quantized_encoder(export_dir: str | Path) -> ExportedModel:
    """Add precision "int8" to an export whose encoder is shared with a sibling export
    (``export_sam(encoder_from=...)``): the sibling's int8 encoder (``../SIBLING/FILE`` with its
    SHA-256; its quantisation record copied, calibrated on the sibling's fp32 encoder, which
    must be the very file this export's fp32 entry names) and this export's fp32 decoder."""
    exported = load_export(export_dir)
    if exported.shared_encoder is None:
        raise ValueError(f"{export_dir} holds its own encoder: quantise it (quantize_encoder)")
    sibling = load_export(exported.shared_encoder)
    if INT8 not in sibling.precisions:
        raise ValueError(f"{sibling.directory} has no int8 encoder to share")
    if sibling.graph_sha256("fp32", "encoder") != exported.graph_sha256("fp32", "encoder"):
        raise ValueError(
            f"{sibling.directory}'s fp32 encoder is not the one {export_dir} was exported with"
        )
    rel = exported.manifest["shared_encoder"]["directory"] + "/"
    src = sibling.manifest["graphs"][INT8]
    encoder = {**src["encoder"], "file": rel + src["encoder"]["file"]}
    encoder["data"] = [rel + d for d in src["encoder"].get("data", [])]
    manifest = dict(exported.manifest)
    manifest["graphs"] = dict(manifest["graphs"])
    manifest["graphs"][INT8] = {
        "encoder": encoder,
        "decoder": dict(manifest["graphs"]["fp32"]["decoder"]),
        "quantization": {**src["quantization"], "shared_from": sibling.family},
    }
    names = [encoder["file"], *encoder["data"]]
    manifest["files"] = {
        **manifest["files"],
        **{n: sha256_file(exported.file(n)) for n in names},
    }
    (Path(export_dir) / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return load_export(export_dir)
