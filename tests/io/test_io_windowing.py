"""Window presets and intensity mappings against hand-computed values and pydicom's own VOI
windowing (an independent implementation of DICOM PS3.3 C.11.2.1.2)."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_agent_rt.io.windowing import (
    WINDOW_PRESETS,
    check_window_arg,
    map_to_uint8,
    minmax_to_uint8,
    parse_window,
    percentile_range,
    window_float,
    window_to_uint8,
)


def test_presets_have_the_standard_ct_windows():
    expected = {  # (centre, width) HU, the usual radiology values
        "abdomen": (40, 400),
        "lung": (-600, 1500),
        "bone": (400, 1800),
        "brain": (40, 80),
        "soft_tissue": (50, 400),
        "liver": (30, 150),
        "mediastinum": (50, 350),
    }
    for name, window in expected.items():
        assert WINDOW_PRESETS[name] == window


def test_linear_exact_hand_computed():
    x = np.array([-1000, -160, -159, -60, 40, 239, 240, 241, 3000], dtype=np.int16)
    got = window_to_uint8(x, 40, 400)
    # [C - W/2, C + W/2] = [-160, 240] onto 0..255, rounded half up
    want = [0, 0, 1, 64, 128, 254, 255, 255, 255]  # -159 -> 0.6375; -60 -> 63.75; 40 -> 127.5
    assert got.tolist() == want
    assert got.dtype == np.uint8


def test_dicom_linear_hand_computed():
    # LINEAR, c=600 w=1600: edges c - 0.5 -/+ (w - 1) / 2 = -200.0 / 1399.0
    x = np.array([-201, -200, -199.5, 599.5, 1399, 1399.5])
    y = window_float(x, 600, 1600, "LINEAR")
    assert y[0] == 0 and y[1] == 0
    assert y[2] == pytest.approx(((-199.5 - 599.5) / 1599 + 0.5) * 255)  # = 255 / 3198
    assert y[3] == pytest.approx(127.5)
    assert y[4] == pytest.approx(255.0)
    assert y[5] == 255
    # width 1 is a step at c - 0.5
    assert window_to_uint8(np.array([9, 9.5, 10]), 10, 1, "LINEAR").tolist() == [0, 0, 255]


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_matches_pydicom_apply_windowing(function):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.pixels import apply_windowing

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1200, 1800, 2000), [-160, 240, 40, 39.5, 40.5]])
    for center, width in [(40, 400), (-600, 1500), (600, 1600), (50.5, 3)]:
        ds = pydicom.Dataset()
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsStored = 8
        ds.PixelRepresentation = 0
        ds.WindowCenter = center
        ds.WindowWidth = width
        ds.VOILUTFunction = function
        with np.errstate(over="ignore"):
            want = apply_windowing(x.copy(), ds)  # y in 0..2**8 - 1
        got = window_float(x, center, width, function)
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_minmax_and_percentile_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.integers(-2000, 3000, size=(37, 41)).astype(np.int16)
    lo, hi = float(x.min()), float(x.max())
    want = np.floor((x - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(minmax_to_uint8(x), want)

    out, mapping = map_to_uint8(x, "percentile")
    plo, phi = np.percentile(x.astype(float), [0.5, 99.5])
    want = np.floor((np.clip(x, plo, phi) - plo) / (phi - plo) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out, want)
    assert (mapping.kind, mapping.low, mapping.high) == ("percentile", plo, phi)
    assert percentile_range(np.full(4, np.nan)) is None


def test_minmax_edge_cases():
    assert minmax_to_uint8(np.full((3, 3), 7.0)).tolist() == [[0] * 3] * 3
    x = np.array([np.nan, 0.0, 1.0, np.inf, -np.inf])
    assert minmax_to_uint8(x).tolist() == [0, 0, 255, 255, 0]
    assert minmax_to_uint8(np.full(3, np.nan)).tolist() == [0, 0, 0]


def test_map_to_uint8_rules():
    u8 = np.array([[0, 10], [200, 255]], np.uint8)
    out, mapping = map_to_uint8(u8)
    assert mapping.kind == "identity" and out.tolist() == u8.tolist()
    out, mapping = map_to_uint8(u8, keep_uint8=False)
    assert mapping.kind == "minmax" and out.tolist() == [[0, 10], [200, 255]]
    u16 = np.array([[100, 300]], np.uint16)
    out, mapping = map_to_uint8(u16)
    assert mapping.kind == "minmax" and out.tolist() == [[0, 255]]
    out, mapping = map_to_uint8(u16, file_window=(200, 100, "LINEAR_EXACT"))
    assert mapping.source == "file" and out.tolist() == [[0, 255]]
    out, mapping = map_to_uint8(u16, (200, 400))
    assert mapping.source == "explicit" and out.tolist() == [[64, 191]]
    _, mapping = map_to_uint8(u16, "Soft-Tissue")
    assert mapping.source == "preset:soft_tissue" and (mapping.center, mapping.width) == (50, 400)
    assert (mapping.low, mapping.high) == (-150, 250)


def test_parse_window():
    assert parse_window("40,400") == (40.0, 400.0)
    assert parse_window(" -600, 1500 ") == (-600.0, 1500.0)
    assert parse_window("Lung") == "lung"
    assert parse_window("soft-tissue") == "soft_tissue"
    assert parse_window("minmax") == "minmax"
    for bad, words in [
        ("40", "abdomen"),
        ("a,b", "C,W"),
        ("40,400,1", "C,W"),
        ("40,0", "width"),
        ("40,-5", "width"),
        ("nan,10", "finite"),
        ("kidney", "abdomen"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_window(bad)


def test_check_window_arg():
    assert check_window_arg(None) is None
    assert check_window_arg("BONE") == "bone"
    assert check_window_arg([40, 400]) == (40.0, 400.0)
    for bad in [(1, 2, 3), "x", (40, 0), object()]:
        with pytest.raises(ValueError, match="window"):
            check_window_arg(bad)
