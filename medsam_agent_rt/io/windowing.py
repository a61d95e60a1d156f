"""Intensity mapping to the 8-bit range the agent sees: CT window presets, explicit windows,
min-max and percentile stretching (pure NumPy).

Conventions (all outputs are rounded half up and clipped to 0..255, NaN maps to 0):

- An explicit window ``(C, W)`` or a preset uses the DICOM ``LINEAR_EXACT`` function
  (PS3.3 C.11.2.1.3.2): ``[C - W/2, C + W/2]`` maps linearly onto 0..255, values outside clip.
  This is the usual ML preprocessing (MedSAM, nnU-Net) and is well defined for float data.
- A DICOM file's own window uses the function the file names in VOI LUT Function: ``LINEAR``
  (the DICOM default, PS3.3 C.11.2.1.2.1, which offsets the interval by half a unit for integer
  data), ``LINEAR_EXACT`` or ``SIGMOID``.
- Min-max maps ``[min, max]`` of the finite values onto 0..255 (a constant image gives 0);
  ``percentile`` first takes the 0.5th and 99.5th percentiles as the range (MedSAM's rule for
  MR / ultrasound), so a few outliers do not darken the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Standard CT windows in Hounsfield units as (centre, width).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "soft_tissue": (50.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "liver": (30.0, 150.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "temporal_bone": (600.0, 2800.0),
}

#: Named mappings that are not windows.
STRETCH_MODES = ("minmax", "percentile")

#: The percentile range of the ``percentile`` mode.
PERCENTILE_RANGE = (0.5, 99.5)

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")

#: What callers may pass as ``window``: None (the default rule of each reader), a preset name,
#: "minmax", "percentile", or an explicit (centre, width).
WindowArg = str | tuple[float, float] | None


@dataclass(frozen=True)
class IntensityMapping:
    """How stored values became 0..255.

    kind: "identity" (8-bit data kept as is), "window", "minmax", "percentile", "voi_lut"
        (the file's VOI LUT table), "palette" (DICOM palette colour) or "high_byte" (a 16-bit
        colour PNG read by Pillow, which keeps the high byte of each sample).
    source: "default" (the reader's rule), "explicit" (a (C, W) from the caller),
        "preset:<name>", or "file" (the file's own window / VOI LUT / NIfTI cal_min..cal_max).
    center, width: the window (kind "window"), in the units after rescale (HU for CT).
    low, high: the input values mapped to 0 and 255 (windows: the interval edges).
    function: the VOI LUT function of a window (LINEAR, LINEAR_EXACT or SIGMOID).
    inverted: MONOCHROME1 data, displayed inverted (255 - value) after the mapping.
    """

    kind: str
    source: str = "default"
    center: float | None = None
    width: float | None = None
    low: float | None = None
    high: float | None = None
    function: str | None = None
    inverted: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_preset_name(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def preset_window(name: str) -> tuple[float, float]:
    """The (centre, width) of a preset; names are case-insensitive, '-' and '_' alike."""
    key = normalize_preset_name(name)
    if key not in WINDOW_PRESETS:
        known = ", ".join(sorted(WINDOW_PRESETS))
        raise ValueError(f"window preset must be one of {known}; got {name!r}")
    return WINDOW_PRESETS[key]


def parse_window(text: str) -> str | tuple[float, float]:
    """Parse a ``--window`` value: "C,W" (e.g. "40,400" or "-600,1500") -> (C, W); a preset name,
    "minmax" or "percentile" -> that name (normalised). Raises ValueError naming the value."""
    s = text.strip()
    if "," in s:
        parts = s.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"window must be 'C,W' with two numbers, got {text!r}") from None
        check_window(center, width)
        return (center, width)
    key = normalize_preset_name(s)
    if key in STRETCH_MODES:
        return key
    preset_window(key)  # raises with the list of names
    return key


def check_window_arg(window: WindowArg) -> WindowArg:
    """Validate a ``window`` argument early (before any file is decoded); returns it normalised
    (preset names lower-case with '_', tuples as (float, float))."""
    if window is None:
        return None
    if isinstance(window, str):
        key = normalize_preset_name(window)
        if key not in STRETCH_MODES:
            preset_window(key)
        return key
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(
            "window must be None, a preset name, 'minmax', 'percentile' or (centre, width); "
            f"got {window!r}"
        ) from None
    check_window(center, width)
    return (center, width)


def check_window(center: float, width: float, function: str = "LINEAR_EXACT") -> None:
    if not (np.isfinite(center) and np.isfinite(width)):
        raise ValueError(f"window centre and width must be finite, got ({center}, {width})")
    if function not in VOI_FUNCTIONS:
        raise ValueError(f"window function must be one of {VOI_FUNCTIONS}, got {function!r}")
    minimum = 1.0 if function == "LINEAR" else 0.0
    if width < minimum or (minimum == 0.0 and width <= 0):
        need = ">= 1" if function == "LINEAR" else "> 0"
        raise ValueError(f"window width must be {need} for {function}, got {width}")


def _as_float(values: np.ndarray, name: str = "values") -> np.ndarray:
    a = np.asarray(values)
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Round a 0..255 float array half up, clip, NaN -> 0."""
    out = np.floor(np.nan_to_num(y, nan=0.0, posinf=255.0, neginf=0.0) + 0.5)
    return np.clip(out, 0, 255).astype(np.uint8)


def window_float(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR_EXACT"
) -> np.ndarray:
    """The window function of ``function`` onto 0..255 as float64 (same shape; NaN stays NaN)."""
    check_window(center, width, function)
    x = _as_float(values)
    c, w = float(center), float(width)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):
            return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    # written as (x - lo) / span so that exact halves (e.g. 25.5) stay exact for integer data
    if function == "LINEAR_EXACT":
        lo, hi = c - w / 2.0, c + w / 2.0
        inside = (x - lo) / w * 255.0
    else:  # LINEAR
        lo, hi = c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0
        inside = (x - lo) / (w - 1.0) * 255.0 if w > 1 else np.zeros_like(x)
    y = np.where(x <= lo, 0.0, np.where(x > hi, 255.0, inside))
    return np.where(np.isnan(x), np.nan, y)


def window_to_uint8(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR_EXACT"
) -> np.ndarray:
    """Apply a window (see the module docstring) and round to uint8."""
    return to_uint8(window_float(values, center, width, function))


def finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values, None when there are none."""
    x = _as_float(values)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def percentile_range(
    values: np.ndarray, percentiles: tuple[float, float] = PERCENTILE_RANGE
) -> tuple[float, float] | None:
    x = _as_float(values)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, percentiles)
    return float(lo), float(hi)


def stretch_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto 0..255 (clip outside; an empty range gives zeros)."""
    x = _as_float(values)
    if not high > low:
        return np.zeros(x.shape, np.uint8)
    return to_uint8((np.clip(x, low, high) - low) / (high - low) * 255.0)


def minmax_to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max stretch of the finite values onto 0..255 (constant or empty -> zeros)."""
    rng = finite_range(values)
    if rng is None or rng[0] == rng[1]:
        return np.zeros(np.shape(values), np.uint8)
    return stretch_to_uint8(values, *rng)


def map_to_uint8(
    values: np.ndarray,
    window: WindowArg = None,
    *,
    file_window: tuple[float, float, str] | None = None,
    keep_uint8: bool = True,
) -> tuple[np.ndarray, IntensityMapping]:
    """Map an image of any real dtype ((H, W) or (H, W, C), channels mapped jointly) to uint8.

    window: None -> ``file_window`` (centre, width, function) when given, else uint8 data as is,
        else min-max (``keep_uint8=False``: min-max for uint8 too); a preset name; "minmax";
        "percentile"; or an explicit (centre, width).
    Returns the uint8 array (same shape) and the :class:`IntensityMapping` applied.
    """
    arr = np.asarray(values)
    if isinstance(window, str):
        key = normalize_preset_name(window)
        if key == "minmax":
            return _stretch(arr, "minmax", "explicit", finite_range(arr))
        if key == "percentile":
            return _stretch(arr, "percentile", "explicit", percentile_range(arr))
        c, w = preset_window(key)
        return _window(arr, c, w, "LINEAR_EXACT", f"preset:{key}")
    if window is not None:
        try:
            c, w = (float(v) for v in window)
        except (TypeError, ValueError):
            raise ValueError(
                f"window must be None, a preset name, 'minmax', 'percentile' or (centre, width); "
                f"got {window!r}"
            ) from None
        return _window(arr, c, w, "LINEAR_EXACT", "explicit")
    if file_window is not None:
        c, w, function = file_window
        return _window(arr, float(c), float(w), function, "file")
    if arr.dtype == np.uint8 and keep_uint8:
        return arr.copy(), IntensityMapping("identity", low=0.0, high=255.0)
    return _stretch(arr, "minmax", "default", finite_range(arr))


def _window(arr, c, w, function, source):
    out = window_to_uint8(arr, c, w, function)
    if function == "LINEAR":
        low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    else:
        low, high = c - w / 2, c + w / 2
    return out, IntensityMapping("window", source, c, w, low, high, function)


def _stretch(arr, kind, source, rng):
    if rng is None:
        return np.zeros(arr.shape, np.uint8), IntensityMapping(kind, source)
    low, high = rng
    return stretch_to_uint8(arr, low, high), IntensityMapping(kind, source, low=low, high=high)
