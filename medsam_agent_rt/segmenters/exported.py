"""An exported model directory (``medsam-agent export sam``): its manifest, read and verified.

Layout::

    DIR/manifest.json                 format, family, preprocessing, sizes, opset, hashes, parity
    DIR/prompt_encoder.safetensors    the prompt-fusion weights (ops.encode_sparse_prompts)
    DIR/encoder.fp32.onnx             (1, 3, S, S) float32 -> image_embeddings (1, C, h, w)
    DIR/decoder.fp32.onnx             image_embeddings, sparse_embeddings (1, T, C) with T dynamic,
                                      mask_input (1, 1, 4h, 4w), has_mask_input (1,)
                                      -> low_res_masks (1, 4, 4h, 4w), iou_predictions (1, 4)
    DIR/encoder.fp16.onnx, DIR/decoder.fp16.onnx   the same graphs computing in float16, with
                                      float32 inputs and outputs (casts inside the graph)
    DIR/encoder.int8.onnx             static int8 QDQ encoder (``export.sam_quantize``; the int8
                                      precision's decoder entry may name the fp32 decoder file)
    (DIR/<name>.onnx.data             external weights of graphs over 2 GB, e.g. ViT-H FP32)

Every file is listed in the manifest with its SHA-256; :func:`load_export` checks them (and the
format version) before a backend touches the graphs. NumPy only.

Shared encoder: an export of a model whose image encoder is another export's (``litemedsam-click``
is LiteMedSAM with a fine-tuned decoder) may name that export's encoder files instead of holding a
copy (``medsam-agent export sam SPEC --encoder-from SIBLING``): such a file name is
``../SIBLING/FILE``, the sibling directory next to this one (nothing else outside DIR may be
named), listed in ``files`` with its SHA-256 like every other file and in ``shared_encoder``
(``{"directory": "../SIBLING", "family": ...}``). Verification therefore pins the exact encoder
bytes the export's parity was measured with: a re-exported or corrupted sibling fails it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.segmenters.base import Preprocessing
from medsam_agent_rt.segmenters.predictor import SamPredictorBase

FORMAT = "medsam-agent-rt/sam-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PROMPT_WEIGHTS_NAME = "prompt_encoder.safetensors"
PRECISIONS = ("fp32", "fp16", "int8")
# What a CPU runs when no precision is asked for, first available (int8 is opt-in: its Dice
# cost on the demo masks exceeds the 0.005 budget, README "CPU speed"); a GPU prefers fp16.
CPU_PRECISIONS = ("fp32", "int8", "fp16")
GPU_PRECISIONS = ("fp16", "fp32", "int8")
PARTS = ("encoder", "decoder")
ENCODER_INPUTS = ("image",)
ENCODER_OUTPUTS = ("image_embeddings",)
DECODER_INPUTS = ("image_embeddings", "sparse_embeddings", "mask_input", "has_mask_input")
DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")


def derived_cache_dir(kind: str, env: str) -> Path:
    """Where artefacts built from an export on first use are cached (TensorRT engines, OpenVINO
    compiled models): ``$env``, else $XDG_CACHE_HOME/medsam-agent-rt/KIND, else
    ~/.cache/medsam-agent-rt/KIND."""
    import os

    if os.environ.get(env):
        return Path(os.environ[env])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medsam-agent-rt" / kind


class ExportError(ValueError):
    """A directory that is not a usable export: no/unknown manifest, other format version,
    missing file or a file whose SHA-256 differs from the manifest."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file_name(name: str) -> None:
    """A manifest file name is a plain name inside the export directory or ``../SIBLING/FILE``
    (a shared encoder); anything else (absolute, deeper, backslashes) raises ExportError."""
    parts = str(name).split("/")
    plain = len(parts) == 1
    shared = len(parts) == 3 and parts[0] == ".."
    bad = not (plain or shared) or "\\" in str(name)
    if bad or any(p in ("", ".", "..") for p in (parts[-1:] if plain else parts[1:])):
        raise ExportError(
            f"manifest file name {name!r}: expected a file of the export directory or "
            "'../SIBLING/FILE' (an encoder shared with a sibling export)"
        )


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding a manifest.json (not yet validated)."""
    return Path(path, MANIFEST_NAME).is_file()


def preprocessing_to_dict(pre: Preprocessing) -> dict[str, Any]:
    return {f.name: getattr(pre, f.name) for f in fields(Preprocessing)}


def preprocessing_from_dict(d: dict[str, Any]) -> Preprocessing:
    known = {f.name for f in fields(Preprocessing)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
    return Preprocessing(**kwargs)


def save_prompt_weights(path: str | Path, gaussian: np.ndarray, labels: np.ndarray, size) -> None:
    """Write the fusion weights (gaussian (2, C/2), label rows (5, C), input size (H, W))."""
    from medsam_agent_rt.segmenters.safetensors_np import save_file

    save_file(
        {
            "gaussian_matrix": np.ascontiguousarray(gaussian, np.float32),
            "label_embeddings": np.ascontiguousarray(labels, np.float32),
        },
        path,
        metadata={"input_size": json.dumps([int(size[0]), int(size[1])])},
    )


def load_prompt_weights(path: str | Path):
    """The ``ops.PromptEncoderWeights`` stored by :func:`save_prompt_weights`."""
    from medsam_agent_rt import ops
    from medsam_agent_rt.segmenters.safetensors_np import load_file, read_metadata

    tensors = load_file(path)
    size = json.loads(read_metadata(path)["input_size"])
    return ops.PromptEncoderWeights(
        tensors["gaussian_matrix"], tensors["label_embeddings"], tuple(size)
    )


@dataclass(frozen=True)
class ExportedModel:
    """A verified export directory. ``manifest`` is the parsed JSON; the properties below are
    the fields a backend needs."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def family(self) -> str:
        return str(self.manifest["family"])

    @property
    def preprocessing(self) -> Preprocessing:
        return preprocessing_from_dict(self.manifest["preprocessing"])

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(p for p in PRECISIONS if p in self.manifest["graphs"])

    @property
    def mask_input_size(self) -> tuple[int, int]:
        h, w = self.manifest["mask_input_size"]
        return int(h), int(w)

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.manifest["embedding_shape"])

    def graph(self, precision: str, part: str) -> Path:
        """Path of the ``part`` ("encoder" | "decoder") graph at ``precision``."""
        if precision not in self.precisions:
            raise ExportError(
                f"precision {precision!r} is not in the export {self.directory} (it has "
                f"{', '.join(self.precisions) or 'none'}); re-export with --precision {precision}"
            )
        if part not in PARTS:
            raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
        return self.file(self.manifest["graphs"][precision][part]["file"])

    def file(self, name: str) -> Path:
        """Path of a manifest file name (``../SIBLING/FILE`` normalised to the sibling's path)."""
        return Path(os.path.normpath(self.directory / name))

    def graph_sha256(self, precision: str, part: str) -> str:
        """SHA-256 of the graph file (the external-data file, if any, is folded in)."""
        entry = self.manifest["graphs"][precision][part]
        digests = [self.manifest["files"][name] for name in [entry["file"], *entry["data"]]]
        if len(digests) == 1:
            return digests[0]
        return hashlib.sha256("".join(digests).encode()).hexdigest()

    def prompt_weights(self):
        return load_prompt_weights(self.directory / self.manifest["prompt_encoder"]["file"])

    @property
    def source(self) -> str:
        return str(self.directory)

    @property
    def shared_encoder(self) -> Path | None:
        """The sibling export directory whose encoder graphs this export runs, or None."""
        shared = self.manifest.get("shared_encoder")
        return None if not shared else self.file(shared["directory"])


