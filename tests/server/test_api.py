"""The session API end to end: turn events (SSE) equal the record, downloads equal the episode's
mask (NIfTI with the input's affine), background runs with a person's click in between, stop /
cancel / reset, clear 4xx for misuse, metrics and JSON logs."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from _client import client_for, new_session, run
from PIL import Image

from medsam_agent_rt.server import ServerConfig, create_app
from medsam_agent_rt.server.logs import JsonFormatter

STOP = '<tool_call>\n{"name": "stop_action", "arguments": {}}\n</tool_call>'


def _box(x1, y1, x2, y2) -> str:
    return f'<tool_call>\n{{"name": "add_bbox", "arguments": {{"bbox_2d": [{x1}, {y1}, {x2}, {y2}]}}}}\n</tool_call>'


def _png(side: int = 96) -> bytes:
    yy, xx = np.mgrid[:side, :side]
    img = np.stack([(xx * 2) % 256, (yy * 3) % 256, ((xx + yy) * 5) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _sse(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def _mask(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content))) > 0


def test_events_downloads_and_record_agree(segmenter, tmp_path, caplog):
    """Agent box, a person's negative click, undo, agent box, accept: the SSE stream, the
    trajectory and the mask downloads tell the same story."""
    policy = [_box(100, 100, 700, 700), _box(200, 150, 800, 900), STOP]
    app = create_app(
        segmenter, policy, ServerConfig(rate_per_s=None, store_dir=str(tmp_path / "s"))
    )
    img = tmp_path / "a.png"
    img.write_bytes(_png())
    caplog.set_level(logging.INFO, logger="medsam_agent_rt.server")

    async def main():
        async with client_for(app) as c:
            sid = (await new_session(c, img, target="a thing"))["id"]
            assert (await c.post(f"/api/sessions/{sid}/step")).status_code == 200
            r = await c.post(
                f"/api/sessions/{sid}/actions",
                json={"type": "point", "x": 30, "y": 40, "positive": False},
            )
            assert r.json()["turns"][0]["source"] == "human"
            after_click = _mask((await c.get(f"/api/sessions/{sid}/current-mask.png")).content)
            await c.post(f"/api/sessions/{sid}/actions", json={"type": "undo"})
            await c.post(f"/api/sessions/{sid}/step")
            live = _mask((await c.get(f"/api/sessions/{sid}/current-mask.png")).content)
            r = await c.post(f"/api/sessions/{sid}/actions", json={"type": "accept"})
            assert r.json()["state"]["end_reason"] == "accepted"
            events = _sse(
                (await c.get(f"/api/sessions/{sid}/events", params={"until_done": True})).text
            )
            traj = (await c.get(f"/api/sessions/{sid}/files/trajectory.json")).json()
            final = _mask((await c.get(f"/api/sessions/{sid}/files/mask.png")).content)
            nifti = (await c.get(f"/api/sessions/{sid}/files/mask.nii.gz")).content
            overlay = (await c.get(f"/api/sessions/{sid}/files/overlay.png")).content
            r = await c.post(f"/api/sessions/{sid}/step")
            assert r.status_code == 409 and "over" in r.json()["detail"]
            metrics = (await c.get("/metrics")).text
            return after_click, live, events, traj, final, nifti, overlay, metrics

    after_click, live, events, traj, final, nifti, overlay, metrics = run(main())
    turns = [e["turn"] for e in events if e["kind"] == "turn"]
    assert [e["kind"] for e in events] == ["start"] + ["turn"] * 5 + ["end"]
    assert [(t["source"], t["outcome"]) for t in turns] == [
        ("agent", "executed"), ("human", "executed"), ("human", "undo"), ("agent", "executed"),
        ("human", "accept")]  # fmt: skip
    assert [(t["source"], t["outcome"]) for t in traj["turns"]] == [
        (t["source"], t["outcome"]) for t in turns
    ]
    assert [e["seq"] for e in events] == list(range(len(events)))
    from medsam_agent_rt.trajectory import rle_decode

    np.testing.assert_array_equal(rle_decode(traj["turns"][1]["mask"]), after_click)
    np.testing.assert_array_equal(rle_decode(traj["turns"][3]["mask"]), live)
    np.testing.assert_array_equal(final, live)  # no clean-up configured: final = last tool mask
    assert traj["final"]["area"] == int(final.sum()) == turns[3]["mask_area"]
    import gzip

    import nibabel as nib

    vol = nib.Nifti1Image.from_bytes(gzip.decompress(nifti)).get_fdata()
    np.testing.assert_array_equal(vol[:, :, 0].T > 0, final)
    assert Image.open(io.BytesIO(overlay)).size[0] > 0
    # metrics: counters match, histogram buckets are cumulative
    assert 'msrt_turns_total{outcome="executed",source="human"} 1' in metrics
    assert 'msrt_episodes_total{end_reason="accepted"} 1' in metrics
    buckets = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith('msrt_turn_seconds_bucket{source="human"')]  # fmt: skip
    assert buckets == sorted(buckets) and buckets[-1] == 3
    # structured logs: JSON lines with request and session ids
    records = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    req = [r for r in records if r["event"] == "request" and r.get("session_id")]
    assert req and all(len(r["request_id"]) == 16 and r["status"] for r in req)
    assert any(r["event"] == "turn" and r["source"] == "human" for r in records)


def test_nifti_upload_mask_keeps_the_affine(segmenter, tmp_path):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(1)
    vol = rng.normal(100, 30, (40, 48, 5)).astype(np.float32)
    affine = np.array([[0, -0.8, 0, 12.0], [0.7, 0, 0, -30.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), path)
    app = create_app(segmenter, [_box(200, 200, 800, 800), STOP], ServerConfig(rate_per_s=None))

    async def main():
        async with client_for(app) as c:
            st = await new_session(c, path, target="t", slice=3, axis=2)
            assert (st["slice_index"], st["slice_count"]) == (3, 5)
            await c.post(f"/api/sessions/{st['id']}/run", params={"wait": True})
            return (await c.get(f"/api/sessions/{st['id']}/files/mask.nii.gz")).content

    out = tmp_path / "mask.nii.gz"
    out.write_bytes(run(main()))
    m = nib.load(out)
    np.testing.assert_allclose(m.affine, affine, atol=1e-5)
    data = np.asarray(m.dataobj)
    assert data.shape == vol.shape and data[:, :, 3].any()
    assert not data[:, :, [0, 1, 2, 4]].any()  # the mask sits in the slice it was drawn on


class _SlowPolicy:
    """Boxes forever, 50 ms per turn (a model's think time), counting calls."""

    name, requires_gt = "slow", False

    def __init__(self):
        self.calls = 0

    def reset(self, task):
        pass

    def act(self, obs):
        import time

        from medsam_agent_rt.policies.base import PolicyTurn

        self.calls += 1
        time.sleep(0.05)
        k = obs.step * 50
        return PolicyTurn(_box(100 + k, 100, 600 + k, 600))


def test_background_run_with_a_click_between_turns_then_stop_cancel_reset(segmenter, tmp_path):
    policy = _SlowPolicy()
    app = create_app(segmenter, policy, ServerConfig(rate_per_s=None, max_actions=50))
    img = tmp_path / "a.png"
    img.write_bytes(_png())

    async def main():
        import asyncio

        async with client_for(app) as c:
            sid = (await new_session(c, img, target="t"))["id"]
            r = await c.post(f"/api/sessions/{sid}/run")
            assert r.status_code == 202 and r.json()["running"]
            assert (await c.post(f"/api/sessions/{sid}/run")).status_code == 409
            assert (await c.post(f"/api/sessions/{sid}/step")).status_code == 409

            async def turns_at_least(n):  # polls; no timing assumption
                for _ in range(2000):
                    st = (await c.get(f"/api/sessions/{sid}")).json()
                    if st["turns"] >= n:
                        return
                    await asyncio.sleep(0.01)
                raise AssertionError(f"fewer than {n} turns")

            await turns_at_least(1)
            r = await c.post(
                f"/api/sessions/{sid}/actions",
                json={"type": "point", "x": 5, "y": 5, "positive": False},
            )
            assert r.status_code == 200
            await turns_at_least(r.json()["turns"][0]["index"] + 2)
            st = (await c.post(f"/api/sessions/{sid}/stop")).json()
            assert not st["running"] and not st["done"]
            traj = (await c.get(f"/api/sessions/{sid}/files/trajectory.json")).json()
            sources = [t["source"] for t in traj["turns"]]
            i = sources.index("human")
            assert 0 < i < len(sources) - 1, sources  # agent turns before and after the click
            r = await c.post(f"/api/sessions/{sid}/cancel")
            assert r.json()["end_reason"] == "cancelled"
            r = await c.post(f"/api/sessions/{sid}/reset")
            assert r.json()["generation"] == 1 and not r.json()["started"]
            r = await c.put(f"/api/sessions/{sid}/target", json={"target": ""})
            assert r.status_code == 422
            assert (await c.delete(f"/api/sessions/{sid}")).status_code == 204
            assert (await c.get(f"/api/sessions/{sid}")).status_code == 404

    run(main())


def test_misuse_gets_clear_errors(segmenter, tmp_path):
    class Broken(_SlowPolicy):
        def act(self, obs):
            raise ConnectionError("model server down")

    img = tmp_path / "a.png"
    img.write_bytes(_png())

    async def main():
        app = create_app(segmenter, "expert", ServerConfig(rate_per_s=None))
        async with client_for(app) as c:
            sid = (await new_session(c, img, target="t"))["id"]
            r = await c.post(f"/api/sessions/{sid}/step")
            assert r.status_code == 409 and "GT-driven" in r.json()["detail"]
            r = await c.put(f"/api/sessions/{sid}/gt", content=_png(50))
            assert r.status_code == 422 and "size" in r.json()["detail"]
            sid2 = (await new_session(c, img, target=""))["id"]
            r = await c.post(f"/api/sessions/{sid2}/actions", json={"type": "accept"})
            assert r.status_code == 409 and "target" in r.json()["detail"]
            r = await c.get(f"/api/sessions/{sid2}/files/mask.png")
            assert r.status_code == 409
            r = await c.get(f"/api/sessions/{sid2}/files/secret.txt")
            assert r.status_code == 404
        app = create_app(segmenter, Broken(), ServerConfig(rate_per_s=None))
        async with client_for(app) as c:
            sid = (await new_session(c, img, target="t"))["id"]
            r = await c.post(f"/api/sessions/{sid}/step")
            assert r.status_code == 502 and "model server down" in r.json()["detail"]
            st = (await c.get(f"/api/sessions/{sid}")).json()
            assert st["turns"] == 0 and not st["done"]  # the episode is unchanged
            r = await c.post(f"/api/sessions/{sid}/actions", json={"type": "point", "x": 9, "y": 9})
            assert r.status_code == 200  # a person can go on without the agent

    run(main())
