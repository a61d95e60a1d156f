"""A bounded JSON-over-HTTP client for model servers (standard library only: http.client).

What it guarantees, whatever the server does:

- It talks to the configured host and port only: redirects (3xx) are never followed (they are
  errors naming the requested URL and the ``Location`` offered), environment proxies are never
  used, and the API key is sent to that host alone.
- The configured host must be on this machine or the local network (loopback, private,
  link-local or unique-local address, ``localhost``, a single-label or ``.local`` / ``.lan`` /
  ``.internal`` / ``.home.arpa`` name) unless ``allow_remote`` is set: a policy never phones
  home by a typo.
- Time is bounded twice: ``timeout`` per connect / read (a silent server), and ``deadline`` for
  the whole call including retries and backoff (a server that trickles bytes): a watchdog
  closes the connection when the deadline passes.
- Size is bounded: an answer larger than ``max_response_bytes`` is refused as soon as its
  Content-Length (or the bytes read so far) says so, and is never kept whole.

Limits default from the environment (documented in the README, "Reliability"):
``MSRT_HTTP_TIMEOUT_S`` (120), ``MSRT_POLICY_DEADLINE_S`` (300), ``MSRT_MAX_RESPONSE_BYTES``
(8 MiB), ``MSRT_MAX_REQUEST_BYTES`` (64 MiB: a request that large is refused before it is
sent), ``MSRT_ALLOW_REMOTE_POLICY`` (unset: loopback / LAN only).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_DEADLINE_S = 300.0
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
LAN_SUFFIXES = (".local", ".lan", ".internal", ".home.arpa", ".localdomain")
_CHUNK = 64 * 1024


class HTTPPolicyError(RuntimeError):
    """The server could not be reached, or answered with an error / an unusable response."""


class _Retryable(Exception):
    """A failure worth another attempt (connection, timeout, 408 / 429 / 5xx)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def env_float(name: str, default: float) -> float:
    """A positive number from the environment variable ``name`` (``default`` when unset)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"environment variable {name} must be a finite number > 0, got {raw!r}")
    return value


def is_local_host(host: str) -> bool:
    """True for loopback / private / link-local addresses and LAN-style names (no DNS)."""
    name = host.strip("[]").split("%")[0].rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return name == "localhost" or "." not in name or name.endswith(LAN_SUFFIXES)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local


@dataclass(frozen=True)
class Endpoint:
    """scheme://host:port of the server; every request goes there and nowhere else."""

    scheme: str
    host: str
    port: int
    root: str  # path prefix ("" or "/something")

    @classmethod
    def parse(cls, base_url: str, allow_remote: bool = False) -> Endpoint:
        parsed = urllib.parse.urlsplit(str(base_url))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"base_url must be an http(s) URL such as http://127.0.0.1:8080, got {base_url!r}"
            )
        if parsed.username or parsed.password:
            raise ValueError(
                f"base_url must not carry credentials ({base_url!r}): use api_key_env instead"
            )
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"base_url has an invalid port: {base_url!r}") from None
        if not allow_remote and not is_local_host(parsed.hostname):
            raise ValueError(
                f"base_url {base_url!r}: {parsed.hostname} is not a loopback or local-network "
                "host; the policy server must run on this machine or the LAN (set "
                "MSRT_ALLOW_REMOTE_POLICY=1 / allow_remote=True to allow it knowingly)"
            )
        root = parsed.path.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        return cls(parsed.scheme, parsed.hostname, port, root)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.root}"