def _fail_missing(directory: Path, what: str) -> ExportError:
    return ExportError(f"{directory} is not a complete medsam-agent-rt export: {what}")


def load_export(directory: str | Path, verify: bool = True) -> ExportedModel:
    """Read ``DIR/manifest.json``, check its format and version and (``verify``) the SHA-256 of
    every file it lists. Raises ExportError naming what is wrong and how to fix it."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ExportError(
            f"{directory} is not an exported model directory: no {MANIFEST_NAME} (export one "
            "with `medsam-agent export sam SPEC --out DIR`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ExportError(f"{path}: expected format {FORMAT!r}, got {got!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ExportError(
            f"{path}: format version {version!r} is not supported by this medsam-agent-rt "
            f"(it reads version {FORMAT_VERSION}); re-export the model with this version"
        )
    for key in ("family", "preprocessing", "graphs", "files", "prompt_encoder", "mask_input_size"):
        if key not in manifest:
            raise _fail_missing(directory, f"the manifest has no {key!r} field")
    if not any(p in manifest["graphs"] for p in PRECISIONS):
        raise _fail_missing(directory, "the manifest lists no fp32 or fp16 graphs")
    listed = set(manifest["files"])
    used = [manifest["prompt_encoder"].get("file")]
    for precision in PRECISIONS:
        for part in PARTS if precision in manifest["graphs"] else ():
            entry = manifest["graphs"][precision].get(part) or {}
            used += [entry.get("file"), *entry.get("data", [])]
    unlisted = sorted({str(n) for n in used if n not in listed})
    if unlisted:  # every file a backend opens must be covered by a SHA-256
        raise _fail_missing(directory, f"{', '.join(unlisted)} not listed in the manifest's files")
    for name, digest in manifest["files"].items():
        check_file_name(name)
        file = directory / name
        if not file.is_file():
            raise _fail_missing(directory, f"{name} is listed in the manifest but missing")
        if verify:
            actual = sha256_file(file)
            if actual != digest:
                raise ExportError(
                    f"{file}: SHA-256 mismatch (manifest {digest[:16]}..., file "
                    f"{actual[:16]}...): the file was modified or corrupted after export; "
                    "re-export the model"
                )
    return ExportedModel(directory, manifest)


def default_precision(exported: ExportedModel, device: str = "cpu") -> str:
    """The precision a backend runs when none is asked for: the first of CPU_PRECISIONS (CPU) or
    GPU_PRECISIONS that the export has."""
    order = CPU_PRECISIONS if device == "cpu" else GPU_PRECISIONS
    return next(p for p in order if p in exported.precisions)


class ExportedPredictor(SamPredictorBase):
    """What the backends running an export directory (onnx, trt) share: the family,
    preprocessing, prompt-fusion weights and sizes come from the manifest, and the decoder's
    ``mask_input`` (1, 1, h, w) / ``has_mask_input`` (1,) float32 inputs are made here."""

    def _init_from_export(self, exported: ExportedModel, cache_size: int) -> None:
        SamPredictorBase.__init__(
            self,
            exported.family,
            exported.preprocessing,
            exported.prompt_weights(),
            exported.mask_input_size,
            cache_size,
            str(exported.directory),
        )
        self._no_mask = np.zeros((1, 1, *self.mask_input_size), np.float32)
        self._has = {False: np.zeros(1, np.float32), True: np.ones(1, np.float32)}

    def _mask_inputs(self, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(mask_input (1, 1, h, w) float32 contiguous, has_mask_input (1,) float32)."""
        m = self._no_mask if mask is None else mask.reshape(1, 1, *self.mask_input_size)
        return np.ascontiguousarray(m, np.float32), self._has[mask is not None]
