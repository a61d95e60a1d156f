"""A Qwen-VL checkpoint's tensors -> the GGUF tensors llama.cpp expects (text model and mmproj).

Reads safetensors with NumPy only (no torch; BF16 is widened to float32), single file or sharded
(``model.safetensors.index.json``), and renames / reshapes what llama.cpp's own converter does:

- text: ``model.language_model.*`` (Qwen3-VL) or ``model.*`` (Qwen2.5-VL) -> ``blk.N.*`` through
  gguf-py's name map for the text architecture; ``lm_head`` -> ``output``.
- vision: ``model.visual.*`` / ``visual.*`` -> ``v.*`` through the MMPROJ name map, plus
  * the Conv3D patch embedding (temporal kernel 2) split into two Conv2D tensors
    ``v.patch_embd.weight`` and ``v.patch_embd.weight.1``;
  * Qwen2.5-VL's fused ``attn.qkv`` split into q, k, v (Qwen3-VL's graph reads the fused one);
  * Qwen3-VL's final merger -> ``v.post_ln`` + ``mm.0`` / ``mm.2`` and deepstack merger k ->
    ``v.deepstack.<vision layer>.{norm,fc1,fc2}``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


class SafetensorsReader:
    """Lazy NumPy access to a checkpoint's safetensors files (one file or an index of shards)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in self.directory.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(
                f"{self.directory} has no *.safetensors weights (a .bin checkpoint must be "
                "re-saved with safetensors first)"
            )
        self._where: dict[str, tuple[Path, dict[str, Any], int]] = {}
        for name in files:
            path = self.directory / name
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            header.pop("__metadata__", None)
            for key, info in header.items():
                self._where[key] = (path, info, 8 + n)
        self._maps: dict[Path, np.memmap] = {}

    def keys(self) -> list[str]:
        return sorted(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._where[key][1]["shape"])

    def get(self, key: str) -> np.ndarray:
        """The tensor as float32 (floating types) or its own integer type."""
        path, info, base = self._where[key]
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        start, end = info["data_offsets"]
        raw = self._maps[path][base + start : base + end]
        dtype, shape = info["dtype"], tuple(info["shape"])
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            return bits.view(np.float32).reshape(shape)
        if dtype not in _ST_DTYPES:
            raise ValueError(f"tensor {key} has unsupported safetensors dtype {dtype}")
        arr = np.frombuffer(raw, dtype=_ST_DTYPES[dtype]).reshape(shape)
        return arr.astype(np.float32) if arr.dtype.kind == "f" else arr


def _strip(name: str) -> tuple[str, str] | None:
    """("text" | "vision", name in the older Qwen layout) or None for an unknown tensor."""
    for prefix in ("model.language_model.", "language_model.model."):
        if name.startswith(prefix):
            return "text", "model." + name[len(prefix) :]
    if name.startswith(("lm_head.", "language_model.lm_head.")):
        return "text", name.removeprefix("language_model.")
    for prefix in ("model.visual.", "visual."):
        if name.startswith(prefix):
            return "vision", "visual." + name[len(prefix) :]
    if name.startswith("model."):
        return "text", name
    return None


def text_tensors(
    reader: SafetensorsReader, arch: Any, n_layers: int, tie_embeddings: bool
) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array in HF layout) of the text decoder."""
    import gguf

    names = gguf.get_tensor_name_map(arch, n_layers)
    seen = set()
    for key in reader.keys():
        where = _strip(key)
        if where is None or where[0] != "text":
            continue
        new = names.get_name(where[1], try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"text tensor {key} has no llama.cpp name; cannot export it")
        seen.add(new)
        yield new, reader.get(key)
    if "output.weight" not in seen and not tie_embeddings:
        raise ValueError("checkpoint has no lm_head.weight and does not tie embeddings")


def vision_tensors(
    reader: SafetensorsReader, family: str, n_blocks: int, deepstack: list[int]
) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) of the vision tower and projector ("mmproj")."""
    import gguf

    # max(.., 8): "mm.2" is looked up as block 2 of the map, whatever the depth
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, max(n_blocks, 8))
    for key in reader.keys():
        where = _strip(key)
        if where is None or where[0] != "vision":
            continue
        name, data = where[1], reader.get(key)
        if name == "visual.patch_embed.proj.weight":
            if data.ndim != 5 or data.shape[2] != 2:
                raise ValueError(
                    f"{key}: expected a Conv3D kernel (out, in, 2, P, P), got shape {data.shape}"
                )
            yield "v.patch_embd.weight", data[:, :, 0]
            yield "v.patch_embd.weight.1", data[:, :, 1]
            continue
        if family == "qwen2_5_vl" and ".attn.qkv." in name:
            c = data.shape[0] // 3
            for i, part in enumerate(("q", "k", "v")):
                yield _map(names, name.replace(".qkv.", f".{part}.")), data[i * c : (i + 1) * c]
            continue
        if family == "qwen3_vl" and name.startswith("visual.merger."):
            yield _qwen3_merger(name), data
            continue
        if name.startswith("visual.deepstack_merger_list."):
            _, _, k, part, suffix = name.split(".", 4)
            short = {"norm": "norm", "linear_fc1": "fc1", "linear_fc2": "fc2"}.get(part)
            if short is None or int(k) >= len(deepstack):
                raise ValueError(f"unexpected deepstack tensor {key}")
            yield f"v.deepstack.{deepstack[int(k)]}.{short}.{suffix}", data
            continue
        yield _map(names, name), data


def _map(names: Any, name: str) -> str:
    new = names.get_name(name, try_suffixes=(".weight", ".bias"))
    if new is None:
        raise ValueError(f"vision tensor {name} has no llama.cpp (mmproj) name; cannot export it")
    return new


def _qwen3_merger(name: str) -> str:
    suffix = name.rsplit(".", 1)[1]
    part = name.split(".")[2]
    target = {"norm": "v.post_ln", "linear_fc1": "mm.0", "linear_fc2": "mm.2"}.get(part)
    if target is None:
        raise ValueError(f"unexpected Qwen3-VL merger tensor {name}")
    return f"{target}.{suffix}"