class BoundedClient:
    """JSON requests to one endpoint with retries, a per-call deadline and a size cap."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float,
        deadline: float,
        max_response_bytes: int,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        api_key: str | None = None,
        on_retry: Any = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout, self.deadline = float(timeout), float(deadline)
        self.max_response_bytes, self.max_retries = int(max_response_bytes), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self._api_key = api_key
        self.on_retry = on_retry

    def request(self, path: str, payload: dict[str, Any] | None) -> tuple[Any, int]:
        """(decoded JSON body, attempts made) of GET (payload None) or POST ``path``."""
        url = self.endpoint.url + path
        data = None if payload is None else _dumps(payload)
        limit = int(env_float("MSRT_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES))
        if data is not None and len(data) > limit:
            raise HTTPPolicyError(
                f"{url}: the request would be {len(data):,} bytes, over the limit of {limit:,} "
                "(MSRT_MAX_REQUEST_BYTES; every turn resends all earlier views: lower --max-turns)"
            )
        headers = {"Accept": "application/json", "Connection": "close"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        end = time.monotonic() + self.deadline
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff, self.backoff * 2**attempt)
            try:
                raw, ctype = self._once(url, path, data, headers, end)
            except _Retryable as exc:
                last = str(exc)
                wait = wait if exc.wait is None else min(self.max_backoff, exc.wait)
            else:
                return _decode(url, raw, ctype), attempt + 1
            left = end - time.monotonic()
            if left <= 0 or (attempt < self.max_retries and wait >= left):
                raise HTTPPolicyError(
                    f"{url} gave no usable answer within the deadline of {self.deadline:g} s "
                    f"({attempt + 1} attempt(s); last: {last})"
                )
            if attempt < self.max_retries:
                if self.on_retry is not None:
                    self.on_retry(url, last, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        raise HTTPPolicyError(f"{url} failed after {self.max_retries + 1} attempts: {last}")

    # ------------------------------------------------------------------------- one attempt
    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        ep = self.endpoint
        if ep.scheme == "https":
            ctx = ssl.create_default_context()
            return http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)

    def _once(
        self, url: str, path: str, data: bytes | None, headers: dict[str, str], end: float
    ) -> tuple[bytes, str]:
        left = end - time.monotonic()
        if left <= 0:
            raise _Retryable(f"deadline of {self.deadline:g} s reached")
        conn = self._connection(min(self.timeout, left))
        expired = threading.Event()

        def abort() -> None:  # the deadline passed: unblock whatever read is waiting
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(left, abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                conn.request(
                    "GET" if data is None else "POST", self.endpoint.root + path, data, headers
                )
                resp = conn.getresponse()
                status, reason = resp.status, resp.reason
                if 300 <= status < 400:
                    where = resp.getheader("Location") or "(no Location)"
                    raise HTTPPolicyError(
                        f"{url} answered HTTP {status} {reason}, a redirect to {where[:200]}; "
                        "redirects are never followed (requests, images and the API key go to "
                        "the configured server only): configure the final URL instead"
                    )
                raw = self._read_capped(url, resp)
                if expired.is_set():
                    raise TimeoutError
            except TimeoutError:
                if expired.is_set():
                    raise _Retryable(f"deadline of {self.deadline:g} s reached") from None
                raise _Retryable(f"no response within {self.timeout:g} s (timeout)") from None
            except (OSError, http.client.HTTPException) as exc:
                if expired.is_set():
                    raise _Retryable(f"deadline of {self.deadline:g} s reached") from None
                raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None
        finally:
            watchdog.cancel()
            conn.close()
        ctype = resp.getheader("Content-Type") or "(none)"
        if status >= 400:
            body = _error_text(raw)
            message = f"HTTP {status} {reason}: {body}"
            if status in (408, 429) or status >= 500:
                raise _Retryable(message, _retry_after(resp.getheader("Retry-After")))
            raise HTTPPolicyError(f"{url} answered {message}")
        return raw, ctype

    def _read_capped(self, url: str, resp: http.client.HTTPResponse) -> bytes:
        cap = self.max_response_bytes
        length = resp.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > cap:
            raise HTTPPolicyError(
                f"{url} announced an answer of {int(length):,} bytes, over the limit of "
                f"{cap:,} bytes (MSRT_MAX_RESPONSE_BYTES); refused without reading it"
            )
        chunks, size = [], 0
        while True:
            chunk = resp.read(min(_CHUNK, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raise HTTPPolicyError(
                    f"{url} sent more than the limit of {cap:,} bytes "
                    "(MSRT_MAX_RESPONSE_BYTES); the answer was dropped"
                )
        if length is not None and length.strip().isdigit() and size < int(length):
            raise http.client.IncompleteRead(b"", int(length) - size)
        return b"".join(chunks)


def _dumps(payload: dict[str, Any]) -> bytes:
    # ensure_ascii: unpaired surrogates in text become \ud8xx escapes instead of crashing
    return json.dumps(payload, ensure_ascii=True, allow_nan=False).encode("ascii")


def _decode(url: str, raw: bytes, ctype: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        raise HTTPPolicyError(
            f"{url} returned a body that is not JSON (Content-Type {ctype[:80]}, "
            f"{len(raw):,} bytes): {raw[:200]!r}"
        ) from None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        wait = float(value)
    except ValueError:
        return None
    return max(0.0, wait) if wait == wait else None


def _error_text(raw: bytes) -> str:
    text = raw[:65536].decode("utf-8", "replace")
    try:
        msg = json.loads(text).get("error")
        if isinstance(msg, dict) and "message" in msg:
            return str(msg["message"])[:2000]
        if isinstance(msg, str):
            return msg[:2000]
    except (json.JSONDecodeError, AttributeError, RecursionError, ValueError):
        pass
    return text[:2000] or "(empty body)"
