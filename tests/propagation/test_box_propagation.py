"""Propagation through phantom volumes and videos: the tracker protocol with a geometric stand-in
segmenter (fast, exact expectations) and with the embedded LiteMedSAM (real weights; a stated
3-D Dice), forward + backward from the key slice, lost-target handling and bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from medsam_agent_rt.data.sequences import phantom_video, phantom_volume
from medsam_agent_rt.propagation import BoxTracker, dice_3d, propagate_volume, track_stream
from medsam_agent_rt.segmenters.base import Prediction


class ThresholdSegmenter:
    """Stand-in Segmenter: inside the box, pixels brighter than ``level`` (channel 0)."""

    def __init__(self, level: int = 130) -> None:
        self.level, self.calls = level, 0

    def encode(self, image):
        return np.asarray(image)  # the "embedding" is the image itself

    def decode(
        self,
        encoded,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output=True,
    ):
        self.calls += 1
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        m = np.zeros(encoded.shape[:2], bool)
        m[y1:y2, x1:x2] = encoded[y1:y2, x1:x2, 0] > self.level
        return Prediction(m[None], np.array([0.9], np.float32), np.zeros((1, 4, 4), np.float32))


def test_phantoms_are_deterministic_and_move():
    a, b = phantom_volume(3, 12, 64), phantom_volume(3, 12, 64)
    np.testing.assert_array_equal(a.frames, b.frames)
    organ = a.masks["organ"]
    areas = organ.reshape(12, -1).sum(1)
    assert areas[0] == 0 and areas[-1] == 0 and areas.max() > 300  # appears, grows, vanishes
    assert a.key_index("organ") == int(np.argmax(areas))
    v = phantom_video(1, 10, 64)
    centres = [np.argwhere(m).mean(0) for m in v.masks["polyp"]]
    assert np.linalg.norm(centres[0] - centres[-1]) > 3  # it moves
    assert v.frames.shape == (10, 64, 64, 3) and v.frames.dtype == np.uint8


def test_forward_backward_propagation_recovers_the_organ():
    vol = phantom_volume(0, 16, 96)
    gt = vol.masks["organ"]
    k = vol.key_index("organ")
    seg = ThresholdSegmenter()
    pred, scores = propagate_volume(vol.frames, k, gt[k], lambda: BoxTracker(seg, margin=4))
    assert dice_3d(pred, gt) > 0.9
    assert pred[:k].any() and pred[k + 1 :].any()  # both directions
    empty = ~gt.reshape(16, -1).any(1)
    assert (scores[empty] == 0).all() and not pred[empty].any()  # lost where the organ ends


def test_reprompt_restarts_the_tracker_where_the_score_collapses():
    vol = phantom_volume(0, 16, 96)
    gt = vol.masks["organ"]
    k = vol.key_index("organ")
    seg = ThresholdSegmenter(level=255)  # loses the target at once
    asked = []

    def agent(i, frame):
        asked.append(i)
        return gt[i] if gt[i].any() else None

    pred, scores = propagate_volume(vol.frames, k, gt[k], lambda: BoxTracker(seg), reprompt=agent)
    present = np.flatnonzero(gt.reshape(16, -1).any(1))
    assert set(present) - {k} <= set(asked)  # asked on every slice where tracking collapsed
    np.testing.assert_array_equal(pred[present], gt[present])


def test_stream_api_and_lost_target():
    vid = phantom_video(2, 12, 96)
    seg = ThresholdSegmenter(level=200)
    steps = list(track_stream(vid.frames, vid.masks["polyp"][0], BoxTracker(seg, margin=6)))
    masks = np.stack([vid.masks["polyp"][0]] + [s.mask for s in steps])
    assert dice_3d(masks, vid.masks["polyp"]) > 0.85
    tr = BoxTracker(ThresholdSegmenter(level=255))  # nothing passes: lost at once
    tr.start(vid.frames[0], vid.masks["polyp"][0])
    assert tr.step(vid.frames[1]).score == 0.0 and not tr.step(vid.frames[2]).mask.any()
    with pytest.raises(ValueError, match="empty"):
        tr.start(vid.frames[0], np.zeros((96, 96), bool))


def test_memory_stays_bounded_over_a_long_stream():
    vid = phantom_video(4, 8, 64)
    frames = [vid.frames[i % 8] for i in range(400)]
    tr = BoxTracker(ThresholdSegmenter(level=200), margin=6)
    tr.start(frames[0], vid.masks["polyp"][0])
    tracemalloc.start()
    for f in frames[1:100]:
        tr.step(f)
    early = tracemalloc.get_traced_memory()[0]
    for f in frames[100:]:
        tr.step(f)
    late = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert late - early < 200_000  # bytes: no per-frame growth


@pytest.mark.slow
def test_litemedsam_box_propagation_on_phantom_volume_and_video():
    """Embedded LiteMedSAM (real weights): 3-D Dice >= 0.80 on a 10-slice phantom organ and
    >= 0.80 on an 8-frame phantom video (measured figures in the README)."""
    pytest.importorskip("torch")
    from medsam_agent_rt.segmenters import build_segmenter

    seg = build_segmenter("litemedsam", cache_size=2)
    vol = phantom_volume(0, 10, 96)
    k = vol.key_index("organ")
    pred, _ = propagate_volume(vol.frames, k, vol.masks["organ"][k], lambda: BoxTracker(seg))
    d_vol = dice_3d(pred, vol.masks["organ"])
    vid = phantom_video(0, 8, 96)
    steps = list(track_stream(vid.frames, vid.masks["polyp"][0], BoxTracker(seg)))
    d_vid = dice_3d(np.stack([vid.masks["polyp"][0]] + [s.mask for s in steps]), vid.masks["polyp"])
    print(f"LiteMedSAM box propagation 3-D Dice: volume {d_vol:.3f}, video {d_vid:.3f}")
    assert d_vol >= 0.80 and d_vid >= 0.80


def _nsd_brute(pred, gt, spacing, tol):
    """Brute-force reference: boundary voxels by the 26-neighbourhood, all pairwise distances."""

    def surface(m):
        pad = np.pad(m, 1)
        out = np.zeros_like(m)
        for idx in zip(*np.nonzero(m)):
            nb = pad[idx[0] : idx[0] + 3, idx[1] : idx[1] + 3, idx[2] : idx[2] + 3]
            out[idx] = not nb.all()
        return out

    sp, sg = np.argwhere(surface(pred)) * spacing, np.argwhere(surface(gt)) * spacing
    d = np.sqrt(((sp[:, None, :] - sg[None, :, :]) ** 2).sum(-1))
    return ((d.min(1) <= tol).sum() + (d.min(0) <= tol).sum()) / (len(sp) + len(sg))


def test_nsd_matches_a_brute_force_reference():
    pytest.importorskip("scipy")
    from medsam_agent_rt.propagation import nsd_3d

    vol = phantom_volume(1, 6, 32)
    gt = vol.masks["organ"]
    pred = np.roll(gt, 2, axis=2)
    for spacing, tol in [((2.5, 0.8, 0.8), 1.0), ((1.0, 1.0, 1.0), 2.0)]:
        ref = _nsd_brute(pred, gt, np.array(spacing), tol)
        assert nsd_3d(pred, gt, spacing, tol) == pytest.approx(ref)
    assert nsd_3d(gt, gt) == 1.0 and nsd_3d(gt, np.zeros_like(gt)) == 0.0
