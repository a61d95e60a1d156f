"""OpenAIPolicy: any OpenAI-compatible chat server (llama.cpp server, vLLM, SGLang, ...).

Each ``act`` POSTs the whole conversation to ``{base}/v1/chat/completions``: the protocol
messages with images as base64 PNG data URLs (lossless: the server sees the exact view pixels),
``temperature`` 0 and ``max_tokens`` 128 (PROTOCOL.md). Standard library only (urllib).

- Transport: ``policies._http`` (http.client): the configured loopback / LAN host only, no
  redirects followed (a 3xx is an error naming the requested URL), no proxies, a per-read
  ``timeout``, an overall ``deadline`` per ``act`` (retries included; a trickling server trips
  it) and a response-size cap (``max_response_bytes``).
- Retries with exponential backoff (honouring ``Retry-After``) on connection errors, timeouts,
  HTTP 408, 429 and 5xx; any other 4xx fails at once with the status and the server's error body.
- A malformed answer (not JSON, no ``choices[0].message``) raises an error naming what was
  missing. A server that parses tool calls itself (vLLM ``--enable-auto-tool-choice``) returns
  ``message.tool_calls`` instead of the ``<tool_call>`` text: the text is rebuilt in the
  protocol format, so the action parser sees what the model wrote.
- Optional API key read from an environment variable (``api_key_env``); it is sent as a Bearer
  token and appears in no log, error or repr.
- Environment proxies are never used (a loopback/LAN server must not be reached through a
  proxy, and the API key must not travel to one).
- The assistant text is capped at ``max_text_chars`` (the protocol's answers are a few hundred
  characters; a longer one is cut, marked in ``info["truncated_chars"]``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import time
from typing import Any

import numpy as np

from medsam_agent_rt.policies._http import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT_S,
    BoundedClient,
    Endpoint,
    HTTPPolicyError,
    env_float,
)
from medsam_agent_rt.policies.hf import PolicyTurn, observation_messages
from medsam_agent_rt.protocol.text import tool_call_text

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 16384  # the protocol's answers are ~200 characters


class OpenAIPolicyError(HTTPPolicyError):
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
    """Assistant text; server-parsed tool calls are written back as <tool_call> blocks.
    Raises ValueError naming the field when the message has the wrong shape."""
    content = message.get("content")
    if isinstance(content, list):  # some servers return parts
        content = "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    if content is not None and not isinstance(content, str):
        raise ValueError(
            f"'choices[0].message.content' must be a string, got {type(content).__name__}"
        )
    text = content or ""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ValueError(f"'tool_calls' must be a list, got {type(calls).__name__}")
    blocks = []
    for c in calls:
        fn = c.get("function", c) if isinstance(c, dict) else {}
        fn = fn if isinstance(fn, dict) else {}
        name, args = str(fn.get("name"))[:256], fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except (ValueError, RecursionError):
                blocks.append(
                    f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>'
                )
                continue
        try:
            blocks.append(tool_call_text(name, args if isinstance(args, dict) else {"value": args}))
        except (TypeError, ValueError, RecursionError):  # not JSON-encodable as sent
            blocks.append(
                f'<tool_call>\n{{"name": "{name}", "arguments": {args!r:.2000}}}\n</tool_call>'
            )
    if blocks:
        text = "\n".join([text.rstrip("\n")] + blocks) if text.strip() else "\n".join(blocks)
    return text


# ----------------------------------------------------------------------------- policy


class OpenAIPolicy:
    """Policy served by an OpenAI-compatible endpoint.

    Args:
        base_url: server root, e.g. "http://127.0.0.1:8080" (a trailing "/v1" is accepted);
            a loopback or local-network host unless ``allow_remote``.
        model: model name sent in requests; None asks GET /v1/models once and takes the first.
        api_key_env: name of an environment variable holding the API key (optional).
        timeout: seconds per connect / read (None: $MSRT_HTTP_TIMEOUT_S, else 120).
        deadline: seconds for one whole ``act`` call, retries and backoff included
            (None: $MSRT_POLICY_DEADLINE_S, else 300).
        max_response_bytes: largest answer accepted (None: $MSRT_MAX_RESPONSE_BYTES, else 8 MiB).
        max_text_chars: longest assistant text kept (longer text is cut; 16384).
        max_retries: extra attempts after a retryable failure (connection, timeout, 429, 5xx).
        backoff, max_backoff: first retry delay in seconds, doubled per retry, capped.
        max_tokens, temperature: generation settings (protocol: 128, greedy).
        retry_temperature: temperature when the observation has ``retry`` set (None: same).
        extra_body: additional JSON fields for the request (e.g. {"top_k": 1} for vLLM).
        allow_remote: accept a host outside loopback / LAN (None: $MSRT_ALLOW_REMOTE_POLICY=1).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key_env: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        max_response_bytes: int | None = None,
        max_text_chars: int = MAX_TEXT_CHARS,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_tokens: int = 128,
        temperature: float = 0.0,
        retry_temperature: float | None = None,
        extra_body: dict[str, Any] | None = None,
        allow_remote: bool | None = None,
    ) -> None:
        if allow_remote is None:
            allow_remote = os.environ.get("MSRT_ALLOW_REMOTE_POLICY", "") == "1"
        endpoint = Endpoint.parse(base_url, allow_remote=bool(allow_remote))
        self.base_url = endpoint.url
        timeout = (
            env_float("MSRT_HTTP_TIMEOUT_S", DEFAULT_TIMEOUT_S) if timeout is None else timeout
        )
        if deadline is None:
            deadline = env_float("MSRT_POLICY_DEADLINE_S", DEFAULT_DEADLINE_S)
        if max_response_bytes is None:
            max_response_bytes = int(
                env_float("MSRT_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES)
            )
        for label, value in (("timeout", timeout), ("deadline", deadline)):
            if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{label} must be a finite number of seconds > 0, got {value!r}")
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1024:
            raise ValueError(
                f"max_response_bytes must be an integer >= 1024, got {max_response_bytes!r}"
            )
        if not isinstance(max_text_chars, int) or max_text_chars < 1:
            raise ValueError(f"max_text_chars must be an integer >= 1, got {max_text_chars!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        api_key: str | None = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ValueError(
                    f"api_key_env={api_key_env!r} names an environment variable that is unset"
                )
        self.model = model
        self.timeout, self.deadline = float(timeout), float(deadline)
        self.max_response_bytes, self.max_text_chars = max_response_bytes, max_text_chars
        self.max_retries = int(max_retries)
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)
        self.retry_temperature = retry_temperature
        self.extra_body = dict(extra_body or {})
        self._client = BoundedClient(
            endpoint,
            timeout=self.timeout,
            deadline=self.deadline,
            max_response_bytes=max_response_bytes,
            max_retries=self.max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            api_key=api_key,
            on_retry=lambda url, last, k, n, wait: log.warning(
                "%s: %s; retry %d/%d in %.2f s", url, last, k, n, wait
            ),
        )

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIPolicy({self.base_url!r}, model={self.model!r}, timeout={self.timeout})"

    # ------------------------------------------------------------------------- Policy protocol

    def reset(self, task: Any = None) -> None:
        """Start an episode (the server keeps no state between requests)."""

    def close(self) -> None:
        """Drop the HTTP client (no connection outlives a request); ``act`` raises afterwards."""
        self._client = None

    def __enter__(self) -> OpenAIPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def act(self, observation: Any) -> PolicyTurn:
        """One assistant turn from the server for ``observation.messages``."""
        if self._client is None:
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
        body, attempts = self._request("/v1/chat/completions", payload)
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
        try:
            text = _message_text(message)
        except ValueError as exc:
            raise OpenAIPolicyError(f"{url} response: {exc}: {_snippet(body)}") from None
        info = {
            "backend": "openai",
            "url": url,
            "model": str(body.get("model", self.model))[:256],
            "finish_reason": _small(choices[0].get("finish_reason")),
            "usage": _small(body.get("usage")),
            "attempts": attempts,
            "temperature": temperature,
            "retry": retry,
            "latency_s": latency,
        }
        if len(text) > self.max_text_chars:
            info["truncated_chars"] = len(text) - self.max_text_chars
            text = text[: self.max_text_chars]
        return PolicyTurn(text=text, info=info)

    # ------------------------------------------------------------------------- HTTP

    def _first_model(self) -> str:
        url = self.base_url + "/v1/models"
        body, _ = self._request("/v1/models", None)
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
        return str(data[0]["id"])[:256]

    def _request(self, path: str, payload: dict[str, Any] | None) -> tuple[Any, int]:
        """JSON request with retries (``_http.BoundedClient``): (decoded body, attempts)."""
        try:
            return self._client.request(path, payload)
        except OpenAIPolicyError:
            raise
        except HTTPPolicyError as exc:
            raise OpenAIPolicyError(str(exc)) from None


def _small(value: Any, limit: int = 4096) -> Any:
    """``value`` when it is small JSON (kept in the record), else None."""
    try:
        return value if len(json.dumps(value)) <= limit else None
    except (TypeError, ValueError, RecursionError):
        return None


def _snippet(body: Any) -> str:
    if isinstance(body, str):
        return body[:300]
    try:
        return json.dumps(body)[:300]
    except (ValueError, RecursionError):
        return repr(body)[:300]
