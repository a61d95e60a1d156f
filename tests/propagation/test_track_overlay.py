"""``medsam-agent track`` writes the frames with the tracked mask overlaid: overlay.mp4 with PyAV
(decoded back here), an animated overlay.gif without it (with a note in the report)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.cli import main


def _green_inside_vs_outside(frame: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    g = frame[..., 1].astype(float) - frame[..., 0].astype(float)
    return float(g[mask].mean()), float(g[~mask].mean())


@pytest.fixture
def video(tmp_path):
    data = tmp_path / "data"
    assert main(["data", "sequences", "--out", str(data), "--depth", "5", "--size", "48"]) == 0
    return data / "video_0"


def _track(video, out):
    argv = [
        "track",
        str(video / "frames"),
        "--key-mask",
        str(video / "masks" / "00000.png"),
        "--gt",
        str(video / "masks"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return json.loads((out / "report.json").read_text())


def test_overlay_mp4_holds_every_frame_with_the_mask_in_green(video, threshold_segmenter, tmp_path):
    av = pytest.importorskip("av")
    report = _track(video, tmp_path / "out")
    assert report["overlay"].endswith("overlay.mp4") and report["overlay_note"] is None
    masks = np.stack(
        [np.asarray(Image.open(p)) > 0 for p in sorted((tmp_path / "out" / "masks").iterdir())]
    )
    with av.open(str(tmp_path / "out" / "overlay.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == len(masks) == 5 and frames[0].shape == (48, 48, 3)
    for f, m in zip(frames, masks):
        inside, outside = _green_inside_vs_outside(f, m)
        assert m.any() and inside > outside + 40


def test_without_pyav_an_animated_gif_and_a_note(video, threshold_segmenter, tmp_path, monkeypatch):
    from medsam_agent_rt.propagation.io import overlay_frames

    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    report = _track(video, tmp_path / "out")
    assert report["overlay"].endswith("overlay.gif") and "PyAV" in report["overlay_note"]
    masks = np.stack(
        [np.asarray(Image.open(p)) > 0 for p in sorted((tmp_path / "out" / "masks").iterdir())]
    )
    frames = np.stack(
        [np.asarray(Image.open(p).convert("RGB")) for p in sorted((video / "frames").iterdir())]
    )
    expected = overlay_frames(frames, masks)
    gif = Image.open(tmp_path / "out" / "overlay.gif")
    assert gif.n_frames == 5
    for i in range(5):
        gif.seek(i)
        got = np.asarray(gif.convert("RGB")).astype(int)
        assert np.abs(got - expected[i]).mean() < 8  # palette quantisation only
        inside, outside = _green_inside_vs_outside(got, masks[i])
        assert inside > outside + 40
