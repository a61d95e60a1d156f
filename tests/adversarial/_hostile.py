"""A hostile OpenAI-compatible server on 127.0.0.1 (ephemeral port).

``server.modes`` is a list of behaviours consumed one per request (then ``server.default``):

- ``ok``: a valid answer whose text is ``server.text`` (an add_bbox call by default)
- ``garbage``: random bytes (application/octet-stream)
- ``html``: an HTML error page with status 200
- ``sse``: a text/event-stream body (a streaming answer although stream=false was asked)
- ``truncated``: JSON cut in the middle
- ``deep``: 100,000 nested arrays (a parser recursion bomb)
- ``bigint``: a 50,000-digit integer where text belongs
- ``not_text``: ``content`` is a number, ``tool_calls`` a string
- ``huge``: announces and sends 50 MB
- ``huge_chunked``: 50 MB in chunked encoding, no Content-Length
- ``slow``: says nothing for ``server.delay`` seconds, then answers
- ``trickle``: announces 10 kB and sends one byte every 20 ms
- ``redirect``: 302 to ``server.location`` (default: a TEST-NET-3 address, never routed)
- ``e500`` / ``e503`` / ``e400``: that HTTP status with a JSON error body

GET .../models always lists one model. Every request is recorded (method, path, headers, byte count); ``sent`` counts the body bytes
the server managed to write (a client that stops reading makes it stop).
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from medsam_agent_rt.protocol import PHRASE_BOX, assistant_text

BOX = assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [200, 200, 700, 700]})
BIG = 50 * 1024 * 1024


def completion(text) -> dict:
    return {
        "model": "hostile",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
    }


class HostileServer:
    def __init__(self) -> None:
        self.modes: list[str] = []
        self.default = "ok"
        self.text = BOX
        self.delay = 2.0
        self.location = "http://203.0.113.7:80/v1/chat/completions"
        self.requests: list[dict] = []
        self.sent = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self._handle()

            def do_POST(self):
                self._handle()

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                owner.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "bytes": n,
                    }
                )
                if self.path.endswith("/models"):  # model discovery is always answered
                    owner._send(self, 200, b'{"data": [{"id": "hostile"}]}')
                    return
                mode = owner.modes.pop(0) if owner.modes else owner.default
                try:
                    getattr(owner, f"_{mode}")(self)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------------- helpers
    def _send(self, h, status, body: bytes, ctype="application/json", extra=None, length=None):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
        self.sent += len(body)

    def _stream(self, h, total: int, chunked: bool) -> None:
        block = b"x" * 65536
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(total))
        h.end_headers()
        left = total
        while left > 0:
            part = block[: min(left, len(block))]
            data = (b"%x\r\n" % len(part) + part + b"\r\n") if chunked else part
            h.wfile.write(data)
            self.sent += len(part)
            left -= len(part)
        if chunked:
            h.wfile.write(b"0\r\n\r\n")

    # ------------------------------------------------------------------------- behaviours
    def _ok(self, h):
        self._send(h, 200, json.dumps(completion(self.text)).encode())

    def _garbage(self, h):
        self._send(h, 200, os.urandom(4096), "application/octet-stream")

    def _html(self, h):
        self._send(h, 200, b"<html><body>502 proxy error</body></html>", "text/html")

    def _sse(self, h):
        body = b"data: " + json.dumps(completion(self.text)).encode() + b"\n\ndata: [DONE]\n\n"
        self._send(h, 200, body, "text/event-stream")

    def _truncated(self, h):
        self._send(h, 200, json.dumps(completion(self.text)).encode()[:40])

    def _deep(self, h):
        self._send(h, 200, b"[" * 100_000 + b"]" * 100_000)

    def _bigint(self, h):
        body = b'{"choices": [{"message": {"content": ' + b"7" * 50_000 + b"}}]}"
        self._send(h, 200, body)

    def _not_text(self, h):
        body = {"choices": [{"message": {"content": 12345, "tool_calls": "add_bbox"}}]}
        self._send(h, 200, json.dumps(body).encode())

    def _huge(self, h):
        self._stream(h, BIG, chunked=False)

    def _huge_chunked(self, h):
        self._stream(h, BIG, chunked=True)

    def _slow(self, h):
        time.sleep(self.delay)
        self._ok(h)

    def _trickle(self, h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "10000")
        h.end_headers()
        for _ in range(10000):
            h.wfile.write(b" ")
            h.wfile.flush()
            self.sent += 1
            time.sleep(0.02)

    def _redirect(self, h):
        self._send(h, 302, b"", extra={"Location": self.location})

    def _error(self, h, status):
        body = json.dumps({"error": {"message": f"injected {status}"}}).encode()
        self._send(h, status, body, extra={"Retry-After": "0"})  # retried at once

    def _e500(self, h):
        self._error(h, 500)

    def _e503(self, h):
        self._error(h, 503)

    def _e400(self, h):
        self._error(h, 400)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
