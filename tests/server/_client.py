"""Helpers of the server tests: an in-process client per app, session creation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx


@contextlib.asynccontextmanager
async def client_for(app) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to ``app`` in-process; closes the app's sessions and worker."""
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c
    finally:
        await app.state.msrt.close()


def run(coro):
    return asyncio.run(coro)


async def new_session(c, image: Path, target: str = "target", **params) -> dict:
    r = await c.post(
        "/api/sessions", params={"filename": image.name, "target": target, **params},
        content=image.read_bytes(),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()
