"""OpenAIPolicy: any OpenAI-compatible chat server (llama.cpp server, vLLM, SGLang, ...).

Each ``act`` POSTs the whole conversation to ``{base}/v1/chat/completions``: the protocol
messages with images as base64 PNG data URLs (lossless: the server sees the exact view pixels),
``temperature`` 0 and ``max_tokens`` 128 (PROTOCOL.md). Standard library only (urllib).

- Retries with exponential backoff (honouring ``Retry-After``) on connection errors, timeouts,
  HTTP 408, 429 and 5xx; any other 4xx fails at once with the status and the server's error body.
- A malformed answer (not JSON, no ``choices[0].message``) raises an error naming what was
  missing. A server that parses tool calls itself (vLLM ``--enable-auto-tool-choice``) returns
  ``message.tool_calls`` instead of the ``<tool_call>`` text: the text is rebuilt in the
  protocol format, so the action parser sees what the model wrote.
- Optional API key read from an environment variable (``api_key_env``); it is sent as a Bearer
  token and appears in no log, error or repr.
- Environment proxies are ignored unless ``use_env_proxy=True`` (a loopback/LAN server must not
  be reached through a proxy by accident).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np

from medsam_agent_rt.policies.hf import PolicyTurn, observation_messages
from medsam_agent_rt.protocol.text import tool_call_text

log = logging.getLogger(__name__)


class OpenAIPolicyError(RuntimeError):
    """The server could not be reached or answered with an error / malformed response."""


# ----------------------------------------------------------------------------- messages


def png_data_url(image: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an RGB uint8 (H, W, 3) image (lossless)."""
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image must be an RGB uint8 array (H, W, 3), got {a.dtype} {a.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode="RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _texts(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    out = []
    for j, part in enumerate(content):
        if part.get("type") != "text":
            raise ValueError(f"{where}.content[{j}] must be a text part, got {part.get('type')!r}")
        out.append(part["text"])
    return "".join(out)


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Protocol messages -> OpenAI chat messages (system/assistant as strings, user turns as
    image_url + text parts in their original order)."""
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role, content = msg.get("role"), msg.get("content")
        if role in ("system", "assistant"):
            out.append({"role": role, "content": _texts(content, f"messages[{i}]")})
        elif role == "user":
            if isinstance(content, str):
                out.append({"role": "user", "content": content})
                continue
            parts: list[dict[str, Any]] = []
            for j, part in enumerate(content):
                kind = part.get("type")
                if kind == "image":
                    parts.append(
                        {"type": "image_url", "image_url": {"url": png_data_url(part["image"])}}
                    )
                elif kind == "text":
                    parts.append({"type": "text", "text": part["text"]})
                else:
                    raise ValueError(
                        f"messages[{i}].content[{j}] type must be text or image, got {kind!r}"
                    )
            out.append({"role": "user", "content": parts})
        else:
            raise ValueError(f"messages[{i}] role must be system, user or assistant, got {role!r}")
    return out


def _message_text(message: dict[str, Any]) -> str:
    """Assistant text; server-parsed tool calls are written back as <tool_call> blocks."""
    content = message.get("content")
    if isinstance(content, list):  # some servers return parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    text = content or ""
    calls = message.get("tool_calls") or []
    blocks = []
    for c in calls:
        fn = c.get("function", c) if isinstance(c, dict) else {}
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                blocks.append(
                    f'<tool_call>\n{{"name": "{fn.get("name")}", "arguments": {args}}}\n</tool_call>'
                )
                continue
        blocks.append(tool_call_text(str(fn.get("name")), args))
    if blocks:
        text = "\n".join([text.rstrip("\n")] + blocks) if text.strip() else "\n".join(blocks)
    return text


# ----------------------------------------------------------------------------- policy


class OpenAIPolicy:
    """Policy served by an OpenAI-compatible endpoint.

    Args:
        base_url: server root, e.g. "http://127.0.0.1:8080" (a trailing "/v1" is accepted).
        model: model name sent in requests; None asks GET /v1/models once and takes the first.
        api_key_env: name of an environment variable holding the API key (optional).
        timeout: seconds per HTTP attempt (connect + response).
        max_retries: extra attempts after a retryable failure (connection, timeout, 429, 5xx).
        backoff, max_backoff: first retry delay in seconds, doubled per retry, capped.
        max_tokens, temperature: generation settings (protocol: 128, greedy).
        retry_temperature: temperature when the observation has ``retry`` set (None: same).
        extra_body: additional JSON fields for the request (e.g. {"top_k": 1} for vLLM).
        use_env_proxy: honour HTTP(S)_PROXY variables (default: connect directly).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_tokens: int = 128,
        temperature: float = 0.0,
        retry_temperature: float | None = None,
        extra_body: dict[str, Any] | None = None,
        use_env_proxy: bool = False,
    ) -> None:
        parsed = urllib.parse.urlsplit(str(base_url))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"base_url must be an http(s) URL such as http://127.0.0.1:8080, got {base_url!r}"
            )
        root = str(base_url).rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self._api_key: str | None = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(
                    f"api_key_env={api_key_env!r} names an environment variable that is unset"
                )
            self._api_key = key
        self.model = model
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)
        self.retry_temperature = retry_temperature
        self.extra_body = dict(extra_body or {})
        handlers = [] if use_env_proxy else [urllib.request.ProxyHandler({})]
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIPolicy({self.base_url!r}, model={self.model!r}, timeout={self.timeout})"

    # ------------------------------------------------------------------------- Policy protocol

    def reset(self, task: Any = None) -> None:
        """Start an episode (the server keeps no state between requests)."""

    def close(self) -> None:
        """Drop the HTTP opener (no connection outlives a request); ``act`` raises afterwards."""
        self._opener = None

    def __enter__(self) -> OpenAIPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def act(self, observation: Any) -> PolicyTurn:
        """One assistant turn from the server for ``observation.messages``."""
        if self._opener is None:
            raise OpenAIPolicyError(f"{self!r} is closed: build a new policy to send requests")
        messages = observation_messages(observation)
        retry = bool(getattr(observation, "retry", False))
        temperature = self.temperature
        if retry and self.retry_temperature is not None:
            temperature = float(self.retry_temperature)
        if self.model is None:
            self.model = self._first_model()
        payload = {
            **self.extra_body,
            "model": self.model,
            "messages": to_openai_messages(messages),
            "temperature": temperature,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        t0 = time.perf_counter()
        url = self.base_url + "/v1/chat/completions"
        body, attempts = self._request(url, payload)
        latency = time.perf_counter() - t0
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices:
            raise OpenAIPolicyError(f"{url} response has no 'choices' list: {_snippet(body)}")
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            raise OpenAIPolicyError(
                f"{url} response has no 'choices[0].message' object: {_snippet(body)}"
            )
        if message.get("content") is None and not message.get("tool_calls"):
            raise OpenAIPolicyError(
                f"{url} response has neither 'choices[0].message.content' nor tool_calls: {_snippet(body)}"
            )
        info = {
            "backend": "openai",
            "url": url,
            "model": body.get("model", self.model),
            "finish_reason": choices[0].get("finish_reason"),
            "usage": body.get("usage"),
            "attempts": attempts,
            "temperature": temperature,
            "retry": retry,
            "latency_s": latency,
        }
        return PolicyTurn(text=_message_text(message), info=info)

    # ------------------------------------------------------------------------- HTTP

    def _first_model(self) -> str:
        url = self.base_url + "/v1/models"
        body, _ = self._request(url, None)
        data = body.get("data") if isinstance(body, dict) else None
        if (
            not isinstance(data, list)
            or not data
            or not isinstance(data[0], dict)
            or "id" not in data[0]
        ):
            raise OpenAIPolicyError(
                f"{url} lists no model ('data[0].id' missing): {_snippet(body)}; pass model=..."
            )
        return str(data[0]["id"])

    def _request(self, url: str, payload: dict[str, Any] | None) -> tuple[Any, int]:
        """JSON request with retries; returns (decoded body, attempts made)."""
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            wait = min(self.max_backoff, self.backoff * 2**attempt)
            req = urllib.request.Request(
                url, data=data, headers=headers, method="POST" if data else "GET"
            )
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                err_body = _read_error(e)
                if not (e.code in (408, 429) or e.code >= 500):
                    raise OpenAIPolicyError(
                        f"{url} answered HTTP {e.code} {e.reason}: {err_body}"
                    ) from None
                last = f"HTTP {e.code} {e.reason}: {err_body}"
                after = e.headers.get("Retry-After") if e.headers else None
                if after is not None:
                    try:
                        wait = min(self.max_backoff, max(0.0, float(after)))
                    except ValueError:
                        pass
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
                    last = f"no response within {self.timeout:g} s (timeout)"
                else:
                    last = f"connection failed: {reason}"
            else:
                try:
                    return json.loads(raw.decode("utf-8")), attempt + 1
                except (UnicodeDecodeError, json.JSONDecodeError):
                    raise OpenAIPolicyError(
                        f"{url} returned a body that is not JSON: {raw[:200]!r}"
                    ) from None
            if attempt < self.max_retries:
                log.warning(
                    "%s: %s; retry %d/%d in %.2f s", url, last, attempt + 1, self.max_retries, wait
                )
                time.sleep(wait)
        raise OpenAIPolicyError(f"{url} failed after {self.max_retries + 1} attempts: {last}")


def _read_error(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the status alone still says what happened
        return "(no body)"
    try:
        msg = json.loads(raw).get("error")
        if isinstance(msg, dict) and "message" in msg:
            return str(msg["message"])[:2000]
        if isinstance(msg, str):
            return msg[:2000]
    except (json.JSONDecodeError, AttributeError):
        pass
    return raw[:2000] or "(empty body)"


def _snippet(body: Any) -> str:
    s = json.dumps(body)[:300] if not isinstance(body, str) else body[:300]
    return s
