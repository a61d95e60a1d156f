"""Many sessions on one shared segmenter and policy: N = 8 parallel sessions on different demo
images with interleaved agent and human steps give, turn by turn, exactly the masks of the same
steps run alone in-process (``Episode`` on its own); 200 sessions created and evicted keep the
store and the process memory bounded."""

from __future__ import annotations

import asyncio
import io
import json
import random
import tracemalloc

import numpy as np
from _client import client_for, new_session, run
from PIL import Image

from medsam_agent_rt.episode import Episode
from medsam_agent_rt.io import read_image, read_mask
from medsam_agent_rt.policies import build_policy
from medsam_agent_rt.protocol import PixelPoint
from medsam_agent_rt.server import ServerConfig, create_app
from medsam_agent_rt.session_config import SessionConfig
from medsam_agent_rt.trajectory import rle_decode

N_SESSIONS = 8
STOP = '<tool_call>\n{"name": "stop_action", "arguments": {}}\n</tool_call>'
POLICY = "clicker:3"  # GT-driven, deterministic; one fresh instance per session


def _clicks(gt: np.ndarray) -> tuple[dict, dict]:
    """A negative click outside the GT (near its box) and a positive one inside it."""
    ys, xs = np.nonzero(gt)
    inside = int(len(ys) // 2)
    y0, x0 = max(int(ys.min()) - 6, 0), max(int(xs.min()) - 6, 0)
    if gt[y0, x0]:
        y0, x0 = 0, 0
    return (
        {"type": "point", "x": x0, "y": y0, "positive": False},
        {"type": "point", "x": int(xs[inside]), "y": int(ys[inside]), "positive": True},
    )


async def _script(c, image, gt_path, gt, seed: int, log: list) -> tuple[str, list]:
    """One session: agent step, a person's negative click, agent step, positive click, undo,
    then the agent to the end (background run awaited) or steps, then accept. Sleeps of a
    seeded random length between requests interleave the sessions. Returns the session id and
    the operations that took effect, for the in-process replay."""
    rnd = random.Random(seed)
    s = await new_session(c, image, target="the lesion")
    sid = s["id"]
    r = await c.put(
        f"/api/sessions/{sid}/gt", params={"filename": gt_path.name}, content=gt_path.read_bytes()
    )
    assert r.status_code == 200, r.text
    negative, positive = _clicks(gt)
    plan = [("step",), ("act", negative), ("step",), ("act", positive), ("act", {"type": "undo"}),
            ("run",) if seed % 2 else ("step",), ("act", {"type": "accept"})]  # fmt: skip
    done: list = []
    for op in plan:
        await asyncio.sleep(rnd.random() * 0.05)
        state = (await c.get(f"/api/sessions/{sid}")).json()
        if state["done"]:
            break
        log.append(sid)
        if op[0] == "step":
            r = await c.post(f"/api/sessions/{sid}/step")
        elif op[0] == "run":
            r = await c.post(f"/api/sessions/{sid}/run", params={"wait": True})
        else:
            r = await c.post(f"/api/sessions/{sid}/actions", json=op[1])
        assert r.status_code in (200, 202), (op, r.text)
        done.append(op)
    return sid, done


def _alone(segmenter, policy_spec, image, gt, ops) -> Episode:
    """The same operations on one Episode in this thread, nothing else running."""
    from medsam_agent_rt.protocol import PixelBox

    config = SessionConfig(agent_ends_episode=False)  # as the server: open until accept
    ep = Episode(segmenter, build_policy(policy_spec), config, tool_spec="tiny-sam")
    ep.start(image.rgb, "the lesion", gt, image_id="alone")
    for op in ops:
        if op[0] == "step":
            ep.step()
        elif op[0] == "run":  # the server's run: turns until the agent (or the episode) is done
            while not ep.done and ep.agent_done != "budget":
                ep.step()
                if ep.agent_done is not None:
                    break
        else:
            a = op[1]
            if a["type"] == "point":
                ep.apply(PixelPoint(a["x"], a["y"], a["positive"]))
            elif a["type"] == "box":
                ep.apply(PixelBox(*a["box"]))
            else:
                ep.apply(a["type"])
    return ep


def _small(pairs, folder, side: int = 256):
    """``side`` x ``side`` copies of the demo images and masks (a quarter of the pixels to
    post-process; the episode logic is the same)."""
    out = []
    for img, gt in pairs:
        a, b = folder / img.name, folder / ("gt_" + gt.name)
        Image.open(img).convert("RGB").resize((side, side), Image.BILINEAR).save(a)
        Image.open(gt).convert("L").resize((side, side), Image.NEAREST).save(b)
        out.append((a, b))
    return out


def test_parallel_sessions_equal_the_same_steps_alone(segmenter, demo_pairs, tmp_path):
    pairs = demo_pairs[:: max(1, len(demo_pairs) // N_SESSIONS)][:N_SESSIONS]
    assert len(pairs) == N_SESSIONS
    pairs = _small(pairs, tmp_path)
    gts = [read_mask(g) for _, g in pairs]
    app = create_app(segmenter, POLICY, ServerConfig(rate_per_s=None), tool_spec="tiny-sam")
    log: list[str] = []

    async def main():
        async with client_for(app) as c:
            results = await asyncio.gather(
                *(
                    _script(c, img, gp, gt, k, log)
                    for k, ((img, gp), gt) in enumerate(zip(pairs, gts))
                )
            )
            out = []
            for sid, ops in results:
                traj = json.loads(
                    (await c.get(f"/api/sessions/{sid}/files/trajectory.json")).content
                )
                png = (await c.get(f"/api/sessions/{sid}/files/mask.png")).content
                out.append((ops, traj, np.asarray(Image.open(io.BytesIO(png))) > 0))
            return out

    served = run(main())
    # the sessions really interleaved: the request log is not one session after another
    runs = sum(1 for a, b in zip(log, log[1:]) if a != b)
    assert runs > N_SESSIONS, f"sessions ran one after another ({runs} switches)"
    sources = set()
    for (img, _), gt, (ops, traj, final) in zip(pairs, gts, served):
        alone = _alone(segmenter, POLICY, read_image(img), gt, ops)
        mask, rec = alone.result()
        assert [t["source"] for t in traj["turns"]] == [t.source for t in rec.turns]
        assert [t["outcome"] for t in traj["turns"]] == [t.outcome for t in rec.turns]
        for t_served, t_alone in zip(traj["turns"], rec.turns):
            assert (t_served["mask"] is None) == (t_alone.mask is None)
            if t_alone.mask is not None:
                np.testing.assert_array_equal(
                    rle_decode(t_served["mask"]), rle_decode(t_alone.mask)
                )
        np.testing.assert_array_equal(final, mask)
        assert traj["end_reason"] == rec.end_reason
        sources |= {t.source for t in rec.turns}
    assert sources == {"agent", "human"}


def test_200_sessions_created_and_evicted_stay_bounded(segmenter, demo_pairs, tmp_path):
    """200 uploads into a store of 4 sessions; every 10th session also runs a person's click
    (an episode with its views and masks). Memory allocated after the first 40 sessions may
    not grow with the next 160 (tracemalloc: NumPy buffers and Python objects)."""
    img = Image.open(demo_pairs[0][0]).convert("RGB").resize((256, 256))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    body = buf.getvalue()
    store = tmp_path / "store"
    app = create_app(segmenter, [STOP], ServerConfig(rate_per_s=None, max_sessions=4,
                                                        store_dir=str(store)))  # fmt: skip
    state = app.state.msrt
    sizes = {}

    async def main():
        async with client_for(app) as c:
            for k in range(200):
                r = await c.post(
                    "/api/sessions", params={"filename": f"s{k}.png", "target": "t"}, content=body
                )
                assert r.status_code == 201, r.text
                if k % 10 == 0:
                    sid = r.json()["id"]
                    r = await c.post(
                        f"/api/sessions/{sid}/actions", json={"type": "point", "x": 128, "y": 128}
                    )
                    assert r.status_code == 200, r.text
                assert len(state.store) <= 4
                assert len(list(store.iterdir())) <= 4
                if k == 39:
                    import gc

                    gc.collect()
                    sizes["after40"] = tracemalloc.get_traced_memory()[0]
            import gc

            gc.collect()
            sizes["after200"] = tracemalloc.get_traced_memory()[0]
            metrics = (await c.get("/metrics")).text
            assert "msrt_sessions_evicted_total 196" in metrics

    tracemalloc.start()
    try:
        run(main())
    finally:
        tracemalloc.stop()
    growth = sizes["after200"] - sizes["after40"]
    one_session = (
        256 * 256 * 3 + 512 * 512 * 3
    )  # the image + one view: a leak of 160 sessions is >100 MB
    assert growth < 8 * one_session, f"memory grew by {growth / 1e6:.1f} MB over 160 sessions"
    assert len(state.store) == 0 and not any(store.iterdir())  # closed: every folder removed
