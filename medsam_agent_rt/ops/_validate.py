"""Argument checks shared by the public ops; messages name the argument, the expectation and
what arrived (e.g. "mask must be 2-D, got 3-D float32 (2, 4, 4)")."""

from __future__ import annotations

from typing import Any

import numpy as np

MASK_DTYPES = (np.bool_, np.uint8)
_UINT8 = np.dtype(np.uint8)


def describe(x: Any) -> str:
    shape = tuple(getattr(x, "shape", ()))
    dtype = getattr(x, "dtype", type(x).__name__)
    return f"{len(shape)}-D {dtype} {shape}"


def check_ndim(x: Any, name: str, *allowed: int) -> None:
    if len(getattr(x, "shape", ())) not in allowed:
        want = " or ".join(f"{a}-D" for a in allowed)
        raise ValueError(f"{name} must be {want}, got {describe(x)}")


def is_float_name(name: str) -> bool:
    try:
        return bool(np.issubdtype(np.dtype(name), np.floating))
    except TypeError:  # framework-only dtypes such as torch.bfloat16
        return name.startswith(("float", "bfloat"))


def check_mask_dtype(x: Any, name: str, allow_float: bool = False) -> None:
    if isinstance(x, np.ndarray):  # fast path: no string formatting
        kind = x.dtype.kind
        ok = kind == "b" or x.dtype == _UINT8 or (allow_float and kind == "f")
    else:
        dt = str(getattr(x, "dtype", type(x).__name__)).replace("torch.", "")
        ok = dt in ("bool", "uint8") or (allow_float and is_float_name(dt))
    if not ok:
        want = "bool or uint8" + (" (or float logits with a threshold)" if allow_float else "")
        raise ValueError(f"{name} must be {want}, got {describe(x)}")


def check_same_hw(a: Any, an: str, b: Any, bn: str) -> None:
    if tuple(a.shape[-2:]) != tuple(b.shape[-2:]):
        raise ValueError(
            f"{an} and {bn} must have the same H x W, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_nonempty(x: Any, name: str) -> None:
    if any(int(s) == 0 for s in x.shape):
        raise ValueError(f"{name} must not be empty, got {describe(x)}")
