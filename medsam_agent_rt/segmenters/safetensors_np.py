"""A small NumPy reader/writer for the safetensors format (no extra package needed).

Layout: 8-byte little-endian header length N, N bytes of JSON header
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`` (padded
with spaces), then the raw little-endian tensor bytes; offsets are relative to the end of the
header and the tensors must cover the data area exactly (no holes, no overlap).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # returned widened to float32 (NumPy has no bfloat16)
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
_NAMES = {v: k for k, v in _DTYPES.items() if k != "BF16"}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """A file that is not valid safetensors (truncated, corrupt header, bad offsets)."""


def _header(buf: bytes | memoryview, path: str) -> tuple[dict, int]:
    if len(buf) < 8:
        raise SafetensorsError(f"{path}: {len(buf)} bytes, too short for a safetensors header")
    n = int.from_bytes(bytes(buf[:8]), "little")
    if n > _MAX_HEADER or 8 + n > len(buf):
        raise SafetensorsError(
            f"{path}: header length {n} does not fit a file of {len(buf)} bytes (truncated?)"
        )
    try:
        header = json.loads(bytes(buf[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: corrupt JSON header ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    return header, 8 + n


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` dict of a safetensors file (empty when absent)."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        buf = head + f.read(min(n, _MAX_HEADER))
    header, _ = _header(buf, str(path))
    return dict(header.get("__metadata__") or {})


def load_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as writable NumPy arrays (BF16 widened to float32), in
    file order. Raises :class:`SafetensorsError` naming the problem for invalid files."""
    path = str(path)
    data = bytearray(Path(path).read_bytes())
    header, start = _header(memoryview(data), path)
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name = info["dtype"]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(
                f"{path}: tensor {name!r} has a malformed entry {info!r}"
            ) from None
        if dtype_name not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name}")
        dt = _DTYPES[dtype_name]
        if any(s < 0 for s in shape):
            raise SafetensorsError(f"{path}: tensor {name!r} has a negative shape {shape}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if end - begin != nbytes or begin < 0:
            raise SafetensorsError(
                f"{path}: tensor {name!r} ({dtype_name} {shape}) needs {nbytes} bytes, "
                f"its offsets [{begin}, {end}] hold {end - begin}"
            )
        entries.append((begin, end, name, dt, dtype_name, shape))
    data_len = len(data) - start
    pos = 0
    for begin, end, name, *_ in sorted(entries):
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else f"leaves a hole at {pos}"
            raise SafetensorsError(f"{path}: tensor {name!r} at offset {begin} {what}")
        pos = end
    if pos != data_len:
        raise SafetensorsError(
            f"{path}: tensors cover {pos} data bytes but the file holds {data_len} (truncated or "
            "trailing garbage)"
        )
    out: dict[str, np.ndarray] = {}
    for begin, _end, name, dt, dtype_name, shape in sorted(entries, key=lambda e: e[0]):
        arr = np.frombuffer(
            data, dtype=dt, count=int(np.prod(shape, dtype=np.int64)), offset=start + begin
        )
        arr = arr.reshape(shape)
        if dtype_name == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    return out


def save_file(
    tensors: dict[str, np.ndarray], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (NumPy arrays, little-endian dtypes of the table above) in the given
    order; ``metadata`` values must be strings. Written to a temporary file, then renamed."""
    header: dict[str, object] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    offset = 0
    arrays = []
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        arr = arr if arr.flags.c_contiguous else arr.copy(order="C")  # keeps 0-d as 0-d
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        arr = arr.astype(dt, copy=False)
        if dt not in _NAMES:
            raise ValueError(f"tensor {name!r}: dtype {arr.dtype} has no safetensors equivalent")
        header[name] = {
            "dtype": _NAMES[dt],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
        arrays.append(arr)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * ((-len(blob)) % 8)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for arr in arrays:
            f.write(arr.tobytes())
    os.replace(tmp, path)
