"""``ServerConfig``: where the server binds, who may call it and the limits it enforces."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

MIB = 1024 * 1024
TOKEN_ENV = "MSRT_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or the name ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Binding, security and limits of ``medsam-agent serve`` (every limit answers a clear 4xx).

    host / port: the bind address (loopback by default); token: the bearer token every API
    request must carry (required for a non-loopback host; default ``$MSRT_TOKEN``);
    cors_origins: origins allowed cross-origin (none by default); store_dir: the session store
    folder (None: a fresh temporary folder removed at shutdown).
    Limits: max_sessions (the least recently used session is evicted beyond it),
    session_ttl_s (idle seconds before a session is evicted), max_store_bytes (uploads kept on
    disk, all sessions; LRU eviction beyond it), max_upload_bytes (one upload, 413),
    max_pixels (decoded image H x W, 413), max_slices (files in a zipped series / slices of a
    volume, 413), rate_per_s and rate_burst (requests per client address, token bucket, 429;
    rate_per_s None: no limit). Episodes: max_actions, turn_deadline_s, episode_deadline_s
    (``SessionConfig``).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = field(default_factory=lambda: os.environ.get(TOKEN_ENV) or None)
    cors_origins: tuple[str, ...] = ()
    store_dir: str | None = None
    max_sessions: int = 32
    session_ttl_s: float = 3600.0
    max_store_bytes: int = 2048 * MIB
    max_upload_bytes: int = 256 * MIB
    max_pixels: int = 16_777_216  # 4096 x 4096
    max_slices: int = 2048
    rate_per_s: float | None = 50.0
    rate_burst: int = 200
    max_actions: int = 5
    turn_deadline_s: float | None = None
    episode_deadline_s: float | None = None
    strategy: str | None = None  # the tool's carrying strategy (None: the family's)

    def __post_init__(self) -> None:
        if self.strategy is not None:
            from medsam_agent_rt.segmenters.prompt_chain import parse_strategy

            parse_strategy(self.strategy)  # a clear ValueError naming the strategies
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"binding {self.host!r} (not loopback) needs a token: pass --token or set "
                f"{TOKEN_ENV}; every request must then send 'Authorization: Bearer <token>'"
            )
        if self.token is not None and len(self.token) < 16:
            raise ValueError(
                "the token must be at least 16 characters (e.g. `openssl rand -hex 16`)"
            )
        for name in ("max_sessions", "max_store_bytes", "max_upload_bytes", "max_pixels",
                     "max_slices", "rate_burst", "max_actions"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.session_ttl_s > 0:
            raise ValueError(f"session_ttl_s must be > 0, got {self.session_ttl_s!r}")
        if self.rate_per_s is not None and not self.rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0 or None, got {self.rate_per_s!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port!r}")
