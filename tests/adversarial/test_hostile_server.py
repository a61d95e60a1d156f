"""OpenAIPolicy against a hostile server on loopback: every misbehaviour becomes an
OpenAIPolicyError naming the URL that was requested, within the deadline and the size cap;
redirects are never followed (no request, and no API key, reaches another host)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _hostile import BIG, BOX, HostileServer

from medsam_agent_rt.policies.openai_compat import OpenAIPolicy, OpenAIPolicyError
from medsam_agent_rt.protocol import build_messages


@pytest.fixture
def hostile():
    s = HostileServer()
    yield s
    s.close()


def obs():
    view = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return {"messages": build_messages("liver in abdomen CT", [view], [])}


def policy(server, **kw):
    kw = {"model": "m", "max_retries": 0, "backoff": 0.01, "timeout": 2.0, **kw}
    return OpenAIPolicy(server.url, **kw)


def test_a_well_behaved_answer_passes(hostile):
    assert policy(hostile).act(obs()).text == BOX


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("garbage", r"not JSON \(Content-Type application/octet-stream"),
        ("html", r"not JSON \(Content-Type text/html"),
        ("sse", r"not JSON \(Content-Type text/event-stream"),
        ("truncated", "not JSON"),
        ("deep", "not JSON"),
        ("bigint", "not JSON"),
        ("not_text", r"content' must be a string, got int"),
        ("e400", r"HTTP 400 .*injected 400"),
    ],
)
def test_malformed_answers_are_clear_errors_naming_the_url(hostile, mode, match):
    hostile.default = mode
    with pytest.raises(OpenAIPolicyError, match=match) as info:
        policy(hostile).act(obs())
    assert str(info.value).startswith(hostile.url + "/chat/completions")


@pytest.mark.parametrize("status_mode", ["e500", "e503"])
def test_server_errors_are_retried_then_reported(hostile, status_mode):
    hostile.default = status_mode
    with pytest.raises(OpenAIPolicyError, match=r"failed after 3 attempts: HTTP 5\d\d"):
        policy(hostile, max_retries=2).act(obs())
    assert len(hostile.requests) == 3


@pytest.mark.parametrize(
    "location",
    ["http://203.0.113.7:80/v1/chat/completions", "http://127.0.0.1:9/v1/chat/completions"],
)
def test_redirects_are_never_followed_and_the_key_stays_home(hostile, monkeypatch, location):
    monkeypatch.setenv("MSRT_ADV_KEY", "sk-do-not-leak")
    hostile.default, hostile.location = "redirect", location
    p = policy(hostile, api_key_env="MSRT_ADV_KEY", max_retries=2)
    with pytest.raises(OpenAIPolicyError, match="redirects are never followed") as info:
        p.act(obs())
    message = str(info.value)
    assert message.startswith(hostile.url + "/chat/completions")  # the URL that was requested
    assert location in message and "sk-do-not-leak" not in message
    assert len(hostile.requests) == 1  # not retried, not followed (the socket audit checks too)


def test_a_trickling_server_trips_the_deadline(hostile):
    hostile.default = "trickle"  # a byte every 20 ms: no single read ever times out
    t0 = time.monotonic()
    with pytest.raises(OpenAIPolicyError, match="deadline of 1 s"):
        policy(hostile, timeout=0.5, deadline=1.0, max_retries=3).act(obs())
    assert time.monotonic() - t0 < 2.5


def test_a_silent_server_trips_the_read_timeout_then_the_deadline(hostile):
    hostile.default, hostile.delay = "slow", 3.0
    t0 = time.monotonic()
    with pytest.raises(OpenAIPolicyError, match="within the deadline of 1.5 s"):
        policy(hostile, timeout=0.4, deadline=1.5, max_retries=10, backoff=0.05).act(obs())
    assert time.monotonic() - t0 < 2.5


@pytest.mark.parametrize("mode", ["huge", "huge_chunked"])
def test_a_50_mb_answer_is_refused_early(hostile, mode):
    hostile.default = mode
    t0 = time.monotonic()
    with pytest.raises(OpenAIPolicyError, match="limit of 1,048,576 bytes"):
        policy(hostile, max_response_bytes=1 << 20).act(obs())
    assert time.monotonic() - t0 < 5
    time.sleep(0.2)
    assert hostile.sent < BIG // 2  # the client hung up instead of reading it all


def test_an_overlong_text_is_cut_and_marked(hostile):
    hostile.text = BOX + " " + "z" * 100_000
    turn = policy(hostile, max_text_chars=2000).act(obs())
    assert len(turn.text) == 2000 and turn.info["truncated_chars"] == len(hostile.text) - 2000


@pytest.mark.parametrize(
    "url",
    ["http://8.8.8.8:8080/v1", "https://api.example.com/v1", "http://user:pw@127.0.0.1:1/v1"],
)
def test_non_local_or_credentialed_base_urls_are_refused(url, monkeypatch):
    monkeypatch.delenv("MSRT_ALLOW_REMOTE_POLICY", raising=False)
    with pytest.raises(ValueError, match="base_url"):
        OpenAIPolicy(url)


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3:8000", "http://[::1]:8080/v1", "http://gpu-box:8000", "http://a.local"]
)
def test_lan_hosts_are_accepted(url):
    assert OpenAIPolicy(url, model="m").base_url.startswith(url.rstrip("/v1")[:12])


def test_an_oversized_request_is_refused_before_it_is_sent(hostile, monkeypatch):
    monkeypatch.setenv("MSRT_MAX_REQUEST_BYTES", "5000")
    with pytest.raises(OpenAIPolicyError, match="over the limit of 5,000"):
        policy(hostile).act(obs())  # one 64x64 noise view is > 12 kB as base64 PNG
    assert not [r for r in hostile.requests if r["method"] == "POST"]
