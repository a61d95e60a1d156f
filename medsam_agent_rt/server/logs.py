"""Structured logs: one JSON object per line (time, level, event, request id, session id,
timings, ...), on the ``medsam_agent_rt.server`` logger."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

LOGGER = logging.getLogger("medsam_agent_rt.server")


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "event": <message>, **record.fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, default=str, separators=(",", ":"))


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with ``fields`` (request_id, session_id, seconds, ...)."""
    LOGGER.log(level, event, extra={"fields": fields})


def configure_json_logs(level: str = "info") -> None:
    """Send the server logger's records as JSON lines to stderr (``medsam-agent serve``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
