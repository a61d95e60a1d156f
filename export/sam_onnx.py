"""SAM-family model -> encoder ONNX + decoder ONNX (FP32 and FP16) + a manifest.

Two thin wrapper modules with no Python branching define the graphs:

- :class:`SamEncoderGraph`: ``image`` (1, 3, S, S) float32, the family's preprocessed and padded
  input (preprocessing stays in NumPy, ``segmenters.preprocess``, shared with every backend) ->
  ``image_embeddings`` (1, C, h, w) float32.
- :class:`SamDecoderGraph`: ``image_embeddings`` (1, C, h, w), ``sparse_embeddings`` (1, T, C)
  from ``ops.encode_sparse_prompts`` (T dynamic: exactly SAM's token list, never padded, since
  extra tokens change SAM's output), ``mask_input`` (1, 1, 4h, 4w), ``has_mask_input`` (1,) ->
  ``low_res_masks`` (1, 4, 4h, 4w) of ALL mask tokens and ``iou_predictions`` (1, 4). No
  ``orig_im_size`` input and no output shape that depends on input values: mask selection and
  upsampling happen outside (``segmenters.predictor``, ``ops.postprocess_masks``).

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), opset 18 by default.
Why: on torch 2.13 it gives clean graphs (LiteMedSAM decoder 280 nodes, no Shape/Gather/OneHot
chains; the TorchScript path gives 955 nodes with shape arithmetic around the token axis and is
deprecated), the dynamic token axis is declared with ``torch.export.Dim`` and checked by the
exporter, and parity is the same (~2e-5 on logits). Opset 18 (>= 17 for LayerNormalization) is
read by TensorRT 10.x (Jetson) and 11.x and every ONNX Runtime since 1.14.

FP16 (TensorRT 11 has no FP16 builder flag: the precision must be in the graph): the model's
weights and activations are float16 except the layer norms, which run in float32 (the autocast
policy: a LayerNorm2d variance in float16 overflows for activations above ~256); inputs and
outputs stay float32 with casts inside the graph, so every runtime feeds the same arrays.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.segmenters.exported import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PROMPT_WEIGHTS_NAME,
    ExportedModel,
    load_export,
    preprocessing_to_dict,
    save_prompt_weights,
    sha256_file,
)

# Precisions traced from torch here (int8 is made from the fp32 graph: export.sam_quantize).
PRECISIONS = ("fp32", "fp16")
DEFAULT_OPSET = 18
MIN_OPSET = 17
# Graphs whose weights exceed this are written with external data (protobuf's 2 GB limit).
EXTERNAL_DATA_BYTES = 1_800_000_000
# ORT-vs-torch limits above which an export is refused (FP32: float rounding only).
FP32_TOLERANCE = {"image_embeddings_max_abs": 1e-3, "low_res_masks_max_abs": 1e-3}


class ExportParityError(RuntimeError):
    """The exported graph does not reproduce the torch model (ORT vs torch above tolerance)."""


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "exporting to ONNX needs PyTorch: pip install 'medsam-agent-rt[torch,onnx]'"
        ) from e
    return torch


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"exporting to ONNX needs onnx, onnxruntime and onnxscript ({e.name} is missing): "
            "pip install 'medsam-agent-rt[onnx]'"
        ) from e


# ----------------------------------------------------------------------------- export


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress lines and its 'torchvision is not installed' warnings."""
    names = ["torch.onnx", "torch.export", "torch._export", "onnxscript"]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), _no_warnings():
            yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


@contextlib.contextmanager
def _no_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _param_bytes(module: Any) -> int:
    return sum(p.numel() * p.element_size() for p in module.state_dict().values())


def export_graph(module: Any, args: tuple, path: Path, part: str, opset: int) -> list[str]:
    """Export one wrapper module to ``path``; returns the names of the files written (the graph
    and, for graphs over ~1.8 GB, its external-data file)."""
    t = _torch()
    names_in = ENCODER_INPUTS if part == "encoder" else DECODER_INPUTS
    names_out = ENCODER_OUTPUTS if part == "encoder" else DECODER_OUTPUTS
    dynamic = None
    if part == "decoder":
        tokens = t.export.Dim("num_tokens", min=1, max=4096)
        dynamic = {n: ({1: tokens} if n == "sparse_embeddings" else None) for n in names_in}
    external = _param_bytes(module) > EXTERNAL_DATA_BYTES
    with _quiet_exporter(), t.no_grad():
        program = t.onnx.export(
            module,
            args,
            input_names=list(names_in),
            output_names=list(names_out),
            opset_version=int(opset),
            dynamo=True,
            dynamic_shapes=dynamic,
            external_data=external,
            optimize=True,
        )
        program.save(str(path), external_data=external)
    files = [path.name]
    data = path.with_name(path.name + ".data")
    if external and data.is_file():
        files.append(data.name)
    return files


