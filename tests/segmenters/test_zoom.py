"""Zoom-in for corrective clicks (``segmenters.zoom`` and the ``+zoom`` strategies of
``PromptChain``).

- ``resample_logits`` against an analytic oracle: logits that are a linear function of
  original-image coordinates at every low-res cell centre must come out as the same linear
  function at the destination frame's cell centres (bilinear resampling is exact on linear
  functions), with the fill value outside the source image area and in the destination padding;
- ``zoom_frame`` / ``region_bbox`` / ``ZoomConfig.from_spec`` / ``parse_strategy``: the crop's
  documented properties on random regions, and the parsing rules;
- ``PromptChain`` over a fake segmenter that honours image sizes: which image is encoded, the
  prompts shifted into the crop, the crop mask pasted back, crop reuse, undo and preview;
- one run of the shipped litemedsam-click model with zoom on a synthetic small object.

Cell-centre convention (module docstring of ``segmenters.zoom``): a frame (x0, y0, w, h) is
resized to ``Preprocessing.resized_size((h, w))`` at the top-left of an S x S input; the n x n
low-res grid covers the S x S input uniformly; pixel centres sit at integer coordinates.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from medsam_agent_rt.segmenters.base import Prediction
from medsam_agent_rt.segmenters.families import FAMILIES
from medsam_agent_rt.segmenters.prompt_chain import STRATEGIES, PromptChain, parse_strategy
from medsam_agent_rt.segmenters.store import Encoded
from medsam_agent_rt.segmenters.zoom import (
    Frame,
    ZoomConfig,
    region_bbox,
    resample_logits,
    zoom_frame,
)

LITE = FAMILIES["litemedsam-click"].preprocessing  # S = 256, low-res 256 x 256
SAM = FAMILIES["sam"].preprocessing  # S = 1024, low-res 256 x 256
N_LR = 256
A, B, C = 0.013, -0.021, 1.7  # the linear oracle f(x, y) = A x + B y + C
FILL = -77.0
GARBAGE = 1e4  # what the source holds in its padding cells: must never leak into the interior
EPS = 1e-6


def f_lin(x, y):
    return A * x + B * y + C


def cell_centres(frame: Frame, pre, n: int = N_LR):
    """(ys, xs, in_y, in_x): original-image px of the low-res cell centres of ``frame`` along
    each axis, and whether each centre lies in the resized image area (not the padding)."""
    rh, rw = pre.resized_size((frame.h, frame.w))
    u = (np.arange(n) + 0.5) * pre.input_size / n  # continuous input coords (px i spans [i, i+1))
    ys = frame.y0 + u * frame.h / rh - 0.5  # continuous -> pixel-centre coordinates
    xs = frame.x0 + u * frame.w / rw - 0.5
    return ys, xs, u <= rh, u <= rw


def linear_logits(frame: Frame, pre, n: int = N_LR, padding: float | None = GARBAGE):
    """(n, n) float32 logits of ``frame``: f at each cell centre; ``padding`` (if not None) in
    the cells that lie entirely in the input padding (no image pixel under them)."""
    ys, xs, _, _ = cell_centres(frame, pre, n)
    out = f_lin(xs[None, :], ys[:, None])
    if padding is not None:
        rh, rw = pre.resized_size((frame.h, frame.w))
        start = np.arange(n) * pre.input_size / n  # where each cell begins, input coords
        out[start >= rh, :] = padding
        out[:, start >= rw] = padding
    return out.astype(np.float32)


def check_against_oracle(pre, src: Frame, dst: Frame, min_inner: int = 100) -> None:
    """resample_logits(linear logits of src) == f at dst's cell centres inside src's image area
    (between its first and last in-image cell centres), FILL outside it and in dst's padding."""
    out = resample_logits(linear_logits(src, pre), src, dst, pre, fill=FILL)
    assert out.shape == (N_LR, N_LR) and out.dtype == np.float32
    sy, sx, s_in_y, s_in_x = cell_centres(src, pre)
    dy, dx, d_in_y, d_in_x = cell_centres(dst, pre)
    inner_y = d_in_y & (dy >= sy[0] + EPS) & (dy <= sy[s_in_y][-1] - EPS)
    inner_x = d_in_x & (dx >= sx[0] + EPS) & (dx <= sx[s_in_x][-1] - EPS)
    assert inner_y.sum() * inner_x.sum() >= min_inner
    expected = f_lin(dx[None, :], dy[:, None])
    np.testing.assert_allclose(
        out[np.ix_(inner_y, inner_x)], expected[np.ix_(inner_y, inner_x)], rtol=0, atol=1e-3
    )
    # outside the source image area ([y0 - 0.5, y0 + h - 0.5] px) or in the dst padding: FILL
    out_y = ~d_in_y | (dy < src.y0 - 0.5 - EPS) | (dy > src.y0 + src.h - 0.5 + EPS)
    out_x = ~d_in_x | (dx < src.x0 - 0.5 - EPS) | (dx > src.x0 + src.w - 0.5 + EPS)
    assert np.all(out[out_y, :] == FILL) and np.all(out[:, out_x] == FILL)
    assert np.all(np.abs(out) < GARBAGE / 10)  # no src cell without image pixels ever leaks


