"""Who may call the server and how much: the bearer token, the per-client rate limit and the
request-body byte limit (pure ASGI, so an oversized body is refused while it streams in)."""

from __future__ import annotations

import hmac
import json
import threading
import time


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """True when no token is configured, or ``authorization`` is ``Bearer <expected>``
    (constant-time comparison)."""
    if not expected:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), expected)


class RateLimiter:
    """A token bucket per client address: ``rate`` requests per second, bursts of ``burst``.
    ``allow(client)`` -> (allowed, seconds to wait). Bounded: idle buckets are dropped."""

    MAX_CLIENTS = 4096

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time)
        self._lock = threading.Lock()

    def allow(self, client: str) -> tuple[bool, float]:
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if len(self._buckets) >= self.MAX_CLIENTS and client not in self._buckets:
                full = [
                    c for c, (t, s) in self._buckets.items() if now - s > self.burst / self.rate
                ]
                for c in full or list(self._buckets)[: self.MAX_CLIENTS // 2]:
                    del self._buckets[c]
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return False, (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens - 1.0, now)
            return True, 0.0


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request whose body exceeds ``limit`` bytes gets 413 — at once when its
    Content-Length says so, else as soon as the streamed bytes pass the limit."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send, self.limit)
            return
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send, self.limit)


async def _too_large(send, limit: int) -> None:
    body = json.dumps(
        {"detail": f"request body exceeds the upload limit of {limit:,} bytes (--max-upload-mb)"}
    ).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