# ----------------------------------------------------------------------------- the export


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    import medsam_agent_rt

    t = _torch()
    return {
        "medsam_agent_rt": medsam_agent_rt.__version__,
        "torch": t.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


class _Steps:
    """tqdm over the export steps when installed, else one line per step on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc="export", unit="step", dynamic_ncols=True)
            except ImportError:
                pass

    def step(self, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(what)
        elif self.enabled:
            print(f"export: {what}", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def export_sam(
    model: Any,
    family: Any,
    out_dir: str | Path,
    precisions: tuple[str, ...] = ("fp32",),
    opset: int = DEFAULT_OPSET,
    *,
    source: str = "",
    variant: str = "",
    sample_image: np.ndarray | None = None,
    overwrite: bool = False,
    progress: bool = True,
    encoder_from: str | Path | None = None,
) -> ExportedModel:
    """Export ``model`` (a ``SamModel``) of ``family`` (FamilySpec or name) to ``out_dir``.

    Writes encoder/decoder ONNX per precision ("fp32", "fp16"), the prompt-fusion weights and
    manifest.json, after checking each graph's contract and its ONNX Runtime parity with the
    float32 torch model on ``sample_image`` (default: :func:`synthetic_image`). The directory
    appears complete or not at all; an FP32 parity error above :data:`FP32_TOLERANCE` raises
    ExportParityError. Returns the verified export.

    encoder_from: a sibling export directory (same parent as ``out_dir``) whose encoder graphs
    this model shares (``litemedsam-click``: LiteMedSAM's image encoder, fine-tuned decoder):
    only the decoder is exported; the manifest names the sibling's encoder files as
    ``../SIBLING/FILE`` with their SHA-256 and the parity check runs the sibling's encoder
    against THIS model's torch encoder, so an encoder that is not this model's is refused
    (FP32 tolerance). The sibling must hold every requested precision."""
    from dataclasses import replace

    from medsam_agent_rt.export import onnx_checks
    from medsam_agent_rt.export.onnx_checks import (
        decoder_cases,
        synthetic_image,
        torch_decoder_outputs,
    )
    from medsam_agent_rt.export.sam_graphs import graph_modules

    from medsam_agent_rt.io.atomic import atomic_directory
    from medsam_agent_rt.segmenters.families import family_spec
    from medsam_agent_rt.segmenters.preprocess import preprocess_image
    from medsam_agent_rt.segmenters.torch_backend import prompt_encoder_weights

    t = _torch()
    _require_onnx()
    precisions = tuple(dict.fromkeys(precisions))
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise ValueError(f"precisions must be a non-empty subset of {PRECISIONS}, got {precisions}")
    if not MIN_OPSET <= int(opset) <= 23:
        raise ValueError(f"opset must be in {MIN_OPSET}..23, got {opset}")
    out = Path(out_dir)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output directory {out} exists and is not empty (pass overwrite=True / --overwrite "
            "to replace it)"
        )
    spec = family_spec(family) if isinstance(family, str) else family
    size = int(model.config.input_size)
    pre = replace(spec.preprocessing, input_size=size)
    shared = _shared_encoder(encoder_from, out, precisions, pre) if encoder_from else None
    model = model.float().eval()
    weights = prompt_encoder_weights(model.prompt_encoder)
    image = synthetic_image(3 * size // 4, size) if sample_image is None else sample_image
    x, _ = preprocess_image(image, pre)
    with t.inference_mode():
        embedding = model.encode(t.from_numpy(x))
    feeds = decoder_cases(model, weights, embedding)
    references = torch_decoder_outputs(model, feeds)
    emb_shape = list(embedding.shape)
    expect = {
        "image": (1, 3, size, size),
        "image_embeddings": tuple(emb_shape),
        "sparse_embeddings": (1, "num_tokens", emb_shape[1]),
        "mask_input": (1, 1, *model.mask_input_size),
        "has_mask_input": (1,),
        "low_res_masks": (1, 4, *model.mask_input_size),
        "iou_predictions": (1, 4),
    }
    steps = _Steps(3 * len(precisions) + 1, progress)
    graphs: dict[str, Any] = {}
    files: list[str] = []
    try:
        with atomic_directory(out_dir, overwrite=overwrite) as tmp:
            for precision in precisions:
                enc_mod, dec_mod = graph_modules(model, precision)
                entry: dict[str, Any] = {}
                parts = [
                    ("encoder", enc_mod, (t.from_numpy(x),)),
                    ("decoder", dec_mod, tuple(t.from_numpy(v) for v in feeds[1].values())),
                ]
                if shared is not None:  # the sibling's encoder graph, named relative to DIR
                    entry["encoder"], names = _shared_entry(shared, precision)
                    files += names
                    parts = parts[1:]
                    steps.done()
                for part, mod, args in parts:
                    steps.step(f"{part} {precision}")
                    t0 = time.perf_counter()
                    written = export_graph(mod, args, tmp / f"{part}.{precision}.onnx", part, opset)
                    io_ = onnx_checks.check_graph(tmp / written[0], part, expect)
                    entry[part] = {
                        "file": written[0],
                        "data": written[1:],
                        "inputs": {k: v[1] for k, v in io_["inputs"].items()},
                        "outputs": {k: v[1] for k, v in io_["outputs"].items()},
                        "export_seconds": round(time.perf_counter() - t0, 2),
                    }
                    files += written
                    steps.done()
                steps.step(f"parity {precision}")
                enc_path = _file(tmp, out, entry["encoder"]["file"])
                parity = onnx_checks.encoder_parity(enc_path, x, embedding.numpy())
                parity.update(
                    onnx_checks.decoder_parity(tmp / entry["decoder"]["file"], feeds, references)
                )
                entry["parity"] = {k: float(f"{v:.3g}") for k, v in parity.items()}
                if precision == "fp32":
                    over = {k: parity[k] for k, lim in FP32_TOLERANCE.items() if parity[k] > lim}
                    if over:
                        raise ExportParityError(
                            f"the FP32 ONNX graphs differ from torch beyond {FP32_TOLERANCE}: "
                            f"{over}; nothing was written"
                        )
                graphs[precision] = entry
                steps.done()
            steps.step("manifest")
            save_prompt_weights(
                tmp / PROMPT_WEIGHTS_NAME,
                weights.gaussian_matrix,
                weights.label_embeddings,
                weights.input_size,
            )
            files.append(PROMPT_WEIGHTS_NAME)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "family": spec.name,
                "variant": variant,
                "source": source,
                "preprocessing": preprocessing_to_dict(pre),
                "input_size": size,
                "embedding_shape": emb_shape,
                "mask_input_size": list(model.mask_input_size),
                "num_mask_tokens": 4,
                "prompt_encoder": {"file": PROMPT_WEIGHTS_NAME},
                **(
                    {}
                    if shared is None
                    else {
                        "shared_encoder": {
                            "directory": f"../{shared.directory.resolve().name}",
                            "family": shared.family,
                        }
                    }
                ),
                "opset": int(opset),
                "exporter": "torch.onnx.export(dynamo=True)",
                "dynamic_axes": {"sparse_embeddings": {"1": "num_tokens"}},
                "graphs": graphs,
                "files": {name: sha256_file(_file(tmp, out, name)) for name in files},
                "versions": _versions(),
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
            steps.done()
    finally:
        steps.close()
    return load_export(out_dir)


def _file(tmp: Path, out: Path, name: str) -> Path:
    """A manifest file name during the export: in the temporary folder, or ../SIBLING/FILE
    beside ``out`` (which may not exist yet)."""
    return out.resolve().parent / name[3:] if name.startswith("../") else tmp / name


def _shared_encoder(
    encoder_from: str | Path, out: Path, precisions: tuple[str, ...], pre: Any
) -> ExportedModel:
    """The verified sibling export whose encoder ``out`` will name (see ``export_sam``)."""
    src = Path(encoder_from)
    if src.resolve().parent != out.resolve().parent or src.resolve() == out.resolve():
        raise ValueError(
            f"--encoder-from {src} must be a sibling of --out {out} (same parent folder): the "
            "export names its encoder files as ../SIBLING/FILE, so both travel together"
        )
    shared = load_export(src, verify=True)
    if shared.shared_encoder is not None:
        raise ValueError(f"{src} shares its encoder itself; name the export that holds it")
    missing = [p for p in precisions if p not in shared.precisions]
    if missing:
        raise ValueError(f"{src} has no {', '.join(missing)} encoder to share")
    if preprocessing_to_dict(shared.preprocessing) != preprocessing_to_dict(pre):
        raise ValueError(f"{src} preprocesses images differently from this model's family")
    return shared


def _shared_entry(shared: ExportedModel, precision: str) -> tuple[dict[str, Any], list[str]]:
    """(this export's encoder entry naming the sibling's files, those file names)."""
    rel = f"../{shared.directory.resolve().name}/"
    entry = dict(shared.manifest["graphs"][precision]["encoder"])
    entry["file"] = rel + entry["file"]
    entry["data"] = [rel + d for d in entry.get("data", [])]
    entry["export_seconds"] = 0.0
    return entry, [entry["file"], *entry["data"]]