def disc(shape, cx, cy, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


# ------------------------------------------------------------------ resample_logits
LANDSCAPE = Frame(0, 0, 500, 300)  # a 300 (H) x 500 (W) image
PORTRAIT = Frame(0, 0, 300, 500)  # a 500 (H) x 300 (W) image
RESAMPLE_CASES = {
    "full->crop": (LANDSCAPE, Frame(120, 40, 150, 150)),
    "crop->full": (Frame(120, 40, 150, 150), LANDSCAPE),
    "small crop->full": (Frame(200, 100, 40, 40), LANDSCAPE),
    "full->non-square crop": (LANDSCAPE, Frame(350, 100, 150, 90)),
    "crop->overlapping crop": (Frame(100, 50, 120, 120), Frame(150, 80, 140, 140)),
    "full->crop at the bottom edge": (LANDSCAPE, Frame(380, 180, 120, 120)),
    "non-square crop->full": (Frame(350, 100, 150, 90), LANDSCAPE),
    "portrait full->crop": (PORTRAIT, Frame(30, 200, 100, 100)),
    "portrait crop->full": (Frame(30, 200, 100, 100), PORTRAIT),
}


@pytest.mark.parametrize("pre", [LITE, SAM], ids=["litemedsam", "sam"])
@pytest.mark.parametrize("case", list(RESAMPLE_CASES))
def test_resample_logits_matches_linear_oracle(pre, case):
    src, dst = RESAMPLE_CASES[case]
    check_against_oracle(pre, src, dst)


@pytest.mark.parametrize("pre", [LITE, SAM], ids=["litemedsam", "sam"])
@pytest.mark.parametrize("frame", [LANDSCAPE, PORTRAIT, Frame(17, 9, 90, 61)])
def test_resample_logits_identity(pre, frame):
    """src == dst gives the input back where the cell centres are in the image, FILL elsewhere."""
    logits = np.random.default_rng(0).normal(0, 5, (N_LR, N_LR)).astype(np.float32)
    out = resample_logits(logits, frame, frame, pre, fill=FILL)
    _, _, in_y, in_x = cell_centres(frame, pre)
    inside = np.ix_(in_y, in_x)
    np.testing.assert_allclose(out[inside], logits[inside], rtol=0, atol=1e-4)
    assert np.all(out[~in_y, :] == FILL) and np.all(out[:, ~in_x] == FILL)
    assert in_y.sum() < N_LR or in_x.sum() < N_LR or frame.w == frame.h  # padding exercised


def test_resample_logits_default_fill_is_background():
    """Without ``fill``: min(src logits, -1) outside the source (both branches of the min)."""
    src, dst = Frame(120, 40, 150, 150), LANDSCAPE
    _, _, d_in_y, _ = cell_centres(dst, LITE)
    pad_row = int(np.flatnonzero(~d_in_y)[0])  # a dst padding row
    high = np.full((N_LR, N_LR), 3.0, np.float32)
    assert np.all(resample_logits(high, src, dst, LITE)[pad_row] == -1.0)
    low = np.full((N_LR, N_LR), 3.0, np.float32)
    low[5, 7] = -12.5
    assert np.all(resample_logits(low, src, dst, LITE)[pad_row] == -12.5)
    assert np.all(resample_logits(low, src, dst, LITE, fill=0.0)[pad_row] == 0.0)


# ------------------------------------------------------------------ region_bbox / zoom_frame
def test_region_bbox():
    mask = np.zeros((40, 50), bool)
    mask[10:15, 20:31] = True  # rows 10..14, cols 20..30
    assert region_bbox(mask, None, None) == (20, 10, 30, 14)
    assert region_bbox(mask, np.array([5.0, 12, 25, 13]), None) == (5, 10, 30, 14)
    pts = np.array([[45.0, 3.0], [22.0, 38.0]])
    assert region_bbox(mask, None, pts) == (20, 3, 45, 38)
    assert region_bbox(np.zeros((40, 50), bool), None, pts) == (22, 3, 45, 38)
    assert region_bbox(np.zeros((40, 50), bool), np.array([1.0, 2, 3, 4]), None) == (1, 2, 3, 4)
    assert region_bbox(np.zeros((40, 50), bool), None, None) is None
    assert region_bbox(np.zeros((40, 50), bool), None, np.zeros((0, 2))) is None


def expected_side(region, image_size, config: ZoomConfig) -> float:
    """The unclipped crop side the docs prescribe: expansion x the longer region side, never
    below longer image side / max_gain."""
    x1, y1, x2, y2 = region
    return max(config.expansion * max(x2 - x1 + 1, y2 - y1 + 1), max(image_size) / config.max_gain)


def test_zoom_frame_properties_on_random_regions():
    rng = np.random.default_rng(1)
    checked = nones = 0
    for _ in range(2000):
        h, w = (int(v) for v in rng.integers(16, 700, 2))
        x1, x2 = sorted(int(v) for v in rng.integers(0, w, 2))
        y1, y2 = sorted(int(v) for v in rng.integers(0, h, 2))
        min_gain = float(rng.uniform(1, 3))
        cfg = ZoomConfig(float(rng.uniform(1, 3)), min_gain, float(rng.uniform(min_gain, 10)))
        region = (x1, y1, x2, y2)
        side = expected_side(region, (h, w), cfg)
        gain = max(h, w) / side
        if abs(gain - cfg.min_gain) < 1e-9:
            continue  # a tie: either answer is fine
        frame = zoom_frame(region, (h, w), cfg)
        if gain < cfg.min_gain:
            assert frame is None, (region, (h, w), cfg)
            nones += 1
            continue
        assert frame is not None, (region, (h, w), cfg)
        checked += 1
        # inside the image, containing the region
        assert 0 <= frame.x0 and frame.x0 + frame.w <= w and 0 <= frame.y0
        assert frame.y0 + frame.h <= h
        assert frame.x0 <= x1 and x2 <= frame.x0 + frame.w - 1
        assert frame.y0 <= y1 and y2 <= frame.y0 + frame.h - 1
        assert frame.contains(x1, y1, x2, y2)
        # side = ceil(expansion * longer region side), at least longer / max_gain, clipped
        assert frame.w == min(math.ceil(side), w) and frame.h == min(math.ceil(side), h)
        if math.ceil(side) <= min(h, w):
            assert frame.w == frame.h
        # centred on the region unless pushed back inside the image
        if 0 < frame.x0 < w - frame.w:
            assert abs(frame.x0 + frame.w / 2 - (x1 + x2 + 1) / 2) <= 1
        if 0 < frame.y0 < h - frame.h:
            assert abs(frame.y0 + frame.h / 2 - (y1 + y2 + 1) / 2) <= 1
    assert checked > 300 and nones > 300


def test_zoom_frame_examples():
    # 31 x 31 region, expansion 2 -> a 62 px square centred on (115.5, 75.5)
    assert zoom_frame((100, 60, 130, 90), (200, 300), ZoomConfig(2.0)) == Frame(84, 44, 62, 62)
    # a 3 px region: 4 * 3 < 512 / 8, so the side is max_gain's minimum, 64
    frame = zoom_frame((50, 50, 52, 52), (512, 512), ZoomConfig())
    assert frame.w == frame.h == 64 and frame.contains(50, 50, 52, 52)
    frame = zoom_frame((50, 50, 52, 52), (512, 512), ZoomConfig(max_gain=4.0))
    assert frame.w == frame.h == 128
    # a region near the corner: the square is pushed back inside the image
    assert zoom_frame((0, 0, 9, 9), (100, 200), ZoomConfig(2.0, 1.5, 100)) == Frame(0, 0, 20, 20)
    assert zoom_frame((190, 90, 199, 99), (100, 200), ZoomConfig(2.0, 1.5, 100)) == Frame(
        180, 80, 20, 20
    )
    # a wide image, a tall region: the square is clipped to the image height
    assert zoom_frame((100, 0, 109, 59), (60, 400), ZoomConfig(2.0)) == Frame(45, 0, 120, 60)
    # gain below min_gain: no zoom
    assert zoom_frame((0, 0, 299, 199), (200, 300), ZoomConfig()) is None
    assert zoom_frame((100, 60, 130, 90), (200, 300), ZoomConfig(2.0, min_gain=5.0)) is None


def test_frame_contains():
    frame = Frame(10, 20, 30, 40)  # x 10..39, y 20..59
    assert frame.contains(10, 20, 39, 59)
    assert not frame.contains(9, 20, 39, 59) and not frame.contains(10, 20, 40, 59)
    assert not frame.contains(10, 19, 39, 59) and not frame.contains(10, 20, 39, 60)


# ------------------------------------------------------------------ parsing
def test_zoom_config_from_spec():
    assert ZoomConfig.from_spec("off") is None
    assert ZoomConfig.from_spec("on") == ZoomConfig() == ZoomConfig(4.0, 1.5, 8.0)
    assert ZoomConfig.from_spec("expansion=2,min_gain=1.5") == ZoomConfig(2.0, 1.5, 8.0)
    assert ZoomConfig.from_spec(" max_gain=4 , expansion=1.2 ") == ZoomConfig(1.2, 1.5, 4.0)
    for spec, word in [
        ("zoomfactor=2", "zoomfactor"),
        ("expansion=2,foo=1", "foo"),
        ("expansion", "expansion"),
        ("expansion=abc", "abc"),
        ("min_gain=", "min_gain"),
    ]:
        with pytest.raises(ValueError, match=word):
            ZoomConfig.from_spec(spec)
    for spec in ("expansion=0.5", "min_gain=0.5", "min_gain=9", "max_gain=1.2", "expansion=nan"):
        with pytest.raises(ValueError, match="zoom"):
            ZoomConfig.from_spec(spec)


def test_parse_strategy():
    for base in STRATEGIES:
        assert parse_strategy(base) == (base, None)
        assert parse_strategy(base + "+zoom") == (base, ZoomConfig())
        assert parse_strategy(base + "+zoom:expansion=2.0") == (base, ZoomConfig(2.0))
        assert parse_strategy(base + "+zoom:off") == (base, None)
    for junk in (
        "",
        "zoom",
        "+zoom",
        "all",
        "box+all_clicks+zoomy",
        "box+all_clicks+zoom+zoom",
        "box+all_clicks+prev_logits+zoom=2",
        "box+all_clicks+prev_logits+zoom:bogus=1",
        "box+all_clicks+prev_logits+zoom:expansion=x",
        "box+clicks+zoom",
    ):
        with pytest.raises(ValueError):
            parse_strategy(junk)
    with pytest.raises(ValueError, match="bogus"):
        parse_strategy("box+all_clicks+zoom:bogus=1")
    with pytest.raises(ValueError, match="strategy must be one of"):
        parse_strategy("box+all_clicks+zoomy")


# ------------------------------------------------------------------ PromptChain + fake segmenter
R = 8  # radius of the fake's click masks


class SizedFake:
    """A Segmenter honouring image sizes. encode() records the image; decode() records the call
    and returns: for a click, a disc of radius R around the last point; for a box alone, the box
    filled; low-res logits = f at the encoded image's own cell centres (so a box step on the whole
    image gives the linear oracle in original-image coordinates)."""

    family = "test"
    backend = "fake"
    preprocessing = LITE

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.encodeds: list[Encoded] = []
        self.keeps: list[bool] = []  # the keep flag of each encode
        self.calls: list[dict] = []

    def encode(self, image, keep=True):
        self.images.append(np.array(image, copy=True))
        self.keeps.append(keep)
        size = tuple(image.shape[:2])
        enc = Encoded(None, size, self.preprocessing.resized_size(size), f"img{len(self.images)}")
        self.encodeds.append(enc)
        return enc

    def decode(
        self,
        encoded,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output=True,
    ):
        assert any(encoded is e for e in self.encodeds)
        h, w = encoded.original_size
        if point_coords is not None:
            mask = disc((h, w), *point_coords[-1], R)
        else:
            yy, xx = np.mgrid[:h, :w]
            x1, y1, x2, y2 = box
            mask = (xx >= x1) & (xx <= x2) & (yy >= y1) & (yy <= y2)
        logits = linear_logits(Frame(0, 0, w, h), self.preprocessing, padding=None)
        self.calls.append(
            dict(
                encoded=encoded,
                points=None if point_coords is None else np.array(point_coords),
                labels=None if point_labels is None else np.array(point_labels),
                box=None if box is None else np.array(box, np.float64),
                mask_input=None if mask_input is None else np.array(mask_input),
                mask=mask,
            )
        )
        c = 3 if multimask_output else 1
        return Prediction(
            np.repeat(mask[None], c, 0),
            np.linspace(0.9, 0.5, c).astype(np.float32),
            np.repeat(logits[None], c, 0),
        )


H, W = 200, 300
IMAGE = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
BOX = [100, 60, 130, 90]
ZOOM2 = "box+all_clicks+prev_logits+zoom:expansion=2"


def square_crop(x1, y1, x2, y2, expansion, size=(H, W), max_gain=8.0) -> Frame:
    """The crop the docs describe: a square of side ceil(expansion * longer region side), at
    least longer image side / max_gain, centred on the region, shifted back inside the image
    (clipped where it is larger)."""
    side = math.ceil(max(expansion * max(x2 - x1 + 1, y2 - y1 + 1), max(size) / max_gain))
    sw, sh = min(side, size[1]), min(side, size[0])
    x0 = min(max(math.floor((x1 + x2 + 1) / 2 - sw / 2), 0), size[1] - sw)
    y0 = min(max(math.floor((y1 + y2 + 1) / 2 - sh / 2), 0), size[0] - sh)
    return Frame(x0, y0, sw, sh)


def pasted(frame: Frame, crop_mask: np.ndarray) -> np.ndarray:
    full = np.zeros((H, W), bool)
    full[frame.y0 : frame.y0 + frame.h, frame.x0 : frame.x0 + frame.w] = crop_mask
    return full


def test_box_then_click_runs_on_the_expected_crop():
    seg = SizedFake()
    ep = PromptChain(seg, IMAGE, strategy=ZOOM2, multimask_first=False)
    assert ep.zoom == ZoomConfig(2.0)
    s1 = ep.add_box(BOX)
    assert s1.frame is None and ep.logits_frame is None and len(seg.images) == 1
    assert seg.calls[0]["encoded"] is ep.encoded and seg.calls[0]["mask"].shape == (H, W)
    assert seg.calls[0]["box"].tolist() == BOX

    s2 = ep.add_point((115, 75), True)
    frame = square_crop(100, 60, 130, 90, 2.0)  # box = mask bbox, the click inside
    assert frame == Frame(84, 44, 62, 62)
    assert s2.frame == frame and ep.logits_frame == frame
    assert len(seg.images) == 2 and seg.keeps == [True, False]  # the crop stays in the chain
    np.testing.assert_array_equal(seg.images[1], IMAGE[44:106, 84:146])
    call = seg.calls[1]
    assert call["encoded"] is seg.encodeds[1] and call["encoded"].original_size == (62, 62)
    assert call["points"].tolist() == [[115 - 84, 75 - 44]] and call["labels"].tolist() == [1]
    assert call["box"].tolist() == [100 - 84, 60 - 44, 130 - 84, 90 - 44]
    # the box step's logits (f on the whole image), resampled into the crop: f at its cells
    ys, xs, _, _ = cell_centres(frame, LITE)
    assert call["mask_input"].shape == (1, N_LR, N_LR)
    np.testing.assert_allclose(call["mask_input"][0], f_lin(xs[None], ys[:, None]), atol=1e-3)
    # the crop's mask pasted back at (x0, y0), False elsewhere
    assert s2.mask.shape == (H, W) and s2.mask.dtype == np.bool_
    np.testing.assert_array_equal(s2.mask, pasted(frame, call["mask"]))
    np.testing.assert_array_equal(s2.mask, disc((H, W), 115, 75, R))
    np.testing.assert_array_equal(ep.mask, s2.mask)
    # what the step reports: original-image prompts, its crop, the crop's own logits
    assert s2.prompts.point_coords.tolist() == [[115, 75]] and s2.prompts.used_mask_input
    crop_logits = linear_logits(Frame(0, 0, 62, 62), LITE, padding=None)
    np.testing.assert_array_equal(s2.low_res_logits, crop_logits)
    assert ep.to_record()["steps"][1]["frame"] == [84, 44, 62, 62]
    assert ep.to_record()["steps"][0]["frame"] is None


def test_click_inside_the_crop_reuses_it_and_a_large_region_unzooms():
    seg = SizedFake()
    ep = PromptChain(seg, IMAGE, strategy=ZOOM2, multimask_first=False)
    ep.add_box(BOX)
    s2 = ep.add_point((115, 75), True)
    frame = s2.frame
    # the region grows to x 100..140, y 60..100 (a fresh crop would be 82 px) but still fits
    # in the 62 px crop at (84, 44) (x 84..145, y 44..105): that crop is reused
    s3 = ep.add_point((140, 100), False)
    assert s3.frame == frame and len(seg.images) == 2
    call = seg.calls[2]
    assert call["encoded"] is seg.encodeds[1]
    assert call["points"].tolist() == [[31, 31], [56, 56]] and call["labels"].tolist() == [1, 0]
    np.testing.assert_array_equal(call["mask_input"][0], s2.low_res_logits)  # same frame: as is
    np.testing.assert_array_equal(s3.mask, pasted(frame, call["mask"]))
    np.testing.assert_array_equal(s3.mask, disc((H, W), 140, 100, R) & pasted(frame, True))
    # a far click: the region (x 20..145, y 20..105) needs a 252 px crop of a 300 px image,
    # gain 1.19 < min_gain 1.5 -> the whole image again, no new encoding
    s4 = ep.add_point((20, 20), True)
    assert s4.frame is None and ep.logits_frame is None and len(seg.images) == 2
    call = seg.calls[3]
    assert call["encoded"] is ep.encoded and call["box"].tolist() == BOX
    assert call["points"].tolist() == [[115, 75], [140, 100], [20, 20]]
    # the crop's logits resampled to the whole image: fill far from the crop (and in padding)
    fill = min(float(s3.low_res_logits.min()), -1.0)
    assert call["mask_input"].shape == (1, N_LR, N_LR)
    assert call["mask_input"][0, 5, 5] == fill and call["mask_input"][0, 250, 100] == fill
    np.testing.assert_array_equal(s4.mask, disc((H, W), 20, 20, R))


def test_box_steps_use_the_whole_image_and_a_new_crop_is_encoded_when_needed():
    seg = SizedFake()
    ep = PromptChain(seg, IMAGE, strategy=ZOOM2, multimask_first=False)
    ep.add_box(BOX)
    ep.add_point((115, 75), True)
    s3 = ep.add_box([150, 100, 170, 130])  # a new box after a zoomed click
    assert s3.frame is None and seg.calls[2]["encoded"] is ep.encoded
    assert seg.calls[2]["mask_input"].shape == (1, N_LR, N_LR)
    np.testing.assert_array_equal(s3.mask, seg.calls[2]["mask"])
    # the box step sent the click too, so the fake's mask is the disc around (115, 75); next
    # click: region = that disc + the new box + both clicks (x 107..170, y 67..130)
    assert s3.mask.any(axis=0).nonzero()[0][[0, -1]].tolist() == [107, 123]
    s4 = ep.add_point((160, 110), True)
    frame = square_crop(107, 67, 170, 130, 2.0)
    assert s4.frame == frame and len(seg.images) == 3
    np.testing.assert_array_equal(
        seg.images[2], IMAGE[frame.y0 : frame.y0 + frame.h, frame.x0 : frame.x0 + frame.w]
    )
    assert seg.calls[3]["points"].tolist() == [
        [115 - frame.x0, 75 - frame.y0],
        [160 - frame.x0, 110 - frame.y0],
    ]
    np.testing.assert_array_equal(s4.mask, pasted(frame, seg.calls[3]["mask"]))


def test_box_is_clipped_to_a_crop_at_the_image_border():
    seg = SizedFake()
    ep = PromptChain(seg, IMAGE, strategy=ZOOM2, multimask_first=False)
    box = [260, 150, W, H]  # x2 = W and y2 = H: allowed by the segmenters' box check
    ep.add_box(box)
    s2 = ep.add_point((280, 170), True)
    # the region is clamped to the last pixel (W - 1, H - 1) before the crop is chosen
    frame = square_crop(260, 150, W - 1, H - 1, 2.0)
    assert frame == Frame(200, 100, 100, 100) and s2.frame == frame
    call = seg.calls[1]
    # clipped to the crop's last pixel (x0 + w - 1, y0 + h - 1), then shifted
    assert call["box"].tolist() == [260 - 200, 150 - 100, 99, 99]
    assert call["points"].tolist() == [[280 - 200, 170 - 100]]
    np.testing.assert_array_equal(s2.mask, pasted(frame, call["mask"]))
    np.testing.assert_array_equal(s2.mask, disc((H, W), 280, 170, R))
    # a box on the far edge does not defeat crop reuse: a click inside the crop re-encodes nothing
    encodes = len(seg.images)
    assert ep.add_point((230, 130), False).frame == frame and len(seg.images) == encodes


def test_click_outside_the_image_is_not_zoomed():
    """An out-of-image click runs on the whole image, so the segmenter's error names it in
    image pixels, and no crop is encoded for nothing."""
    seg = SizedFake()
    ep = PromptChain(seg, IMAGE, strategy=ZOOM2, multimask_first=False)
    ep.add_box(BOX)
    encodes = len(seg.images)
    frame = ep._frame(ep._state, "point", replace(ep._state, clicks=((-3.0, 80.0, 1),)))
    assert frame is None and len(seg.images) == encodes


def test_strategy_without_zoom_never_crops():
    for strategy in ("box+all_clicks+prev_logits", "box+all_clicks+prev_logits+zoom:off"):
        seg = SizedFake()
        ep = PromptChain(seg, IMAGE, strategy=strategy, multimask_first=False)
        assert ep.zoom is None
        steps = [ep.add_box(BOX), ep.add_point((115, 75), True), ep.add_point((125, 85), False)]
        assert all(s.frame is None for s in steps) and len(seg.images) == 1
        assert all(c["encoded"] is ep.encoded for c in seg.calls)
        assert seg.calls[1]["points"].tolist() == [[115, 75]]
        np.testing.assert_array_equal(seg.calls[1]["mask_input"][0], steps[0].low_res_logits)


def test_an_episode_without_a_box_never_zooms():
    """Clicks alone: the mask's extent is a guess, so no crop (it could cut the target off)."""
    seg = SizedFake()
    ep = PromptChain(seg, IMAGE, strategy=ZOOM2, multimask_first=False)
    steps = [ep.add_point((115, 75), True), ep.add_point((118, 78), True)]
    steps.append(ep.add_point((125, 85), False))  # a mask exists from the first click on
    assert all(s.frame is None for s in steps) and len(seg.images) == 1
    assert all(c["encoded"] is ep.encoded for c in seg.calls)
    # a box later in the episode turns zoom on for the clicks after it
    ep.add_box(BOX)
    assert ep.add_point((115, 75), True).frame is not None and len(seg.images) == 2


def test_undo_restores_the_previous_frame():
    seg = SizedFake()
    ep = PromptChain(seg, IMAGE, strategy=ZOOM2, multimask_first=False)
    s1 = ep.add_box(BOX)
    s2 = ep.add_point((115, 75), True)
    ep.add_point((20, 20), True)  # back to the whole image
    assert ep.logits_frame is None
    ep.undo()
    assert ep.logits_frame == s2.frame and ep.clicks == [(115.0, 75.0, True)]
    np.testing.assert_array_equal(ep.mask, s2.mask)
    np.testing.assert_array_equal(ep.low_res_logits, s2.low_res_logits)
    s3 = ep.add_point((125, 85), False)  # chains from the restored crop: reused, logits as is
    assert s3.frame == s2.frame and len(seg.images) == 2
    np.testing.assert_array_equal(seg.calls[-1]["mask_input"][0], s2.low_res_logits)
    ep.undo()
    ep.undo()
    assert ep.logits_frame is None and ep.num_steps == 1
    np.testing.assert_array_equal(ep.mask, s1.mask)


def test_preview_does_not_change_state():
    seg = SizedFake()
    ep = PromptChain(seg, IMAGE, strategy=ZOOM2, multimask_first=False)
    s1 = ep.add_box(BOX)
    a = ep.preview_point((115, 75), True)
    b = ep.preview_point((110, 70), False)
    assert a.frame == b.frame == Frame(84, 44, 62, 62)  # both previews: the same crop
    assert len(seg.images) == 2  # encoded once for both
    assert ep.logits_frame is None and ep.clicks == [] and ep.num_steps == 1
    np.testing.assert_array_equal(ep.mask, s1.mask)
    np.testing.assert_array_equal(ep.low_res_logits, s1.low_res_logits)
    done = ep.commit(a)
    assert done.committed and ep.logits_frame == a.frame
    np.testing.assert_array_equal(ep.mask, a.mask)


# ------------------------------------------------------------------ the shipped model
def test_zoom_on_the_shipped_click_model():
    """litemedsam-click, a 12 px disc on a noisy 512 x 512 image: box, then a positive click
    inside and a negative one outside, zoomed; the masks are full size and on the disc."""
    torch = pytest.importorskip("torch")
    from medsam_agent_rt.segmenters import build_segmenter

    rng = np.random.default_rng(3)
    gray = rng.normal(40, 8, (512, 512))
    obj = disc((512, 512), 300, 200, 12)
    gray[obj] = rng.normal(200, 8, int(obj.sum()))
    image = np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    def dice(m):
        return 2 * (m & obj).sum() / (m.sum() + obj.sum())

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seg = build_segmenter("litemedsam-click", backend="torch")
        ep = PromptChain(seg, image, strategy="box+all_clicks+prev_logits+zoom")
        s1 = ep.add_box([285, 185, 315, 215])
        s2 = ep.add_point((300, 200), True)
        s3 = ep.add_point((313, 213), False)  # outside the disc, inside the box corner
    finally:
        torch.set_num_threads(before)
    assert s1.frame is None and s2.frame is not None and s3.frame is not None
    # the crop was encoded for this chain only: the shared store holds just the whole image
    assert len(seg.store) == 1 and seg.store.computed == 2
    for step in (s2, s3):
        assert step.frame.contains(285, 185, 315, 215)
        assert step.frame.w == step.frame.h < 512 / 1.5
        assert step.mask.shape == (512, 512) and step.mask.dtype == np.bool_
        assert step.low_res_logits.shape == (N_LR, N_LR)
        assert dice(step.mask) > 0.5
        f = step.frame
        outside = np.ones((512, 512), bool)
        outside[f.y0 : f.y0 + f.h, f.x0 : f.x0 + f.w] = False
        assert not step.mask[outside].any()
