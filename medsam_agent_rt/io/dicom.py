"""DICOM reader (pydicom >= 3, extra ``medical``): CT, MR, ultrasound, X-ray and others.

Pipeline for one frame (``frame``, default 0; pydicom decodes only that frame):

1. Decode. A compressed transfer syntax whose decoder plugin is missing raises
   :class:`MissingDecoderError` naming the syntax and the packages to install.
2. Colour: YBR_* is converted to RGB (pydicom); PALETTE COLOR is expanded through its LUT.
3. Monochrome: Modality LUT — rescale slope / intercept (per frame for enhanced multi-frame
   files, via their functional groups), a Modality LUT Sequence, or RT Dose Grid Scaling.
   Pixel Padding Value pixels are left out of min-max and shown black.
4. VOI: an explicit ``window`` (preset or (C, W), LINEAR_EXACT) wins; else the file's own
   Window Center / Width (the first one when several, its VOI LUT Function), else its VOI LUT
   Sequence, else min-max (see ``windowing``) — except data stored in full 8 bits, used as is.
   Colour images are used as stored when 8-bit, min-max over all channels otherwise.
5. MONOCHROME1 is inverted (255 - value) so that high values are bright, as on a viewer.

Spacing comes from Pixel Spacing, else Imager Pixel Spacing, else the first ultrasound region
in cm. When the frame has Image Position / Orientation (Patient), ``affine`` maps voxel
(column, row, 0) to RAS+ world millimetres (DICOM is LPS: x and y are negated).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.io.errors import ImageReadError, MissingDecoderError, missing_extra
from medsam_agent_rt.io.images import check_frame
from medsam_agent_rt.io.limits import check_shape, check_voxels
from medsam_agent_rt.io.loaded import LoadedImage, gray_to_rgb
from medsam_agent_rt.io.windowing import (
    VOI_FUNCTIONS,
    WINDOW_PRESETS,
    IntensityMapping,
    WindowArg,
    check_window,
    map_to_uint8,
    normalize_preset_name,
    to_uint8,
)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def import_pydicom():
    try:
        import pydicom
    except ImportError:
        raise missing_extra("pydicom", "medical", "reading DICOM files") from None
    if int(pydicom.__version__.split(".")[0]) < 3:
        raise ImportError(
            f"reading DICOM files needs pydicom >= 3.0, found {pydicom.__version__}: "
            "pip install -U 'medsam-agent-rt[medical]'"
        )
    return pydicom


def read_dicom_dataset(path: str | os.PathLike[str], *, force: bool = False, **kwargs: Any):
    """pydicom.dcmread with every parse failure turned into ImageReadError."""
    pydicom = import_pydicom()
    try:
        return pydicom.dcmread(path, force=force, **kwargs)
    except pydicom.errors.InvalidDicomError as e:
        raise ImageReadError(path, f"not a DICOM file ({e})") from e
    except Exception as e:  # noqa: BLE001 - truncated / malformed files raise many types
        raise ImageReadError(path, f"corrupt DICOM file ({type(e).__name__}: {e})") from e


def read_dicom(
    path: str | os.PathLike[str],
    *,
    frame: int | None = None,
    window: WindowArg = None,
    force: bool = False,
) -> LoadedImage:
    """Read one frame of a DICOM file as a :class:`LoadedImage` (module docstring).
    ``force`` reads files without the 128-byte preamble and 'DICM' marker."""
    path = Path(path)
    ds = read_dicom_dataset(path, force=force)
    if not any(k in ds for k in PIXEL_KEYWORDS):
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or ds.get("Modality") or "unknown SOP class"
        raise ImageReadError(path, f"DICOM file has no pixel data ({kind})")
    ts = _transfer_syntax(ds)
    _check_decoder(path, ts)
    rows, cols = _count(path, ds, "Rows"), _count(path, ds, "Columns")
    count = _count(path, ds, "NumberOfFrames", 1)
    samples = _count(path, ds, "SamplesPerPixel", 1)
    check_shape(path, (rows, cols), "DICOM frame (Rows x Columns)")
    check_voxels(path, (count, rows, cols, samples))
    index = check_frame(path, frame, count)
    arr = _decode(path, ds, ts, index)
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    info: dict[str, Any] = {
        "transfer_syntax": ts.name,
        "transfer_syntax_uid": str(ts),
        "sop_class": getattr(ds.get("SOPClassUID"), "name", None),
        "bits_stored": ds.get("BitsStored"),
    }

    rescale = None
    if photometric == "PALETTE COLOR":
        rgb, mapping = _palette(path, ds, arr, window)
    elif samples == 1 and arr.ndim == 2:
        values, rescale = _modality(path, ds, arr, index, info)
        values = _mask_padding(ds, arr, values, info)
        rgb, mapping = _voi(path, ds, values, index, window, info)
        if photometric == "MONOCHROME1":
            rgb = 255 - rgb
            mapping = IntensityMapping(**{**mapping.to_dict(), "inverted": True})
        rgb = gray_to_rgb(rgb)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        if window is None and arr.dtype == np.uint8:
            rgb, mapping = arr, IntensityMapping("identity", low=0.0, high=255.0)
        else:
            rgb, mapping = map_to_uint8(arr, window)
        info["converted_to_rgb"] = photometric != "RGB"
    else:
        raise ImageReadError(
            path,
            f"unsupported DICOM pixel layout: {samples} samples per pixel, photometric "
            f"interpretation {photometric or 'missing'}, decoded shape {tuple(arr.shape)}",
        )

    spacing = _optional(path, "PixelSpacing / ImagerPixelSpacing", _spacing, ds, index, info)
    affine = _optional(
        path, "ImagePositionPatient / ImageOrientationPatient", _affine, ds, index, spacing
    )
    shape = ((count,) if count > 1 else ()) + (rows, cols) + ((samples,) if samples > 1 else ())
    return LoadedImage(
        rgb=np.ascontiguousarray(rgb),
        path=str(path),
        format="dicom",
        original_dtype=str(arr.dtype),
        original_shape=shape,
        mapping=mapping,
        rescale=rescale,
        spacing=spacing,
        frame=index,
        frame_count=count,
        affine=affine,
        modality=ds.get("Modality"),
        photometric=photometric or None,
        info=info,
    )


# ----------------------------------------------------------------------------- decoding
def _transfer_syntax(ds):
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:  # files without meta: the encoding the dataset was read with
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ts = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        if not little:
            ts = ExplicitVRBigEndian
        ds.file_meta.TransferSyntaxUID = ts
    return UID(ts)


_INSTALL_HINTS = (
    ("JPEG-LS", "pip install pyjpegls  (or: pip install pylibjpeg pylibjpeg-libjpeg)"),
    ("JPEG 2000", "pip install pylibjpeg pylibjpeg-openjpeg"),
    ("High-Throughput", "pip install pylibjpeg pylibjpeg-openjpeg"),
    ("JPEG", "pip install pylibjpeg pylibjpeg-libjpeg"),
    ("RLE", "pip install pylibjpeg pylibjpeg-rle"),
)


def _install_hint(ts) -> str:
    name = ts.name
    for key, hint in _INSTALL_HINTS:
        if key in name:
            return f"{hint}  (or: pip install python-gdcm)"
    return "pip install python-gdcm"


def _check_decoder(path: Path, ts) -> None:
    if not ts.is_compressed:
        return
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise MissingDecoderError(
            path, f"pixel data is encoded with {ts.name} ({ts}), which pydicom cannot decode"
        ) from None
    if not decoder.is_available:
        raise MissingDecoderError(
            path,
            f"pixel data is compressed with {ts.name} ({ts}) and no installed plugin decodes "
            f"it; install a decoder: {_install_hint(ts)}",
        )


def _decode(path: Path, ds, ts, index: int) -> np.ndarray:
    from pydicom.pixels import pixel_array

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pydicom's chatter on odd files
            return pixel_array(ds, index=index)
    except Exception as e:  # noqa: BLE001 - decoders raise many types on bad data
        what = f"cannot decode {ts.name} pixel data" if ts.is_compressed else "corrupt pixel data"
        hint = f"; another decoder may help: {_install_hint(ts)}" if ts.is_compressed else ""
        raise ImageReadError(path, f"{what} ({type(e).__name__}: {e}){hint}") from e


# ----------------------------------------------------------------------------- per-frame values
def frame_value(ds, index: int, group: str, keyword: str) -> Any:
    """``keyword`` from the frame's functional group ``group`` (per-frame, then shared), else
    from the top level of the dataset; None when absent."""
    for fg_seq in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        fgs = ds.get(fg_seq)
        if not fgs:
            continue
        item = fgs[index] if fg_seq.startswith("PerFrame") and index < len(fgs) else fgs[0]
        inner = item.get(group)
        if inner and keyword in inner[0]:
            return inner[0].get(keyword)
    return ds.get(keyword)


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0]) if len(value) else None
    return float(value)


def element_name(keyword: str) -> str:
    """``Keyword (gggg,eeee)`` of a DICOM keyword, for messages."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return keyword if tag is None else f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _count(path: Path, ds, keyword: str, default: int | None = None) -> int:
    """A positive integer element (Rows, Columns, NumberOfFrames, ...); ImageReadError naming
    the element when it is missing (no default), malformed or out of range."""
    try:
        raw = ds.get(keyword)
        value = default if raw in (None, "") else int(_first(raw))
    except Exception as e:  # noqa: BLE001 - malformed IS / US values raise many types
        raise ImageReadError(
            path, f"DICOM element {element_name(keyword)} is malformed ({e})"
        ) from None
    if value is None or not 1 <= value <= 2**31:
        raise ImageReadError(
            path, f"DICOM element {element_name(keyword)} must be a positive integer, got {raw!r}"
        )
    return value


