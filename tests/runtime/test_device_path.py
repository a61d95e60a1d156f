"""The device-resident episode path: logits, masks, overlay and stats stay with the tool.

On any machine: the same code path run with CPU torch tensors (``on_device`` forced) gives
exactly the host path's masks, records and conversation, and a CPU tool moves 0 bytes. With a
GPU (``needs_cuda``): a CUDA TorchSegmenter episode matches the CPU one, and the host receives
only the 512 view per turn (plus the recorded masks and the final mask), never the low-res logits.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from medsam_agent_rt.episode import Episode  # noqa: E402
from medsam_agent_rt.policies import ExpertConfig, ExpertPolicy, ReplayPolicy  # noqa: E402
from medsam_agent_rt.protocol import AddBox, AddPoint, PixelPoint, Stop, format_action  # noqa: E402
from medsam_agent_rt.segmenters.torch_backend import TorchSegmenter  # noqa: E402
from medsam_agent_rt.session_config import SessionConfig  # noqa: E402
from medsam_agent_rt.transfers import METER  # noqa: E402

CASE, SIZE = "06_CT_abdomen_right+kidney", 256
TEXTS = [format_action(AddBox(300, 300, 700, 700)), format_action(AddPoint(500, 500, True)),
         format_action(AddPoint(350, 650, False)), format_action(Stop())]  # fmt: skip


@pytest.fixture(scope="module")
def case(demo_dir):
    stem = "_".join(CASE.split("_")[:3])
    image = Image.open(demo_dir / "demo" / f"{stem}.png").convert("RGB")
    mask = Image.open(demo_dir / "demo_mask" / f"{CASE}.png").convert("L")
    image = np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    return image, np.asarray(mask.resize((SIZE, SIZE), Image.Resampling.NEAREST)) > 127


@pytest.fixture(scope="module")
def litemedsam():
    from medsam_agent_rt.segmenters import build_segmenter

    return build_segmenter("litemedsam", backend="torch")


def run(seg, policy, image, gt, human=False, cfg=None):
    """An episode (the agent, and optionally a person's click + undo between turns); returns the
    episode, its record and the (h2d, d2h) bytes it moved."""
    before = METER.snapshot()
    ep = Episode(seg, policy, cfg or SessionConfig(keep_largest=True, fill_holes=True))
    ep.start(image, "right kidney", gt)
    first = True
    while not ep.done:
        ep.step()
        if human and first and not ep.done:
            ep.apply(PixelPoint(120, 140, True))
            ep.apply(PixelPoint(60, 60, False))
            ep.apply("undo")
        first = False
    after = METER.snapshot()
    return ep, ep.record, (after[0] - before[0], after[1] - before[1])


def same_records(a, b, exact=True):
    assert [t.outcome for t in a.turns] == [t.outcome for t in b.turns]
    assert [t.source for t in a.turns] == [t.source for t in b.turns]
    for ta, tb in zip(a.turns, b.turns):
        assert ta.action == tb.action and ta.text == tb.text
        if exact:
            assert (ta.mask, ta.mask_area, ta.components) == (tb.mask, tb.mask_area, tb.components)
            assert (ta.iou, ta.dice, ta.tool_score) == (tb.iou, tb.dice, tb.tool_score)
    if exact:
        assert a.final == b.final


@pytest.mark.parametrize("human", [False, True])
def test_the_device_code_path_equals_the_host_path(litemedsam, case, monkeypatch, human):
    image, gt = case
    policy = (lambda: ReplayPolicy(TEXTS)) if human else (lambda: ExpertPolicy(ExpertConfig()))
    host_ep, host_rec, host_bytes = run(litemedsam, policy(), image, gt, human)
    with monkeypatch.context() as m:  # the device path, with CPU torch tensors as the "device"
        m.setattr(TorchSegmenter, "on_device", property(lambda self: True))
        dev_ep, dev_rec, dev_bytes = run(litemedsam, policy(), image, gt, human)
        chain = dev_ep._st.tool
        assert chain.on_device and isinstance(chain.history[-1].low_res_logits, torch.Tensor)
        assert dev_ep._st.device is not None
    assert host_ep._st.device is None
    same_records(host_rec, dev_rec)
    np.testing.assert_array_equal(host_ep.mask, dev_ep.mask)
    for k in range(len(host_rec.turns)):  # the policy's conversation, byte for byte
        a, b = host_rec.messages(image, k), dev_rec.messages(image, k)
        for ma, mb in zip(a, b):
            for pa, pb in zip(ma["content"], mb["content"]):
                assert pa.keys() == pb.keys()
                if pa["type"] == "image":
                    assert pa["image"].tobytes() == pb["image"].tobytes()
    assert host_bytes == dev_bytes == (0, 0)  # nothing crosses on a CPU tool
    assert len(host_rec.human()) == (3 if human else 0)


def test_device_decode_keeps_tensors_and_accepts_device_logits(litemedsam, case, monkeypatch):
    image, _ = case
    enc = litemedsam.encode(image)
    box = np.array([70.0, 80.0, 180.0, 190.0])
    host = litemedsam.decode(enc, box=box, multimask_output=False)
    monkeypatch.setattr(TorchSegmenter, "on_device", property(lambda self: True))
    dev = litemedsam.decode(enc, box=box, multimask_output=False, on_device=True)
    assert isinstance(dev.low_res_logits, torch.Tensor)
    np.testing.assert_array_equal(dev.low_res_logits.numpy(), host.low_res_logits)
    pt, lab = np.array([[120.0, 140.0]]), np.array([1])
    again = litemedsam.decode(enc, pt, lab, box, dev.low_res_logits, False, on_device=True)
    want = litemedsam.decode(enc, pt, lab, box, host.low_res_logits, False)
    np.testing.assert_array_equal(np.asarray(again.masks), want.masks)
    with pytest.raises(ValueError, match="mask_input must be"):
        litemedsam.decode(enc, pt, lab, box, dev.low_res_logits[:, :10], False, on_device=True)


@pytest.mark.needs_cuda
def test_cuda_episode_matches_the_cpu_and_moves_only_views(case):
    from medsam_agent_rt.segmenters import build_segmenter

    image, gt = case
    cpu = build_segmenter("litemedsam", backend="torch", device="cpu")
    cuda = build_segmenter("litemedsam", device="cuda")
    assert cuda.on_device and not cpu.on_device
    cfg = SessionConfig(keep_largest=True)
    cpu_ep, cpu_rec, cpu_bytes = run(cpu, ReplayPolicy(TEXTS), image, gt, cfg=cfg)
    cuda_ep, cuda_rec, (h2d, d2h) = run(cuda, ReplayPolicy(TEXTS), image, gt, cfg=cfg)
    assert cpu_bytes == (0, 0)
    same_records(cpu_rec, cuda_rec, exact=False)
    a, b = cpu_ep.mask, cuda_ep.mask
    assert 2 * (a & b).sum() / max(a.sum() + b.sum(), 1) > 0.99  # float32 GPU vs CPU maths
    for ta, tb in zip(cpu_rec.executed(), cuda_rec.executed()):
        assert abs(ta.mask_area - tb.mask_area) <= max(5, 0.01 * ta.mask_area)
        assert ta.dice == pytest.approx(tb.dice, abs=0.01)
    n = len(cuda_rec.executed())
    view, mask = 512 * 512 * 3, SIZE * SIZE
    # d2h: the 512 view of each executed turn, each recorded mask (RLE), the final mask, and the
    # scores the mask choice reads (a few bytes per call); never the (C, 256, 256) logits
    extra = d2h - n * view - (n + 1) * mask
    assert 0 <= extra <= 64 * n, (d2h, extra)
    # h2d: the image (1, 3, 256, 256) float32 once, the view and GT once, then small tokens
    image_bytes = 3 * SIZE * SIZE * 4
    small = h2d - image_bytes - view - mask
    assert 0 <= small <= 8192 * n, (h2d, small)
