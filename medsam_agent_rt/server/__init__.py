"""The local server and web page where the agent and a clinician segment together
(``medsam-agent serve``; extra ``server``: FastAPI + uvicorn).

One loaded segmenter and one policy serve every session; every model call (encode, agent turn,
a person's box / click / undo) runs on one worker thread (``worker``), one call per turn, so
sessions interleave and never run model code at once; each session drives the package's
``Episode`` (``driver``), never a copy of its loop.

HTTP API (JSON unless stated; ``Authorization: Bearer <token>`` when a token is configured):

====================================  =========================================================
``POST /api/sessions``                body = the file's bytes; query filename, target, window,
                                      frame, slice, axis -> 201 session state
``PUT  /api/sessions/{id}/target``    {"target": "left kidney"} (a new target starts over)
``PUT  /api/sessions/{id}/gt``        body = a GT mask (per-turn Dice; GT-driven policies)
``POST /api/sessions/{id}/image``     {"window": "abdomen" | "C,W", "slice", "frame", "axis"}
``POST /api/sessions/{id}/step``      one agent turn
``POST /api/sessions/{id}/run``       agent turns to the end (``?wait=true`` answers then)
``POST /api/sessions/{id}/stop``      stop a run after its turn; ``/cancel`` ends the episode
``POST /api/sessions/{id}/actions``   {"type": "point"|"box"|"undo"|"accept", ...} (pixels)
``POST /api/sessions/{id}/reset``     a new episode on the same image
``GET  /api/sessions/{id}/events``    server-sent events: start, turn, end, reset, stopped, ...
``GET  /api/sessions/{id}/files/F``   F = mask.png | mask.nii.gz | overlay.png |
                                      trajectory.json | mask.dcm (DICOM-SEG, when available)
``GET  /api/sessions/{id}/image.png`` the image the agent sees; ``current-mask.png`` its mask
``GET  /healthz``, ``GET /metrics``   health; Prometheus text
====================================  =========================================================

Modules: ``config`` (ServerConfig), ``app`` (create_app, routes, middleware), ``sessions``
(Session, SessionStore: LRU / TTL / bytes), ``uploads`` (streamed, bounded, safe unpacking),
``driver`` (episodes on the worker, turn events), ``worker``, ``security`` (token, rate limit,
body limit), ``metrics``, ``logs`` (JSON lines), ``static/`` (the page: plain HTML/JS/CSS).
"""

from medsam_agent_rt.server.app import create_app, require_server_extra
from medsam_agent_rt.server.config import ServerConfig, is_loopback

__all__ = ["ServerConfig", "create_app", "is_loopback", "require_server_extra"]
