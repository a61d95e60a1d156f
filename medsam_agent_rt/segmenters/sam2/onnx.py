"""SAM2 image mode in ONNX: export of the encoder and decoder graphs, and the ONNX Runtime
segmenter over them (no torch at run time).

Graphs (``torch.onnx.export(dynamo=True)``, opset 18, float32):
- ``sam2_encoder.onnx``: image (1, 3, S, S) -> image_embed (1, 256, S/16, S/16) with no_mem_embed
  added, feat_s0 (1, 32, S/4, S/4), feat_s1 (1, 64, S/8, S/8);
- ``sam2_decoder.onnx``: image_embed, feat_s0, feat_s1, point_coords (1, T, 2) model-input px,
  point_labels (1, T) int64 in {-1, 0, 1, 2, 3} (T dynamic), mask_input (1, 1, S/4, S/4),
  has_mask_input (1,) -> low_res_masks (1, 4, S/4, S/4), iou_predictions (1, 4) (all 4 tokens;
  the selection runs in ``sam2.segmenter``).
A ``sam2_manifest.json`` records family, config name and input size. The TensorRT path can build
engines from the same two graphs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.segmenters.sam2.segmenter import Sam2PredictorBase

MANIFEST = "sam2_manifest.json"
ENCODER, DECODER = "sam2_encoder.onnx", "sam2_decoder.onnx"


def export_sam2(model: Any, family: str, out_dir: str | Path, opset: int = 18) -> Path:
    """Write the two graphs and the manifest of ``model`` (a sam2.model.Sam2Model) to out_dir."""
    import torch
    from torch import nn

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    s = model.config.image_size

    class Enc(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, image):
            return self.m.encode(image)

    class Dec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, emb, s0, s1, coords, labels, mask_input, has_mask_input):
            low, iou, _, _ = self.m.decode(emb, s0, s1, coords, labels, mask_input, has_mask_input)
            return low, iou

    with torch.no_grad():
        x = torch.zeros(1, 3, s, s)
        emb, s0, s1 = model.encode(x)
        torch.onnx.export(
            Enc(), (x,), str(out / ENCODER), dynamo=True, opset_version=opset,
            input_names=["image"], output_names=["image_embed", "feat_s0", "feat_s1"],
        )  # fmt: skip
        m = s // 4
        args = (
            emb, s0, s1, torch.zeros(1, 3, 2), torch.tensor([[2, 3, -1]]),
            torch.zeros(1, 1, m, m), torch.zeros(1),
        )  # fmt: skip
        tokens = torch.export.Dim("num_tokens", min=1, max=64)
        torch.onnx.export(
            Dec(), args, str(out / DECODER), dynamo=True, opset_version=opset,
            input_names=["image_embed", "feat_s0", "feat_s1", "point_coords", "point_labels",
                         "mask_input", "has_mask_input"],
            output_names=["low_res_masks", "iou_predictions"],
            dynamic_shapes=(None, None, None, {1: tokens}, {1: tokens}, None, None),
        )  # fmt: skip
    manifest = {"family": family, "config": model.config.name, "image_size": s}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def is_sam2_export(path: str | Path) -> bool:
    return Path(path, MANIFEST).is_file()


class Sam2OnnxSegmenter(Sam2PredictorBase):
    """SAM2 image mode on ONNX Runtime from an ``export_sam2`` directory."""

    backend = "onnx"

    def __init__(
        self,
        path: str | Path,
        cache_size: int = 8,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - exercised only without onnxruntime
            raise ImportError(
                "the onnx backend needs ONNX Runtime: pip install 'medsam-agent-rt[onnx]'"
            ) from e
        from medsam_agent_rt.segmenters.families import family_spec

        path = Path(path)
        meta = json.loads((path / MANIFEST).read_text())
        for name in (ENCODER, DECODER):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path}: missing {name} (re-run the SAM2 export)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads)
        prov = providers or ["CPUExecutionProvider"]
        self._enc = ort.InferenceSession(str(path / ENCODER), opts, providers=prov)
        self._dec = ort.InferenceSession(str(path / DECODER), opts, providers=prov)
        super().__init__(
            family_spec(meta["family"]), int(meta["image_size"]), cache_size, str(path)
        )

    def _encode(self, x: np.ndarray) -> Any:
        return tuple(self._enc.run(None, {"image": x}))

    def _embedding_to_numpy(self, embedding: Any) -> np.ndarray:
        return embedding[0]

    def _decode(
        self, embedding: Any, coords: np.ndarray, labels: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        m = self.mask_input_size
        feeds = {
            "image_embed": embedding[0],
            "feat_s0": embedding[1],
            "feat_s1": embedding[2],
            "point_coords": coords[None].astype(np.float32),
            "point_labels": labels[None].astype(np.int64),
            "mask_input": np.zeros((1, 1, *m), np.float32)
            if mask is None
            else mask.reshape(1, 1, *m),
            "has_mask_input": np.array([0.0 if mask is None else 1.0], np.float32),
        }
        low, iou = self._dec.run(None, feeds)
        return low[0], iou[0]
