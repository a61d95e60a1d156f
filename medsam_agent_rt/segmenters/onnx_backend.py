"""The ONNX Runtime backend: :class:`OnnxSegmenter` over the two graphs of an exported model.

The encoder and decoder graphs (``medsam-agent export sam``; layout in ``segmenters.exported``)
run in two ONNX Runtime sessions; everything around them — image checks, preprocessing, the
shared encoding store, prompt checks, prompt fusion (``ops.encode_sparse_prompts``), mask selection
and post-processing (``ops.postprocess_masks``) — is the code every backend shares
(``segmenters.predictor``). Inputs and outputs are bound with ``IOBinding``: on a GPU execution
provider the cached image embedding stays in device memory and only the prompt tokens, the
previous mask and the outputs cross the bus.

Execution providers: CPU by default; ``device="cuda[:N]"`` uses the CUDA provider (needs the
onnxruntime-gpu package); ``providers=[...]`` picks any list, e.g. TensorRT's provider first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.cpu import thread_policy
from medsam_agent_rt.segmenters.exported import (
    ExportedModel,
    ExportedPredictor,
    default_precision,
    load_export,
)


def require_onnxruntime():
    """The onnxruntime module, or an ImportError naming the extra to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            "the onnx segmenter backend needs ONNX Runtime: pip install 'medsam-agent-rt[onnx]' "
            "(or onnxruntime-gpu for the CUDA / TensorRT execution providers)"
        ) from e
    return onnxruntime


def _device_index(device: str) -> int:
    if device == "cuda":
        return 0
    try:
        return int(device.split(":", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None


def resolve_providers(
    device: str, providers: list[Any] | None, available: list[str]
) -> tuple[list[Any], str, int]:
    """(providers for the sessions, device type of the bound buffers "cpu" | "cuda", device id)
    for ``device`` / an explicit ``providers`` list; a clear error for a provider this
    onnxruntime build does not have."""
    if providers is None:
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device.startswith("cuda"):
            providers = [
                ("CUDAExecutionProvider", {"device_id": _device_index(device)}),
                "CPUExecutionProvider",
            ]
        else:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    missing = [n for n in names if n not in available]
    if missing:
        hint = (
            " (install onnxruntime-gpu)"
            if any("CUDA" in n or "Tensorrt" in n for n in missing)
            else ""
        )
        raise ValueError(
            f"execution provider(s) {', '.join(missing)} are not available in this onnxruntime "
            f"build{hint}; available: {', '.join(available)}"
        )
    gpu = names[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    device_id = 0
    if gpu:
        opts = providers[0][1] if isinstance(providers[0], tuple) else {}
        device_id = int(opts.get("device_id", _device_index(device) if device != "cpu" else 0))
    return list(providers), ("cuda" if gpu else "cpu"), device_id


class OnnxSegmenter(ExportedPredictor):
    """An exported SAM-family model in ONNX Runtime, implementing ``Segmenter``.

    export: an export directory or a loaded :class:`ExportedModel`; precision: "fp32" | "fp16" |
    "int8" (default: :func:`default_precision`); device: "cpu" | "cuda" | "cuda:N"; providers:
    an explicit ORT provider list (overrides ``device``); intra_op_threads: threads per session
    (None: the CPU thread policy, ``medsam_agent_rt.cpu.thread_policy``; 0: ONNX Runtime's own
    default); allow_spinning: let idle ORT threads spin (None: the policy — only on an idle
    host); cache_size: image embeddings kept (LRU by image content); verify: check the files'
    SHA-256 on load.
    """

    backend = "onnx"

    def __init__(
        self,
        export: ExportedModel | str | Path,
        precision: str | None = None,
        device: str = "cpu",
        providers: list[Any] | None = None,
        intra_op_threads: int | None = None,
        allow_spinning: bool | None = None,
        cache_size: int = 8,
        verify: bool = True,
    ) -> None:
        ort = require_onnxruntime()
        exported = export if isinstance(export, ExportedModel) else load_export(export, verify)
        if precision is None:
            precision = default_precision(exported, device)
        enc_path = exported.graph(precision, "encoder")
        dec_path = exported.graph(precision, "decoder")
        if intra_op_threads is not None and int(intra_op_threads) < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {intra_op_threads}")
        policy = thread_policy(intra_op_threads, allow_spinning)
        self.providers, self._device_type, self._device_id = resolve_providers(
            device, providers, ort.get_available_providers()
        )
        self.exported = exported
        self.precision = precision
        self.device = device
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = 0 if intra_op_threads == 0 else policy.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.thread_policy = policy
        spin = "1" if policy.allow_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        self.encoder_session = ort.InferenceSession(str(enc_path), opts, providers=self.providers)
        self.decoder_session = ort.InferenceSession(str(dec_path), opts, providers=self.providers)
        self._ort = ort
        self._init_from_export(exported, cache_size)

    # ------------------------------------------------------------------ model calls
    def _encode(self, x: np.ndarray) -> Any:
        binding = self.encoder_session.io_binding()
        binding.bind_cpu_input("image", x)
        binding.bind_output("image_embeddings", self._device_type, self._device_id)
        self.encoder_session.run_with_iobinding(binding)
        out = binding.get_outputs()[0]
        # CPU: a NumPy array (no copy later); GPU: the OrtValue stays in device memory.
        return out.numpy() if self._device_type == "cpu" else out

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        return embedding if isinstance(embedding, np.ndarray) else embedding.numpy()

    def _release(self) -> None:
        self.encoder_session = self.decoder_session = None  # ORT frees a session with it

    def _decode(
        self, embedding: Any, sparse: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        binding = self.decoder_session.io_binding()
        if isinstance(embedding, np.ndarray):
            binding.bind_cpu_input("image_embeddings", embedding)
        else:
            binding.bind_ortvalue_input("image_embeddings", embedding)
        binding.bind_cpu_input("sparse_embeddings", np.ascontiguousarray(sparse[None], np.float32))
        mask_input, has_mask = self._mask_inputs(mask)
        binding.bind_cpu_input("mask_input", mask_input)
        binding.bind_cpu_input("has_mask_input", has_mask)
        binding.bind_output("low_res_masks", "cpu")
        binding.bind_output("iou_predictions", "cpu")
        self.decoder_session.run_with_iobinding(binding)
        low, iou = binding.copy_outputs_to_cpu()
        return low[0], iou[0]
