"""A real browser: headless Chromium (Debian's package, driven by Playwright) loads the page from
a uvicorn server on 127.0.0.1 started here, uploads a demo image, runs the embedded agent
(policy + LiteMedSAM), adds a negative click on the canvas, accepts, downloads the mask; the file
is checked against the server's record. Screenshots go to a test artefact folder (and one to
docs/images/server_page.png for the README when it is missing or MSRT_README_FIGURES=1)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.server import ServerConfig, create_app

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
README_FIGURE = Path(__file__).resolve().parents[2] / "docs" / "images" / "server_page.png"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "no chromium executable (Debian: apt-get install chromium); the browser test needs it"
    )


@pytest.fixture
def live_server(litemedsam, tmp_path):
    """uvicorn serving the embedded policy + LiteMedSAM on 127.0.0.1 (a free port), stopped
    after the test."""
    import uvicorn

    from medsam_agent_rt.policies import default_policy_spec

    if default_policy_spec() is None:
        pytest.skip("this installation ships no embedded policy")
    app = create_app(litemedsam, "default", ServerConfig(rate_per_s=None, store_dir=str(tmp_path / "store")),
                     tool_spec="litemedsam")  # fmt: skip
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(300):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(30)
    sock.close()


def test_page_upload_run_click_accept_download(live_server, demo_dir, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the dev extra)"
    )
    executable = _chromium()
    url, app = live_server
    image = demo_dir / "demo" / "04_CT_liver.png"
    shots = tmp_path / "artefacts"
    shots.mkdir()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_function("document.querySelector('#preset').options.length > 1")
            page.fill("#target", "liver tumor in abdomen CT")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#status:has-text('1024×1024')", timeout=60_000)
            page.click("#run")
            # the agent's turns arrive over the event stream until it stops or uses its budget
            page.wait_for_selector("#status:has-text('the agent finished')", timeout=120_000)
            agent_cards = page.locator("#strip li.agent").count()
            assert agent_cards >= 1
            page.screenshot(path=str(shots / "1-agent.png"))
            # a clinician's negative click (right button) on the canvas, inside what the agent
            # segmented (or at (150, 150) when its mask is empty)
            (live,) = list(app.state.msrt.store)
            ys, xs = np.nonzero(live.episode.mask)
            cx, cy = (int(xs[len(xs) // 2]), int(ys[len(ys) // 2])) if len(xs) else (150, 150)
            box = page.locator("#canvas").bounding_box()
            scale = box["width"] / 1024
            page.mouse.click(
                box["x"] + (cx + 0.5) * scale, box["y"] + (cy + 0.5) * scale, button="right"
            )
            page.wait_for_selector("#strip li.human", timeout=60_000)
            assert "− point" in page.locator("#strip li.human").first.inner_text()
            page.keyboard.press("a")  # accept
            page.wait_for_selector("#status:has-text('done: accepted')", timeout=60_000)
            page.screenshot(path=str(shots / "2-accepted.png"))
            with page.expect_download() as dl:
                page.click("#download")
            saved = shots / dl.value.suggested_filename
            dl.value.save_as(saved)
            page.set_viewport_size({"width": 1024, "height": 1024})
            page.screenshot(path=str(shots / "3-1024x1024.png"))
            assert not errors, errors
        finally:
            browser.close()
    # the downloaded file is the episode's final mask at the image's size, and the record
    # shows the agent's turns, then the person's click and accept
    mask = np.asarray(Image.open(saved))
    assert saved.name.endswith("mask.png") and mask.shape == (1024, 1024)
    assert set(np.unique(mask)) <= {0, 255}
    (s,) = list(app.state.msrt.store) or [None]
    assert s is not None
    final, rec = s.episode.result()
    np.testing.assert_array_equal(mask > 0, final)
    sources = [t.source for t in rec.turns]
    assert sources[-2:] == ["human", "human"] and "agent" in sources
    click = rec.turns[-2].action
    assert np.abs(np.array(click["pixels"]) - [cx, cy]).max() <= 1 and click["positive"] is False
    assert rec.end_reason == "accepted"
    if os.environ.get("MSRT_README_FIGURES") or not README_FIGURE.exists():  # not on every run
        README_FIGURE.parent.mkdir(parents=True, exist_ok=True)
        Image.open(shots / "2-accepted.png").save(README_FIGURE, optimize=True)
    print(f"screenshots: {shots}")
    # the artefacts stay in pytest's tmp folder (kept for the last runs); CI may collect them
