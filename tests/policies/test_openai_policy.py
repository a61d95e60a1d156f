"""OpenAIPolicy against a local fake OpenAI-compatible server (127.0.0.1, ephemeral port)
that records every request. Every socket connection of these tests must be loopback."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.policies.openai_compat import OpenAIPolicy, OpenAIPolicyError
from medsam_agent_rt.protocol import (
    FOLLOWUP_TURN_TEXT,
    PHRASE_BOX,
    PHRASE_REFINE,
    SYSTEM_PROMPT,
    assistant_text,
    build_messages,
    first_turn_text,
)

TARGET = "polyp in colon endoscopy"
BOX = assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [100, 120, 560, 610]})
POINT = assistant_text(
    PHRASE_REFINE, "add_point", {"point_2d": [300, 333], "point_type": "positive"}
)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail on any connection that is not to 127.0.0.0/8 or ::1."""
    seen = []
    orig = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        seen.append(host)
        if not (str(host).startswith("127.") or host in ("::1", "localhost")):
            raise AssertionError(f"non-loopback connection attempted: {address}")
        return orig(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield seen


class FakeServer:
    """Scripted responses: (status, body bytes | dict, headers, delay seconds)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[tuple] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                owner.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(raw) if raw else None,
                    }
                )
                status, body, headers, delay = (
                    owner.script.pop(0) if owner.script else (500, b"no script", {}, 0)
                )
                if delay:
                    time.sleep(delay)
                data = json.dumps(body).encode() if isinstance(body, dict) else body
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def reply(self, content="", status=200, headers=None, delay=0.0, body=None, **message):
        if body is None:
            msg = {"role": "assistant", "content": content, **message}
            body = {
                "model": "served",
                "choices": [{"index": 0, "message": msg, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
        self.script.append((status, body, headers or {}, delay))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def _views(n):
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(n)]


def _decode_data_url(url: str) -> tuple[bytes, np.ndarray]:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    png = base64.b64decode(url[len(prefix) :], validate=True)
    return png, np.asarray(Image.open(io.BytesIO(png)))


def test_request_carries_the_protocol(server, monkeypatch, loopback_only):
    monkeypatch.setenv("MSRT_TEST_KEY", "sk-secret-123")
    server.reply(POINT)
    policy = OpenAIPolicy(server.url + "/v1/", model="medsam-agent", api_key_env="MSRT_TEST_KEY")
    views = _views(2)
    obs = SimpleNamespace(messages=build_messages(TARGET, views, [BOX]), turn=1, retry=False)
    turn = policy.act(obs)
    assert turn.text == POINT
    assert turn.info["finish_reason"] == "stop" and turn.info["attempts"] == 1
    assert turn.info["usage"] == {"prompt_tokens": 10, "completion_tokens": 5}

    (req,) = server.requests
    assert req["method"] == "POST" and req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-secret-123"
    assert req["headers"]["Content-Type"] == "application/json"
    body = req["json"]
    assert body["model"] == "medsam-agent"
    assert body["temperature"] == 0 and body["max_tokens"] == 128 and body["stream"] is False
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == SYSTEM_PROMPT
    assert msgs[2]["content"] == BOX
    for m, view, text in (
        (msgs[1], views[0], first_turn_text(TARGET)),
        (msgs[3], views[1], FOLLOWUP_TURN_TEXT),
    ):
        img_part, text_part = m["content"]
        assert img_part["type"] == "image_url" and text_part == {"type": "text", "text": text}
        png, pixels = _decode_data_url(img_part["image_url"]["url"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        np.testing.assert_array_equal(pixels, view)  # lossless: the exact view
        ref = io.BytesIO()
        Image.fromarray(view).save(ref, format="PNG")
        assert png == ref.getvalue()
    assert "sk-secret" not in repr(policy)
    assert set(loopback_only) == {"127.0.0.1"}


def test_retries_on_5xx_then_succeeds(server, monkeypatch, caplog):
    monkeypatch.setenv("MSRT_TEST_KEY", "sk-secret-123")
    server.reply(status=500, body=b"boom")
    server.reply(status=503, body={"error": {"message": "loading"}}, headers={"Retry-After": "0"})
    server.reply(status=429, body=b"slow down")
    server.reply(BOX)
    policy = OpenAIPolicy(
        server.url, model="m", backoff=0.01, max_retries=3, api_key_env="MSRT_TEST_KEY"
    )
    with caplog.at_level(logging.WARNING):
        turn = policy.act({"messages": build_messages(TARGET, _views(1), [])})
    assert turn.text == BOX and turn.info["attempts"] == 4
    assert len(server.requests) == 4
    assert all(r["json"] == server.requests[0]["json"] for r in server.requests)
    assert "HTTP 500" in caplog.text and "HTTP 429" in caplog.text
    assert "sk-secret" not in caplog.text


def test_gives_up_after_retries(server):
    for _ in range(3):
        server.reply(status=502, body=b"bad gateway")
    policy = OpenAIPolicy(server.url, model="m", backoff=0.01, max_retries=2)
    with pytest.raises(OpenAIPolicyError, match=r"failed after 3 attempts: HTTP 502.*bad gateway"):
        policy.act({"messages": build_messages(TARGET, _views(1), [])})
    assert len(server.requests) == 3


def test_4xx_is_a_clear_error_without_retry(server):
    server.reply(
        status=400, body={"error": {"message": "image exceeds the context size", "code": 400}}
    )
    policy = OpenAIPolicy(server.url, model="m", backoff=0.01)
    with pytest.raises(OpenAIPolicyError, match=r"HTTP 400 .*image exceeds the context size"):
        policy.act({"messages": build_messages(TARGET, _views(1), [])})
    assert len(server.requests) == 1


def test_timeout_is_a_clear_error(server):
    server.reply(BOX, delay=1.0)
    server.reply(BOX, delay=1.0)
    policy = OpenAIPolicy(server.url, model="m", timeout=0.2, max_retries=1, backoff=0.01)
    t0 = time.perf_counter()
    with pytest.raises(OpenAIPolicyError, match=r"2 attempts: no response within 0.2 s"):
        policy.act({"messages": build_messages(TARGET, _views(1), [])})
    assert time.perf_counter() - t0 < 1.5


def test_connection_refused_is_retried_then_reported():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    policy = OpenAIPolicy(f"http://127.0.0.1:{port}", model="m", max_retries=1, backoff=0.01)
    with pytest.raises(OpenAIPolicyError, match="2 attempts: connection failed"):
        policy.act({"messages": build_messages(TARGET, _views(1), [])})


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>oops</html>", "not JSON"),
        ({"object": "chat.completion"}, "no 'choices' list"),
        ({"choices": []}, "no 'choices' list"),
        ({"choices": [{"index": 0}]}, r"no 'choices\[0\].message'"),
        ({"choices": [{"message": {"role": "assistant"}}]}, "neither 'choices.0..message.content'"),
    ],
)
def test_malformed_responses(server, body, match):
    server.reply(body=body)
    policy = OpenAIPolicy(server.url, model="m")
    with pytest.raises(OpenAIPolicyError, match=match):
        policy.act({"messages": build_messages(TARGET, _views(1), [])})


def test_server_parsed_tool_calls_are_rebuilt(server):
    call = {
        "id": "c1",
        "type": "function",
        "function": {
            "name": "add_point",
            "arguments": json.dumps({"point_2d": [300, 333], "point_type": "positive"}),
        },
    }
    server.reply(PHRASE_REFINE + "\n", tool_calls=[call])
    server.reply(None, tool_calls=[{"function": {"name": "stop_action", "arguments": "{}"}}])
    policy = OpenAIPolicy(server.url, model="m")
    obs = {"messages": build_messages(TARGET, _views(1), [])}
    assert policy.act(obs).text == POINT
    assert (
        policy.act(obs).text
        == '<tool_call>\n{"name": "stop_action", "arguments": {}}\n</tool_call>'
    )


def test_model_is_discovered_once(server):
    server.reply(body={"object": "list", "data": [{"id": "qwen3-vl-medsam", "object": "model"}]})
    server.reply(BOX)
    server.reply(BOX)
    policy = OpenAIPolicy(server.url)
    obs = {"messages": build_messages(TARGET, _views(1), [])}
    policy.act(obs)
    policy.act(obs)
    assert [(r["method"], r["path"]) for r in server.requests] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ]
    assert server.requests[1]["json"]["model"] == "qwen3-vl-medsam"


def test_close_and_context_manager(server):
    server.reply(BOX)
    obs = {"messages": build_messages(TARGET, _views(1), [])}
    with OpenAIPolicy(server.url, model="m") as policy:
        policy.act(obs)
    with pytest.raises(OpenAIPolicyError, match="closed"):
        policy.act(obs)
    assert len(server.requests) == 1  # nothing sent after close


def test_retry_temperature_and_extra_body(server):
    server.reply(BOX)
    server.reply(BOX)
    policy = OpenAIPolicy(server.url, model="m", retry_temperature=0.7, extra_body={"top_k": 1})
    msgs = build_messages(TARGET, _views(1), [])
    policy.act(SimpleNamespace(messages=msgs, retry=False))
    turn = policy.act(SimpleNamespace(messages=msgs, retry=True))
    assert [r["json"]["temperature"] for r in server.requests] == [0.0, 0.7]
    assert all(r["json"]["top_k"] == 1 for r in server.requests)
    assert turn.info["retry"] is True


def test_environment_proxy_is_not_used(server, monkeypatch, loopback_only):
    monkeypatch.setenv("HTTP_PROXY", "http://10.255.255.1:3128")
    monkeypatch.setenv("http_proxy", "http://10.255.255.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server.reply(BOX)
    assert (
        OpenAIPolicy(server.url, model="m")
        .act({"messages": build_messages(TARGET, _views(1), [])})
        .text
        == BOX
    )
    assert set(loopback_only) == {"127.0.0.1"}


def test_bad_arguments(monkeypatch):
    with pytest.raises(ValueError, match="base_url"):
        OpenAIPolicy("ftp://127.0.0.1/")
    with pytest.raises(ValueError, match="base_url"):
        OpenAIPolicy("127.0.0.1:8080")
    with pytest.raises(ValueError, match="timeout"):
        OpenAIPolicy("http://127.0.0.1:1", timeout=0)
    monkeypatch.delenv("MSRT_UNSET_KEY", raising=False)
    with pytest.raises(ValueError, match="MSRT_UNSET_KEY"):
        OpenAIPolicy("http://127.0.0.1:1", api_key_env="MSRT_UNSET_KEY")
    assert OpenAIPolicy("http://127.0.0.1:1/v1").base_url == "http://127.0.0.1:1"
    policy = OpenAIPolicy("http://127.0.0.1:1", model="m")
    with pytest.raises(TypeError, match="messages"):
        policy.act(SimpleNamespace(turn=0))
    bad = [{"role": "user", "content": [{"type": "image", "image": np.zeros((4, 4), np.uint8)}]}]
    with pytest.raises(ValueError, match="RGB uint8"):
        policy.act({"messages": bad})


def test_policy_modules_import_without_heavy_dependencies():
    """Importing the policy modules (and the tiny builders) pulls in no torch/transformers."""
    import subprocess
    import sys

    heavy = ["torch", "transformers", "tokenizers", "safetensors", "PIL"]
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {heavy!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import medsam_agent_rt.policies.openai_compat, medsam_agent_rt.policies.hf\n"
        "import medsam_agent_rt.policies.qwen_chat, medsam_agent_rt.training.tiny_qwen\n"
        "from medsam_agent_rt.policies.hf import HFPolicy\n"
        "try:\n"
        "    HFPolicy('.')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "medsam-agent-rt[hf,torch]" in out.stdout
