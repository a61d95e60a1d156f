"""Checks of an exported SAM graph: the ONNX checker, the input/output contract (names, dtypes,
static output shapes, the one dynamic prompt-token axis, no value-dependent shapes) and the parity
of ONNX Runtime against torch on the same inputs (a deterministic synthetic image and decoder
feeds over the token counts a session uses).

The contract is what the runtimes rely on: ``OnnxSegmenter`` feeds the inputs by name and
TensorRT builds one optimisation profile over the ``sparse_embeddings`` token axis only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.segmenters.exported import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
)

TOKEN_AXIS = "num_tokens"


class GraphContractError(ValueError):
    """An ONNX graph that does not follow the encoder/decoder contract."""


def _dims(value_info: Any) -> list[int | str]:
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


def graph_io(path: str | Path) -> dict[str, dict[str, tuple[str, list[int | str]]]]:
    """{"inputs": {name: (dtype, dims)}, "outputs": {...}} of an ONNX file (weights not loaded);
    a dynamic dimension appears as its symbolic name."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def table(values):
        return {
            v.name: (
                onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                _dims(v),
            )
            for v in values
        }

    return {"inputs": table(model.graph.input), "outputs": table(model.graph.output)}


def check_graph(path: str | Path, part: str, expect: dict[str, tuple[int, ...]]) -> dict:
    """Run the ONNX checker on ``path`` and verify the ``part`` contract: input/output names in
    order, float32 at the boundary, every dimension static and equal to ``expect[name]`` except
    the decoder's ``sparse_embeddings`` axis 1 (dynamic). Returns :func:`graph_io`."""
    import onnx

    onnx.checker.check_model(str(path), full_check=False)
    io = graph_io(path)
    names_in, names_out = (
        (ENCODER_INPUTS, ENCODER_OUTPUTS)
        if part == "encoder"
        else (DECODER_INPUTS, DECODER_OUTPUTS)
    )
    if tuple(io["inputs"]) != names_in or tuple(io["outputs"]) != names_out:
        raise GraphContractError(
            f"{path}: {part} graph must have inputs {names_in} and outputs {names_out}, got "
            f"{tuple(io['inputs'])} and {tuple(io['outputs'])}"
        )
    for kind in ("inputs", "outputs"):
        for name, (dtype, dims) in io[kind].items():
            if dtype != "float32":
                raise GraphContractError(
                    f"{path}: {name} must be float32 at the boundary, got {dtype}"
                )
            want: list[int | str] = list(expect[name])
            if name == "sparse_embeddings":
                want[1] = dims[1] if isinstance(dims[1], str) else "<dynamic>"
            if dims != want:
                raise GraphContractError(f"{path}: {name} must have dims {want}, got {dims}")
    return io


def ort_session(path: str | Path, threads: int = 0):
    """A CPU ONNX Runtime session with full graph optimisation (``threads`` 0: ORT default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def encoder_parity(path: str | Path, x: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Run the encoder graph on ``x`` (1, 3, S, S) and compare with torch's ``reference``."""
    out = ort_session(path).run(None, {"image": x})[0]
    return {"image_embeddings_max_abs": max_abs(out, reference)}


def decoder_parity(
    path: str | Path, cases: list[dict[str, np.ndarray]], references: list[tuple]
) -> dict[str, float]:
    """Run the decoder graph on each feed of ``cases`` (named inputs) and compare with torch's
    (low_res_masks, iou_predictions) ``references``; the worst case of each output, plus the
    fraction of low-res mask pixels whose sign (mask) differs."""
    sess = ort_session(path)
    worst = {"low_res_masks_max_abs": 0.0, "iou_predictions_max_abs": 0.0, "mask_flip_rate": 0.0}
    for feed, (ref_low, ref_iou) in zip(cases, references):
        low, iou = sess.run(None, feed)
        worst["low_res_masks_max_abs"] = max(worst["low_res_masks_max_abs"], max_abs(low, ref_low))
        worst["iou_predictions_max_abs"] = max(
            worst["iou_predictions_max_abs"], max_abs(iou, ref_iou)
        )
        flips = float(np.mean((low > 0) != (ref_low > 0)))
        worst["mask_flip_rate"] = max(worst["mask_flip_rate"], flips)
    return worst


# ----------------------------------------------------------------------------- parity inputs


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 test image: a shaded background, two bright ellipses and
    noise (structure for the encoder, targets for the box/click prompts)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = 40 + 60 * xx / max(width - 1, 1) + 20 * yy / max(height - 1, 1)
    e1 = ((xx - 0.35 * width) / (0.18 * width)) ** 2 + ((yy - 0.5 * height) / (0.25 * height)) ** 2
    e2 = ((xx - 0.7 * width) / (0.1 * width)) ** 2 + ((yy - 0.35 * height) / (0.12 * height)) ** 2
    img = img + 110 * (e1 < 1) + 70 * (e2 < 1)
    img = img[:, :, None] * np.array([1.0, 0.9, 0.8]) + rng.normal(0, 6, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def decoder_cases(model: Any, weights: Any, embedding: Any) -> list[dict[str, np.ndarray]]:
    """Decoder feeds over the token counts a session uses: a box (2 tokens), box + 2 clicks
    (4), one click + pad with a previous mask (2), box + 7 clicks with a mask (9). Coordinates
    are in model-input pixels."""
    from medsam_agent_rt import ops

    s = float(weights.input_size[1])
    h, w = model.mask_input_size
    emb = embedding.detach().cpu().numpy().astype(np.float32)
    box = np.array([0.2, 0.25, 0.55, 0.75], np.float32) * s
    pts = np.array([[0.35, 0.5], [0.6, 0.3]], np.float32) * s
    many = np.stack([np.linspace(0.1, 0.9, 7), np.linspace(0.8, 0.2, 7)], 1).astype(np.float32) * s
    rng = np.random.default_rng(1)
    mask = (rng.normal(0, 4, (1, 1, h, w))).astype(np.float32)
    prompts = [
        (None, None, box, None),
        (pts, np.array([1, 0]), box, None),
        (pts[:1], np.array([1]), None, mask),
        (many, np.array([1, 0, 1, 1, 0, 1, 0]), box, mask),
    ]
    feeds = []
    for p, lab, b, m in prompts:
        coords, labels = ops.sam_prompt_tokens(p, lab, b)
        sparse = ops.encode_sparse_prompts(coords, labels, weights)[None]
        feeds.append(
            {
                "image_embeddings": emb,
                "sparse_embeddings": np.ascontiguousarray(sparse, np.float32),
                "mask_input": np.zeros((1, 1, h, w), np.float32) if m is None else m,
                "has_mask_input": np.array([0.0 if m is None else 1.0], np.float32),
            }
        )
    return feeds


def torch_decoder_outputs(model: Any, feeds: list[dict[str, np.ndarray]]) -> list[tuple]:
    """The float32 torch model's (low_res_masks, iou_predictions) for each feed."""
    import torch as t

    out = []
    with t.inference_mode():
        for f in feeds:
            low, iou = model.decode(*(t.from_numpy(f[n]) for n in DECODER_INPUTS))
            out.append((low.numpy(), iou.numpy()))
    return out
