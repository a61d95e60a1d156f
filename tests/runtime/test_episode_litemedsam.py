"""Integration with the embedded LiteMedSAM on real demo images (downscaled to 256 px so the
NumPy reference kernels stay cheap): oracle-box equals the segmenter's own GT-box prediction,
the expert from the same box only improves on it, a replayed record reproduces its masks, and a
whole episode opens no non-loopback socket. Images repeat across tests so the segmenter's
embedding cache saves encoder runs."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.episode import Episode
from medsam_agent_rt.policies import ExpertConfig, ExpertPolicy, OracleBoxPolicy, ReplayPolicy
from medsam_agent_rt.session_config import SessionConfig
from medsam_agent_rt.trajectory import EpisodeRecord

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("medsam_agent_rt.segmenters.prompt_chain") is None,
    reason="needs the embedded segmenter (medsam_agent_rt.segmenters.prompt_chain)",
)

CASES = [
    "06_CT_abdomen_right+kidney",
    "14_MRI_prostate_prostate",
    "21_ultrasound_heart_left+heart+atrium",
    "24_endoscope_colon_neoplastic+polyp",
]
SIZE = 256


def load(demo_dir, case):
    stem = "_".join(case.split("_")[:3])
    image = Image.open(demo_dir / "demo" / f"{stem}.png").convert("RGB")
    mask = Image.open(demo_dir / "demo_mask" / f"{case}.png").convert("L")
    image = np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    gt = np.asarray(mask.resize((SIZE, SIZE), Image.Resampling.NEAREST)) > 127
    return image, gt


@pytest.fixture(scope="module")
def segmenter():
    from medsam_agent_rt.segmenters import build_segmenter

    return build_segmenter("litemedsam")


def dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.mark.parametrize("case", CASES[:1])
def test_oracle_box_equals_the_segmenters_gt_box_prediction(segmenter, demo_dir, case):
    image, gt = load(demo_dir, case)
    mask, rec = Episode(segmenter, OracleBoxPolicy()).run(image, "t", gt)
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
    assert rec.turns[0].action["pixels"] == box.tolist()  # 256 px: exact grid round trip
    from medsam_agent_rt.segmenters import FAMILIES

    multimask = FAMILIES[segmenter.family].multimask_first  # the family's first-prompt rule
    segmenter.set_image(image)
    pred = segmenter.predict(box=box, multimask_output=multimask)
    direct = pred.masks[int(np.argmax(pred.scores))]
    np.testing.assert_array_equal(mask, direct)
    assert rec.final["dice"] == pytest.approx(dice(direct, gt))
    assert rec.strategy and rec.backend == segmenter.backend
    assert rec.turns[0].prompts["box"] == box.tolist()  # what the chained state really sent
    assert EpisodeRecord.from_json(rec.to_json()) == rec


def test_expert_beats_or_equals_oracle_box_on_demo_masks(segmenter, demo_dir):
    cfg = ExpertConfig(box_prob=1.0, jitter_min=0.0, jitter_max=0.0, retries=1)
    short = SessionConfig(max_actions=3)
    gains = []
    for case in CASES[:3]:
        image, gt = load(demo_dir, case)
        _, oracle = Episode(segmenter, OracleBoxPolicy()).run(image, "t", gt)
        _, expert = Episode(segmenter, ExpertPolicy(cfg), short).run(image, "t", gt)
        assert expert.turns[0].mask == oracle.turns[0].mask
        assert expert.final["iou"] >= oracle.final["iou"]
        gains.append(expert.final["dice"] - oracle.final["dice"])
    assert max(gains) > 0  # corrections help somewhere


def test_a_replayed_record_reproduces_the_masks(segmenter, demo_dir):
    image, gt = load(demo_dir, CASES[0])
    policy = ExpertPolicy(
        ExpertConfig(seed=3, retries=1, box_prob=0.5, jitter_min=0.05, jitter_max=0.10)
    )
    mask, rec = Episode(segmenter, policy, SessionConfig(max_actions=3)).run(image, "t", gt)
    texts = [t.text for t in rec.turns]
    mask2, rec2 = Episode(segmenter, ReplayPolicy(texts), SessionConfig(max_actions=3)).run(
        image, "t", gt
    )
    np.testing.assert_array_equal(mask, mask2)
    assert [t.mask for t in rec2.turns] == [t.mask for t in rec.turns]


def test_a_full_episode_with_the_embedded_segmenter_stays_offline(segmenter, demo_dir, no_network):
    image, gt = load(demo_dir, CASES[3])  # a fresh image: the encoder runs inside the guard
    mask, rec = Episode(segmenter, OracleBoxPolicy()).run(image, "t", gt)
    assert rec.end_reason == "stop" and mask.any() and rec.totals["seconds"]["encode"] > 0
    assert no_network == []
