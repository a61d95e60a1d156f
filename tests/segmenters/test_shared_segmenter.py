"""One segmenter, many episodes: interleaved prompt chains (round-robin and in threads) give
exactly the masks each gives alone, on the torch and the ONNX Runtime backends; the shared
encoding store encodes an image once under concurrency; close() and context managers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medsam_agent_rt.segmenters import PromptChain  # noqa: E402
from medsam_agent_rt.segmenters.predictor import ClosedError  # noqa: E402
from medsam_agent_rt.segmenters.store import Encoded, EncodingStore  # noqa: E402
from medsam_agent_rt.segmenters.torch_backend import TorchSegmenter  # noqa: E402

# Per episode: an image and its scripted prompts (pixels); images differ in size and content.
SHAPES = [(50, 80), (64, 64), (40, 72), (50, 80)]
SCRIPTS = [
    [("box", (5, 4, 70, 45)), ("point", (30, 20, True)), ("point", (60, 10, False))],
    [("box", (10, 10, 50, 60)), ("point", (20, 30, False)), ("point", (40, 40, True))],
    [("point", (30, 20, True)), ("box", (2, 3, 60, 35)), ("point", (10, 30, True))],
    [("box", (20, 10, 60, 40)), ("point", (40, 30, True)), ("box", (1, 1, 79, 49))],
]


def images():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in SHAPES]


def apply(chain: PromptChain, prompt) -> tuple[np.ndarray, np.ndarray]:
    kind, args = prompt
    step = chain.add_box(args) if kind == "box" else chain.add_point(args[:2], args[2])
    return step.mask.copy(), step.low_res_logits.copy()


def alone(seg, imgs):
    """Each episode run start to end before the next starts: its masks and logits per step."""
    out = []
    for img, script in zip(imgs, SCRIPTS):
        chain = PromptChain(seg, img, strategy="box+all_clicks+prev_logits")
        out.append([apply(chain, p) for p in script])
    return out


def round_robin(seg, imgs):
    chains = [PromptChain(seg, img, strategy="box+all_clicks+prev_logits") for img in imgs]
    out: list[list] = [[] for _ in imgs]
    for k in range(len(SCRIPTS[0])):
        for i, chain in enumerate(chains):
            out[i].append(apply(chain, SCRIPTS[i][k]))
    return out


def threaded(seg, imgs):
    out: list[list] = [[] for _ in imgs]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(imgs))

    def work(i):
        try:
            barrier.wait()
            chain = PromptChain(seg, imgs[i], strategy="box+all_clicks+prev_logits")
            for p in SCRIPTS[i]:
                out[i].append(apply(chain, p))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def assert_same(got, want):
    for ep_got, ep_want in zip(got, want):
        assert len(ep_got) == len(ep_want)
        for (m, lg), (mw, lw) in zip(ep_got, ep_want):
            np.testing.assert_array_equal(m, mw)
            np.testing.assert_array_equal(lg, lw)


def check_backend(seg):
    imgs = images()
    want = alone(seg, imgs)
    # the reference can tell episodes apart: a mix-up of images would change the masks
    firsts = [ep[0][1] for ep in want]
    assert not np.array_equal(firsts[0], firsts[3])
    assert_same(round_robin(seg, imgs), want)
    seg.clear_cache()  # threads race to encode the same images
    assert_same(threaded(seg, imgs), want)
    # and the old single-image API, interleaved, is what goes wrong without the contract
    seg.set_image(imgs[0])
    a = seg.predict(box=np.array(SCRIPTS[0][0][1], float), multimask_output=False)
    seg.set_image(imgs[3])
    b = seg.predict(box=np.array(SCRIPTS[0][0][1], float), multimask_output=False)
    assert not np.array_equal(a.low_res_logits, b.low_res_logits)


def test_torch_backend_serves_interleaved_episodes(tiny_export):
    model, _, _ = tiny_export
    check_backend(TorchSegmenter(model, "sam", cache_size=8))


def test_onnx_backend_serves_interleaved_episodes(tiny_export):
    pytest.importorskip("onnxruntime")
    from medsam_agent_rt.segmenters.onnx_backend import OnnxSegmenter

    _, exported, _ = tiny_export
    with OnnxSegmenter(exported, intra_op_threads=1, allow_spinning=False) as seg:
        check_backend(seg)
    assert seg.closed and seg.encoder_session is None
    with pytest.raises(ClosedError, match="closed"):
        seg.encode(images()[0])


def test_openvino_backend_serves_interleaved_episodes(tiny_export, tmp_path):
    pytest.importorskip("openvino")
    from medsam_agent_rt.segmenters.openvino_backend import OpenVinoSegmenter

    _, exported, _ = tiny_export
    with OpenVinoSegmenter(exported, "fp32", threads=1, cache_dir=tmp_path) as seg:
        check_backend(seg)  # threads share one infer request per graph (locked)
    with pytest.raises(ClosedError, match="closed"):
        seg.encode(images()[0])


def test_decode_is_stateless_and_checks_its_argument(tiny_export):
    model, _, _ = tiny_export
    seg = TorchSegmenter(model, "sam", cache_size=0)
    img_a, img_b = images()[:2]
    enc_a = seg.encode(img_a)
    seg.set_image(img_b)  # the convenience layer's current image does not affect decode
    box = np.array([5.0, 4.0, 40.0, 30.0])
    got = seg.decode(enc_a, box=box)
    seg.set_image(img_a)
    want = seg.predict(box=box)
    np.testing.assert_array_equal(got.masks, want.masks)
    np.testing.assert_array_equal(got.low_res_logits, want.low_res_logits)
    assert enc_a.original_size == (50, 80) and len(enc_a.key) == 32
    with pytest.raises(TypeError, match="Encoded returned by encode"):
        seg.decode(img_a, box=box)
    with seg:
        pass
    assert seg.closed and seg.model is None
    seg.close()  # idempotent
    with pytest.raises(ClosedError):
        seg.decode(enc_a, box=box)


def test_store_computes_a_key_once_under_concurrency():
    store = EncodingStore(capacity=2)
    runs = []

    def compute():
        runs.append(1)
        time.sleep(0.05)
        return Encoded(object(), (1, 1), (1, 1), "a")

    got = []
    threads = [
        threading.Thread(target=lambda: got.append(store.get_or_encode("a", compute)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runs) == 1 and store.computed == 1 and len({id(g) for g in got}) == 1
    for key in "bc":
        store.get_or_encode(key, lambda k=key: Encoded(None, (1, 1), (1, 1), k))
    assert "a" not in store and len(store) == 2  # LRU capacity 2
    # keep=False (a zoom crop): computed, handed back, not stored, nothing evicted
    crop = store.get_or_encode("z", lambda: Encoded(None, (1, 1), (1, 1), "z"), keep=False)
    assert crop.key == "z" and "z" not in store and set("bc") <= {k for k in "bc" if k in store}
    assert store.get_or_encode("b", compute) is not None and len(runs) == 1  # b still a hit


def test_store_hands_an_encoder_error_to_every_waiter_and_retries_later():
    store = EncodingStore(capacity=0)
    started = threading.Event()

    def failing():
        started.set()
        time.sleep(0.05)
        raise RuntimeError("encoder crashed")

    errors = []

    def call():
        try:
            store.get_or_encode("k", failing)
        except RuntimeError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=call)
    first.start()
    started.wait()
    second = threading.Thread(target=call)
    second.start()
    first.join()
    second.join()
    assert errors == ["encoder crashed"] * 2 and store.computed == 0
    ok = store.get_or_encode("k", lambda: Encoded(None, (1, 1), (1, 1), "k"))
    assert ok.key == "k" and store.computed == 1 and len(store) == 0  # capacity 0 keeps nothing
    with pytest.raises(ValueError, match="cache_size must be >= 0"):
        EncodingStore(-1)
