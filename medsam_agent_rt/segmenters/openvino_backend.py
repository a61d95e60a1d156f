"""The OpenVINO backend: :class:`OpenVinoSegmenter` over the two ONNX graphs of an exported model.

OpenVINO reads the export's ONNX graphs directly (no conversion step) and compiles them for the
CPU; compiled models are cached on disk (``CACHE_DIR``: the first construction compiles, later
ones load the blob; one folder per graph content, see ``OpenVinoSegmenter._cache_config``).
Precisions:

- "fp32": the fp32 graphs, computed in f32 (``INFERENCE_PRECISION_HINT=f32``);
- "bf16": the same fp32 graphs computed in bfloat16 where the CPU has it (AVX512-BF16 / AMX;
  OpenVINO keeps numerically sensitive layers in f32); refused on a CPU without bf16;
- "int8": the export's int8 QDQ encoder (``export.sam_quantize``) as OpenVINO int8 kernels
  (VNNI / AMX), the fp32 decoder.

Threads follow ``medsam_agent_rt.cpu.thread_policy``; threads are never pinned to cores
(``ENABLE_CPU_PINNING`` off: on a shared host a pinned thread waits for its one core). Everything
around the model calls is the code every backend shares (``segmenters.predictor``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.cpu import cpu_features, thread_policy
from medsam_agent_rt.io.errors import missing_extra
from medsam_agent_rt.segmenters.exported import (
    ExportedModel,
    ExportedPredictor,
    derived_cache_dir,
    load_export,
)

PRECISIONS = ("fp32", "bf16", "int8")


def require_openvino():
    """The openvino module, or an ImportError naming the extra to install."""
    try:
        import openvino
    except ImportError as e:
        raise missing_extra("openvino", "openvino", "the openvino segmenter backend") from e
    return openvino


def default_cache_dir() -> Path:
    """$MSRT_OPENVINO_CACHE, else $XDG_CACHE_HOME/medsam-agent-rt/openvino, else
    ~/.cache/medsam-agent-rt/openvino."""
    return derived_cache_dir("openvino", "MSRT_OPENVINO_CACHE")


def has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    f = cpu_features()
    return f["avx512_bf16"] or f["amx_bf16"]


def default_precision() -> str:
    """bf16 where the CPU has it (Dice within 0.005 of fp32 torch on the demo masks, README
    "CPU speed"), else "fp32"."""
    return "bf16" if has_bf16() else "fp32"


class OpenVinoSegmenter(ExportedPredictor):
    """An exported SAM-family model in OpenVINO on the CPU, implementing ``Segmenter``.

    export: an export directory or :class:`ExportedModel`; precision: "fp32" | "bf16" | "int8"
    (default :func:`default_precision`); threads / allow_spinning: see ``cpu.thread_policy`` (OpenVINO's threads
    do not spin; ``allow_spinning`` only enters the recorded policy); cache_dir: compiled-model
    cache (default :func:`default_cache_dir`; ``False``: none); cache_size: image embeddings
    kept; verify: check the files' SHA-256 on load.
    """

    backend = "openvino"

    def __init__(
        self,
        export: ExportedModel | str | Path,
        precision: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        allow_spinning: bool | None = None,
        cache_dir: str | Path | bool | None = None,
        cache_size: int = 8,
        verify: bool = True,
    ) -> None:
        ov = require_openvino()
        if device != "cpu":
            raise ValueError(f"the openvino backend runs on device 'cpu', got {device!r}")
        if precision is None:
            precision = default_precision()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "bf16" and not has_bf16():
            raise ValueError("precision 'bf16' needs a CPU with AVX512-BF16 or AMX (none here)")
        exported = export if isinstance(export, ExportedModel) else load_export(export, verify)
        graphs = "int8" if precision == "int8" else "fp32"
        self.exported, self.precision, self.device = exported, precision, device
        self.thread_policy = thread_policy(threads, allow_spinning)
        core = ov.Core()
        self.cache_dir = None
        if cache_dir is not False:
            self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.thread_policy.threads,
            "ENABLE_CPU_PINNING": False,
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        self._compiled = {
            part: core.compile_model(
                str(exported.graph(graphs, part)),
                "CPU",
                {**config, **self._cache_config(exported, graphs, part)},
            )
            for part in ("encoder", "decoder")
        }
        # One infer request per graph, each behind a lock: an InferRequest is not thread-safe,
        # and episodes on other threads share this segmenter (segmenters.store).
        self._requests = {part: c.create_infer_request() for part, c in self._compiled.items()}
        self._locks = {part: threading.Lock() for part in self._compiled}
        self._init_from_export(exported, cache_size)

    def _cache_config(self, exported: ExportedModel, graphs: str, part: str) -> dict[str, str]:
        """The graph's compiled-model cache: ``cache_dir/<SHA-256 of the graph, 16 hex>``.
        OpenVINO keys its cache on the model's path, size and mtime, not its content: a decoder
        re-exported in place (same architecture, same size) could load the stale compiled blob.
        Keyed on the manifest's hash, a changed graph compiles anew and a graph two exports share
        (litemedsam-click's encoder is litemedsam's) compiles once."""
        if self.cache_dir is None:
            return {}
        directory = self.cache_dir / exported.graph_sha256(graphs, part)[:16]
        directory.mkdir(parents=True, exist_ok=True)
        return {"CACHE_DIR": str(directory)}

    def _encode(self, x: np.ndarray) -> np.ndarray:
        with self._locks["encoder"]:
            request = self._requests["encoder"]
            request.infer({"image": x}, share_inputs=True)
            return np.array(request.get_tensor("image_embeddings").data, copy=True)

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        return embedding

    def _release(self) -> None:
        self._requests = self._compiled = {}

    def _decode(
        self, embedding: Any, sparse: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        mask_input, has_mask = self._mask_inputs(mask)
        feeds = {
            "image_embeddings": embedding,
            "sparse_embeddings": np.ascontiguousarray(sparse[None], np.float32),
            "mask_input": mask_input,
            "has_mask_input": has_mask,
        }
        with self._locks["decoder"]:
            request = self._requests["decoder"]
            request.infer(feeds)
            low = np.array(request.get_tensor("low_res_masks").data[0], copy=True)
            iou = np.array(request.get_tensor("iou_predictions").data[0], copy=True)
        return low, iou
