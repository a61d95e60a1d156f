"""Security and limits: the token on non-loopback configs, path traversal in names, oversized,
malformed and truncated uploads (4xx, nothing written outside the session store, no other
session harmed), the rate limit."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _client import client_for, run
from PIL import Image

from medsam_agent_rt.server import ServerConfig, create_app, is_loopback

TOKEN = "s3cret-token-0123456789"
STOP = '<tool_call>\n{"name": "stop_action", "arguments": {}}\n</tool_call>'


def _png(side: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A session store and a private temp folder (tempfile's default) that must stay empty."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp_path / "store", tmp


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert is_loopback("127.8.9.10") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("::")
    assert not is_loopback("example.org")


def test_non_loopback_needs_a_token(monkeypatch):
    monkeypatch.delenv("MSRT_TOKEN", raising=False)
    with pytest.raises(ValueError, match="needs a token"):
        ServerConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="at least 16"):
        ServerConfig(host="0.0.0.0", token="short")
    monkeypatch.setenv("MSRT_TOKEN", TOKEN)
    assert ServerConfig(host="0.0.0.0").token == TOKEN


def test_serve_command_refuses_a_public_bind_without_token(monkeypatch, capsys):
    from medsam_agent_rt.cli import main

    monkeypatch.delenv("MSRT_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "needs a token" in capsys.readouterr().err


def test_token_checked_on_every_api_request(segmenter, sandbox):
    store, _ = sandbox
    app = create_app(
        segmenter, [STOP], ServerConfig(host="0.0.0.0", token=TOKEN, store_dir=str(store))
    )
    good = {"Authorization": f"Bearer {TOKEN}"}

    async def main():
        async with client_for(app) as c:
            for method, path in [("GET", "/api/info"), ("GET", "/metrics"), ("GET", "/api/sessions"),
                                 ("POST", "/api/sessions"), ("GET", "/api/sessions/" + "0" * 32)]:  # fmt: skip
                for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                                {"Authorization": TOKEN}):  # fmt: skip
                    r = await c.request(method, path, headers=headers, content=_png())
                    assert r.status_code == 401, (method, path, headers, r.status_code)
            assert not store.exists() or not any(store.iterdir())  # refused before any write
            r = await c.post(
                "/api/sessions", params={"filename": "a.png"}, content=_png(), headers=good
            )
            assert r.status_code == 201
            sid = r.json()["id"]
            assert (await c.get(f"/api/sessions/{sid}")).status_code == 401
            assert (await c.get(f"/api/sessions/{sid}", headers=good)).status_code == 200
            # the page's static files and the health probe carry no data
            assert (await c.get("/")).status_code == 200
            assert (await c.get("/static/app.js")).status_code == 200
            assert (await c.get("/healthz")).status_code == 200

    run(main())


def test_path_traversal_names_stay_inside_the_store(segmenter, sandbox):
    store, tmp = sandbox
    app = create_app(segmenter, [STOP], ServerConfig(rate_per_s=None, store_dir=str(store)))
    outside = store.parent

    async def main():
        async with client_for(app) as c:
            before = _tree(outside)
            for name in (
                "../../evil.png",
                "..\\..\\evil.png",
                "/etc/evil.png",
                "a/../../b.png",
                "%2e%2e%2fx.png",
            ):
                r = await c.post("/api/sessions", params={"filename": name}, content=_png())
                assert r.status_code == 201, r.text
                assert "/" not in r.json()["name"] and "\\" not in r.json()["name"]
            new = {p for p in _tree(outside) - before if not p.startswith("store")}
            assert new == set(), new
            files = [p.name for p in store.rglob("*") if p.is_file()]
            assert sorted(files) == ["upload.png"] * 5
            # a zip whose member climbs out is refused; nothing is unpacked anywhere
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("../../escaped.dcm", b"DICM")
            r = await c.post("/api/sessions", params={"filename": "s.zip"}, content=buf.getvalue())
            assert r.status_code == 400 and "unsafe path" in r.json()["detail"]
            assert not list(outside.rglob("escaped.dcm"))
            # names in URLs cannot reach files either
            for path in ("/static/..%2f__init__.py", "/static/.hidden", "/api/sessions/..%2f..%2fetc",
                         "/api/sessions/" + "0" * 32 + "/files/..%2ftrajectory.json"):  # fmt: skip
                assert (await c.get(path)).status_code == 404, path
            assert not any(tmp.iterdir())

    run(main())


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the corrupt DICOM on purpose
def test_bad_uploads_are_4xx_and_lose_nothing(segmenter, sandbox, pydicom_ct):
    store, tmp = sandbox
    config = ServerConfig(rate_per_s=None, store_dir=str(store), max_upload_bytes=200_000,
                          max_pixels=300 * 300, max_slices=3)  # fmt: skip
    app = create_app(segmenter, [STOP], config)
    png = _png(64)
    ct = pydicom_ct.read_bytes()

    async def chunks(data: bytes, size: int = 4096):
        for i in range(0, len(data), size):
            yield data[i : i + size]

    cases = {
        "oversized (Content-Length)": (b"\x00" * 200_001, "a.png", 413),
        "oversized (streamed)": (chunks(b"\x89PNG" + b"\x00" * 250_000), "a.png", 413),
        "too many pixels": (_png(400), "big.png", 413),
        "empty": (b"", "a.png", 400),
        "not an image": (b"hello, this is not an image at all" * 10, "a.png", 415),
        "truncated PNG": (png[: len(png) // 2], "a.png", 422),
        "corrupt DICOM": (
            b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"\x01" * 40,
            "x.dcm",
            422,
        ),
        "truncated DICOM": (ct[: len(ct) // 3], "ct.dcm", 422),
        "truncated zip": (_zip({"a.dcm": ct})[:100], "s.zip", 400),
        "zip with too many slices": (_zip({f"{i}.dcm": ct for i in range(4)}), "s.zip", 413),
        "zip bomb": (_zip({"a.dcm": b"\x00" * 1_000_000}), "s.zip", 413),
    }

    async def main():
        async with client_for(app) as c:
            r = await c.post(
                "/api/sessions", params={"filename": "keep.png", "target": "t"}, content=png
            )
            keep = r.json()["id"]
            r = await c.post(
                f"/api/sessions/{keep}/actions", json={"type": "point", "x": 20, "y": 30}
            )
            assert r.status_code == 200
            mask_before = (await c.get(f"/api/sessions/{keep}/current-mask.png")).content
            files_before = _tree(store)
            for what, (body, name, status) in cases.items():
                r = await c.post("/api/sessions", params={"filename": name}, content=body)
                assert r.status_code == status, (what, r.status_code, r.text)
                assert "detail" in r.json() and str(store) not in r.json()["detail"], (what, r.text)
                assert _tree(store) == files_before, what  # nothing left behind
            assert not any(tmp.iterdir())
            # the earlier session is untouched and goes on working
            assert (await c.get(f"/api/sessions/{keep}/current-mask.png")).content == mask_before
            r = await c.post(
                f"/api/sessions/{keep}/actions",
                json={"type": "point", "x": 40, "y": 10, "positive": False},
            )
            assert r.status_code == 200
            assert [
                t["source"]
                for t in (await c.get(f"/api/sessions/{keep}/files/trajectory.json")).json()[
                    "turns"
                ]
            ] == ["human", "human"]
            # bad actions: 422 naming the problem, the episode unchanged
            for action in ({"type": "point", "x": 999, "y": 1}, {"type": "box", "box": [5, 5, 2, 2]},
                           {"type": "zoom"}, {"type": "point", "x": "a", "y": 1}, [1, 2]):  # fmt: skip
                r = await c.post(f"/api/sessions/{keep}/actions", json=action)
                assert r.status_code == 422, (action, r.text)
            r = await c.post(f"/api/sessions/{keep}/actions", content=b"{not json")
            assert r.status_code == 400
            r = await c.post(f"/api/sessions/{keep}/actions", content=b" " * 100_000)
            assert r.status_code == 413 and "JSON body" in r.json()["detail"]
            state = (await c.get(f"/api/sessions/{keep}")).json()
            assert state["turns"] == 2 and not state["done"]

    run(main())


def test_dicom_and_series_uploads(segmenter, sandbox, pydicom_ct):
    """A DICOM file with a window preset and a zipped two-slice series are read; DICOM-SEG says
    what it needs."""
    import pydicom

    store, _ = sandbox
    app = create_app(segmenter, [STOP], ServerConfig(rate_per_s=None, store_dir=str(store)))
    ds = pydicom.dcmread(pydicom_ct)
    slices = {}
    for k in range(2):
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID[:50]}.{k + 1}"
        b = io.BytesIO()
        ds.save_as(b)
        slices[f"dir/slice{k}.dcm"] = b.getvalue()

    async def main():
        async with client_for(app) as c:
            r = await c.post("/api/sessions", params={"filename": "ct.dcm", "window": "abdomen", "target": "t"},
                             content=pydicom_ct.read_bytes())  # fmt: skip
            assert r.status_code == 201, r.text
            st = r.json()
            assert (st["mapping"]["center"], st["mapping"]["width"]) == (40.0, 400.0)
            sid = st["id"]
            r = await c.post(f"/api/sessions/{sid}/image", json={"window": "lung"})
            assert r.json()["mapping"]["center"] == -600.0 and r.json()["generation"] == 1
            r = await c.post(
                f"/api/sessions/{sid}/actions", json={"type": "point", "x": 60, "y": 60}
            )
            assert r.status_code == 200, r.text
            r = await c.get(f"/api/sessions/{sid}/files/mask.dcm")
            try:
                import highdicom  # noqa: F401
            except ImportError:
                assert r.status_code == 501 and "highdicom" in r.json()["detail"]
            else:  # the SEG's one frame is the session's mask, on the uploaded image
                assert r.status_code == 200, r.text
                seg = pydicom.dcmread(io.BytesIO(r.content))
                live = await c.get(f"/api/sessions/{sid}/current-mask.png")
                want = np.asarray(Image.open(io.BytesIO(live.content))) > 0
                assert want.any()
                np.testing.assert_array_equal(seg.pixel_array.astype(bool), want)
                ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
                assert ref.ReferencedSOPInstanceUID == pydicom.dcmread(pydicom_ct).SOPInstanceUID
            r = await c.post("/api/sessions", params={"filename": "series.zip", "slice": 1},
                             content=_zip(slices))  # fmt: skip
            assert r.status_code == 201, r.text
            assert (r.json()["slice_index"], r.json()["slice_count"]) == (1, 2)

    run(main())


def test_rate_limit_per_client(segmenter, sandbox):
    store, _ = sandbox
    app = create_app(
        segmenter, [STOP], ServerConfig(rate_per_s=0.5, rate_burst=3, store_dir=str(store))
    )

    async def main():
        async with client_for(app) as c:
            codes = [(await c.get("/api/info")).status_code for _ in range(5)]
            assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
            r = await c.get("/api/info")
            assert int(r.headers["retry-after"]) >= 1
            assert (await c.get("/healthz")).status_code == 200  # probes are not limited

    run(main())


def test_serve_names_the_extra_when_fastapi_is_missing(monkeypatch, capsys):
    import importlib.util

    from medsam_agent_rt.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    assert main(["serve"]) == 2
    assert "medsam-agent-rt[server]" in capsys.readouterr().err


def test_the_carrying_strategy_is_checked_and_reaches_every_session(segmenter, sandbox, capsys):
    from medsam_agent_rt.cli import main

    with pytest.raises(ValueError, match="strategy must be one of"):
        ServerConfig(strategy="zoom")
    with pytest.raises(SystemExit) as info:
        main(["serve", "--strategy", "box+zoom", "--port", "1"])
    assert info.value.code == 2
    assert "strategy must be one of" in capsys.readouterr().err
    store, _ = sandbox
    config = ServerConfig(strategy="box+all_clicks", rate_per_s=None, store_dir=str(store))
    app = create_app(segmenter, [STOP], config)
    assert app.state.msrt.driver.config.strategy == "box+all_clicks"