def _number(path: Path, ds, index: int, group: str | None, keyword: str) -> float | None:
    """A numeric element (per frame when ``group``); ImageReadError naming it when malformed."""
    try:
        raw = frame_value(ds, index, group, keyword) if group else ds.get(keyword)
        return _first(raw)
    except Exception as e:  # noqa: BLE001 - DS / IS parse errors, wrong VR, overflow
        raise ImageReadError(
            path, f"DICOM element {element_name(keyword)} is malformed ({e})"
        ) from None


def _modality(path: Path, ds, arr: np.ndarray, index: int, info: dict):
    """Stored values -> modality values (HU for CT); returns (values, (slope, intercept) | None).
    A slope that is 0, NaN or infinite, a non-finite intercept, or values that overflow raise
    ImageReadError naming the element."""
    group = "PixelValueTransformationSequence"
    slope = _number(path, ds, index, group, "RescaleSlope")
    intercept = _number(path, ds, index, group, "RescaleIntercept")
    if slope is not None or intercept is not None:
        slope = 1.0 if slope is None else slope
        intercept = 0.0 if intercept is None else intercept
        if not np.isfinite(slope) or slope == 0:
            why = "every pixel would map to the same value" if slope == 0 else "not finite"
            raise ImageReadError(
                path, f"DICOM element {element_name('RescaleSlope')} is {slope}: {why}"
            )
        if not np.isfinite(intercept):
            raise ImageReadError(
                path, f"DICOM element {element_name('RescaleIntercept')} is {intercept}: not finite"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            values = arr.astype(np.float64) * slope + intercept
            span = float(np.nanmax(values) - np.nanmin(values)) if values.size else 0.0
        if not np.isfinite(span):
            raise ImageReadError(
                path,
                f"DICOM elements {element_name('RescaleSlope')} = {slope:g} and "
                f"{element_name('RescaleIntercept')} = {intercept:g} overflow the value range",
            )
        return values, (slope, intercept)
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        info["modality_lut"] = True
        return apply_modality_lut(arr, ds), None
    rtdose = ds.get("Modality") == "RTDOSE"
    scaling = _number(path, ds, index, None, "DoseGridScaling") if rtdose else None
    if scaling is not None:
        info["dose_grid_scaling"] = scaling
        return arr.astype(np.float64) * scaling, (scaling, 0.0)
    return arr, None


def _mask_padding(ds, arr: np.ndarray, values: np.ndarray, info: dict) -> np.ndarray:
    """Pixel Padding Value (.. Range Limit) pixels (outside a CT's field of view) -> NaN, so they
    do not stretch min-max and come out black (0)."""
    padding = _first(ds.get("PixelPaddingValue"))
    if padding is None:
        return values
    limit = _first(ds.get("PixelPaddingRangeLimit"))
    lo, hi = sorted((padding, padding if limit is None else limit))
    pad = (arr >= lo) & (arr <= hi)
    info["padding_pixels"] = int(pad.sum())
    if not pad.any():
        return values
    out = np.array(values, dtype=np.float64)
    out[pad] = np.nan
    return out


def _voi(path: Path, ds, values: np.ndarray, index: int, window: WindowArg, info: dict):
    if window is not None:
        if isinstance(window, str) and normalize_preset_name(window) in WINDOW_PRESETS:
            modality = ds.get("Modality")
            if modality not in ("CT", None):
                warnings.warn(
                    f"{path}: CT window preset {window!r} applied to a {modality} image "
                    "(its values are not Hounsfield units)",
                    stacklevel=3,
                )
        return map_to_uint8(values, window)
    center = _number(path, ds, index, "FrameVOILUTSequence", "WindowCenter")
    width = _number(path, ds, index, "FrameVOILUTSequence", "WindowWidth")
    function = str(frame_value(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR")
    function = function.strip().upper() or "LINEAR"
    if center is not None and width is not None:
        try:
            if function not in VOI_FUNCTIONS:
                raise ValueError(f"unknown VOI LUT Function {function!r}")
            check_window(center, width, function)
        except ValueError as e:
            warnings.warn(f"{path}: file window ignored ({e}); using min-max", stacklevel=3)
        else:
            explanation = ds.get("WindowCenterWidthExplanation")
            if explanation:
                info["window_explanation"] = str(_first_str(explanation))
            return map_to_uint8(values, None, file_window=(center, width, function))
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq and "LUTDescriptor" in voi_seq[0] and "LUTData" in voi_seq[0]:
        from pydicom.pixels.processing import apply_voi

        out = apply_voi(np.asarray(values), ds, 0)
        bits = int(voi_seq[0].LUTDescriptor[2])
        top = float(2**bits - 1)
        return to_uint8(out.astype(np.float64) / top * 255.0), IntensityMapping(
            "voi_lut", "file", low=0.0, high=top
        )
    full_8bit = values.dtype == np.uint8 and int(ds.get("BitsStored") or 8) == 8
    return map_to_uint8(values, None, keep_uint8=full_8bit)


def _first_str(value: Any) -> str:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return str(value[0]) if len(value) else ""
    return str(value)


def _palette(path: Path, ds, arr: np.ndarray, window: WindowArg):
    from pydicom.pixels import apply_color_lut

    if window is not None:
        warnings.warn(f"{path}: window ignored for a PALETTE COLOR image", stacklevel=3)
    try:
        rgb = apply_color_lut(arr, ds)
    except Exception as e:  # noqa: BLE001
        raise ImageReadError(path, f"cannot apply the palette colour LUT ({e})") from e
    if rgb.dtype != np.uint8:
        rgb = to_uint8(rgb.astype(np.float64) / 257.0)
    return rgb, IntensityMapping("palette", "file", low=0.0, high=255.0)


# ----------------------------------------------------------------------------- geometry
def _optional(path: Path, elements: str, fn, *args):
    """Geometry is metadata: a malformed or non-finite value is dropped with a warning naming
    the elements (the pixels are still usable), never an exception."""
    try:
        value = fn(*args)
        if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
            raise ValueError(f"non-finite values {np.asarray(value).ravel()[:4].tolist()}")
        return value
    except Exception as e:  # noqa: BLE001 - malformed DS / IS values raise many types
        warnings.warn(f"{path}: DICOM {elements} ignored ({type(e).__name__}: {e})", stacklevel=3)
        return None


def _spacing(ds, index: int, info: dict) -> tuple[float, float] | None:
    spacing = frame_value(ds, index, "PixelMeasuresSequence", "PixelSpacing")
    source = "PixelSpacing"
    if not spacing:
        spacing, source = ds.get("ImagerPixelSpacing"), "ImagerPixelSpacing"
    if spacing and len(spacing) == 2:
        info["spacing_source"] = source
        return (float(spacing[0]), float(spacing[1]))
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        units_x, units_y = (
            region.get("PhysicalUnitsXDirection"),
            region.get("PhysicalUnitsYDirection"),
        )
        dx, dy = region.get("PhysicalDeltaX"), region.get("PhysicalDeltaY")
        if units_x == 3 and units_y == 3 and dx and dy:  # 3 = cm
            info["spacing_source"] = "SequenceOfUltrasoundRegions"
            return (abs(float(dy)) * 10.0, abs(float(dx)) * 10.0)
    return None


def _affine(ds, index: int, spacing: tuple[float, float] | None) -> np.ndarray | None:
    position = frame_value(ds, index, "PlanePositionSequence", "ImagePositionPatient")
    orientation = frame_value(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient")
    if not position or not orientation or spacing is None or len(orientation) != 6:
        return None
    row_cos = np.array([float(v) for v in orientation[:3]])  # direction of increasing column
    col_cos = np.array([float(v) for v in orientation[3:]])  # direction of increasing row
    normal = np.cross(row_cos, col_cos)
    thickness = _first(frame_value(ds, index, "PixelMeasuresSequence", "SpacingBetweenSlices"))
    thickness = thickness or _first(
        frame_value(ds, index, "PixelMeasuresSequence", "SliceThickness")
    )
    lps = np.eye(4)
    lps[:3, 0] = row_cos * spacing[1]
    lps[:3, 1] = col_cos * spacing[0]
    lps[:3, 2] = normal * (thickness or 1.0)
    lps[:3, 3] = [float(v) for v in position]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
