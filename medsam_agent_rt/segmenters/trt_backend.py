"""The TensorRT backend: :class:`TrtSegmenter` over engines built from an exported model.

On first use the encoder and decoder ONNX graphs of the export (``precision`` "fp32" or "fp16":
FP16 is the FP16 graph, TensorRT 11 has no FP16 builder flag) are built into engines and cached
on disk (``segmenters.trt_engine``: key = ONNX SHA-256, TensorRT version, GPU name and compute
capability, precision, token profile); later constructions deserialize them. Both engines run
on one CUDA stream with device buffers allocated once; the stored image embedding stays on the
GPU and is bound to the decoder by address; prompt fusion and post-processing are the shared
``ops`` path (``segmenters.predictor``), so inputs are checked exactly as on the other backends.

Requires TensorRT 10.x or 11.x and a CUDA build of PyTorch (device buffers and the stream are
torch CUDA objects).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.segmenters.exported import ExportedModel, ExportedPredictor, load_export
from medsam_agent_rt.segmenters.trt_engine import (
    TokenProfile,
    TrtEngine,
    build_serialized_engine,
    decoder_profile_shapes,
    default_cache_dir,
    engine_key,
    engine_path,
    load_or_build,
    require_tensorrt,
)
from medsam_agent_rt.transfers import METER, to_host


def _require_torch_cuda(device: str):
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "the trt segmenter backend allocates device buffers with PyTorch: install a CUDA "
            "build of torch ('medsam-agent-rt[torch,trt]')"
        ) from e
    if not torch.cuda.is_available():
        raise RuntimeError("the trt segmenter backend needs a CUDA GPU (torch sees none)")
    if not (device == "cuda" or device.startswith("cuda:")):
        raise ValueError(
            f"the trt backend runs on a GPU: device must be 'cuda' or 'cuda:N', got {device!r}"
        )
    return torch


class TrtSegmenter(ExportedPredictor):
    """An exported SAM-family model in TensorRT, implementing ``Segmenter``.

    export: an export directory or :class:`ExportedModel`; precision: "fp32" | "fp16" (default:
    fp16 when exported, else fp32); device: "cuda" | "cuda:N" ("cpu" is mapped to "cuda");
    cache_dir: engine cache (default ``trt_engine.default_cache_dir()``); max_prompt_tokens /
    opt_prompt_tokens: the decoder's token profile (:class:`TokenProfile`); workspace_mb: the
    builder's workspace limit; allow_tf32: TF32 matmuls in FP32 engines (faster, ~1e-3 off);
    cache_size: image embeddings kept on the GPU (LRU by image content); verify: check the
    export's SHA-256 on load.
    """

    backend = "trt"

    def __init__(
        self,
        export: ExportedModel | str | Path,
        precision: str | None = None,
        device: str = "cuda",
        cache_dir: str | Path | None = None,
        max_prompt_tokens: int = 16,
        opt_prompt_tokens: int = 4,
        workspace_mb: int = 1024,
        allow_tf32: bool = False,
        cache_size: int = 8,
        verify: bool = True,
    ) -> None:
        trt = require_tensorrt()
        device = "cuda" if device == "cpu" else device
        torch = _require_torch_cuda(device)
        exported = export if isinstance(export, ExportedModel) else load_export(export, verify)
        if precision is None:
            precision = "fp16" if "fp16" in exported.precisions else exported.precisions[0]
        self.exported, self.precision = exported, precision
        self.profile = TokenProfile(1, min(opt_prompt_tokens, max_prompt_tokens), max_prompt_tokens)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.device = torch.device(device)
        props = torch.cuda.get_device_properties(self.device)
        self.gpu_name = props.name
        capability = (int(props.major), int(props.minor))
        self.stream = torch.cuda.Stream(device=self.device)
        self.cache_hits: dict[str, bool] = {}
        self.engine_paths: dict[str, Path] = {}
        shapes = {
            "encoder": None,
            "decoder": decoder_profile_shapes(
                exported.embedding_shape, exported.mask_input_size, self.profile
            ),
        }
        engines = {}
        with torch.cuda.device(self.device):
            for part in ("encoder", "decoder"):
                onnx_path = exported.graph(precision, part)
                profile = self.profile if part == "decoder" else None
                fields = {
                    "onnx_sha256": exported.graph_sha256(precision, part),
                    "trt_version": trt.__version__,
                    "gpu_name": self.gpu_name,
                    "compute_capability": capability,
                    "precision": precision,
                    "profile": profile,
                    "allow_tf32": allow_tf32,
                }
                key = engine_key(**fields)
                path = engine_path(self.cache_dir, exported.family, part, precision, key)

                def build(onnx_path=onnx_path, part_shapes=shapes[part]):
                    return build_serialized_engine(
                        trt, onnx_path, part_shapes, precision, workspace_mb << 20, allow_tf32
                    )

                sidecar = dict(fields, profile=None if profile is None else vars(profile))
                plan, hit = load_or_build(trt, onnx_path, path, sidecar, build)
                try:
                    engines[part] = TrtEngine(trt, plan, self.stream)
                except RuntimeError:
                    if not hit:
                        raise
                    path.unlink(missing_ok=True)  # stale cache entry: rebuild once
                    plan, hit = load_or_build(trt, onnx_path, path, sidecar, build)
                    engines[part] = TrtEngine(trt, plan, self.stream)
                self.cache_hits[part] = hit
                self.engine_paths[part] = path
        self.encoder_engine, self.decoder_engine = engines["encoder"], engines["decoder"]
        self._torch = torch
        self._run_lock = threading.Lock()  # one stream and one set of bound buffers per engine
        self._init_from_export(exported, cache_size)

    # ------------------------------------------------------------------ model calls
    @property
    def on_device(self) -> bool:
        return True

    def _encode(self, x: np.ndarray) -> Any:
        torch = self._torch
        x = np.ascontiguousarray(x, np.float32)
        with self._run_lock:
            METER.add("h2d", x.nbytes)
            out = self.encoder_engine.run({"image": x})
            with torch.cuda.stream(self.stream):
                return out["image_embeddings"].clone()  # the stored copy, ordered on the stream

    def _release(self) -> None:
        with self._run_lock:
            self.stream.synchronize()
            self.encoder_engine = self.decoder_engine = None  # contexts, engines and buffers

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        with self._torch.cuda.stream(self.stream):
            return to_host(embedding)

    def _decode_device(self, embedding: Any, sparse: np.ndarray, mask: Any) -> tuple[Any, Any]:
        tokens = int(sparse.shape[0])
        if tokens > self.profile.max:
            raise ValueError(
                f"{tokens} prompt tokens exceed the TensorRT decoder profile (max "
                f"{self.profile.max}); build the segmenter with max_prompt_tokens >= {tokens}"
            )
        torch = self._torch
        sparse = np.ascontiguousarray(sparse[None], np.float32)
        if mask is None or isinstance(mask, np.ndarray):
            mask_input, has_mask = self._mask_inputs(mask)
        else:  # the previous turn's logits, already on the device: bound where they are
            mask_input = mask.reshape(1, 1, *self.mask_input_size).float().contiguous()
            has_mask = self._has[True]
        inputs = {"image_embeddings": embedding, "sparse_embeddings": sparse,
                  "mask_input": mask_input, "has_mask_input": has_mask}  # fmt: skip
        METER.add("h2d", sum(v.nbytes for v in inputs.values() if isinstance(v, np.ndarray)))
        with self._run_lock:  # the output buffers are reused by the next run: copy them out
            out = self.decoder_engine.run(inputs)
            with torch.cuda.stream(self.stream):
                low = out["low_res_masks"][0].float().clone()
                iou = out["iou_predictions"][0].float().clone()
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)  # ops kernels run on the caller's current stream
        for t in (low, iou):
            t.record_stream(current)
        return low, iou

    def _decode(
        self, embedding: Any, sparse: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        low, iou = self._decode_device(embedding, sparse, mask)
        return to_host(low), to_host(iou)
