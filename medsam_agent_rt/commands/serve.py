"""``medsam-agent serve``: the local server and web page where the agent and a clinician
segment together (extra ``server``).

    medsam-agent serve [--host 127.0.0.1] [--port 8765] [--token T | $MSRT_TOKEN]
        [--policy SPEC] [--segmenter SPEC] [--backend B] [--device D] [--store DIR]
        [--max-sessions N] [--session-ttl S] [--max-upload-mb M] [--max-pixels P]
        [--max-slices K] [--rate R] [--cors-origin URL ...] [--max-turns N]
        [--turn-deadline S] [--episode-deadline S]

Binds loopback by default; any other address needs a token. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import argparse
import sys

from medsam_agent_rt.commands import _exit
from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER

NAME = "serve"
HELP = "Serve the web page and HTTP API where the agent and a clinician segment together."


def configure(p: argparse.ArgumentParser) -> None:
    from medsam_agent_rt.commands._types import strategy as strategy_type
    from medsam_agent_rt.segmenters.registry import BACKENDS

    p.epilog = _exit.EPILOG
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="default 8765")
    p.add_argument("--token", help="bearer token (required off loopback; default $MSRT_TOKEN)")
    p.add_argument(
        "--policy",
        default="default",
        metavar="SPEC",
        help="the shared policy (default: the embedded one); see `segment --help`",
    )
    p.add_argument(
        "--segmenter",
        default=DEFAULT_SEGMENTER,
        metavar="SPEC",
        help=f"default {DEFAULT_SEGMENTER}",
    )
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--store", metavar="DIR", help="session store folder (default: a temp folder)")
    p.add_argument("--max-sessions", type=int, default=32)
    p.add_argument("--session-ttl", type=float, default=3600.0, metavar="S", help="idle seconds")
    p.add_argument("--max-upload-mb", type=int, default=256)
    p.add_argument("--max-pixels", type=int, default=16_777_216)
    p.add_argument("--max-slices", type=int, default=2048)
    p.add_argument("--rate", type=float, default=50.0, help="requests/s per client (0: no limit)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="URL")
    p.add_argument("--max-turns", type=int, default=5, help="agent actions per episode")
    p.add_argument(
        "--strategy",
        type=strategy_type,
        metavar="NAME",
        help="the tool's carrying strategy (default: the segmenter family's; e.g. "
        "box+all_clicks+prev_logits turns litemedsam-click's zoomed corrections off)",
    )
    p.add_argument(
        "--turn-deadline",
        type=float,
        metavar="S",
        help="seconds a policy answer may take (a later one is discarded)",
    )
    p.add_argument("--episode-deadline", type=float, metavar="S", help="seconds per episode")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    from medsam_agent_rt.server.config import MIB, ServerConfig

    def fail(message: str) -> int:
        print(f"medsam-agent serve: error: {message}", file=sys.stderr)
        return _exit.USAGE

    try:
        from medsam_agent_rt.server import create_app, require_server_extra

        require_server_extra()
        extra = {"token": args.token} if args.token else {}
        config = ServerConfig(
            host=args.host, port=args.port, cors_origins=tuple(args.cors_origin),
            store_dir=args.store, max_sessions=args.max_sessions, session_ttl_s=args.session_ttl,
            max_upload_bytes=args.max_upload_mb * MIB, max_pixels=args.max_pixels,
            max_slices=args.max_slices, rate_per_s=args.rate or None, max_actions=args.max_turns,
            turn_deadline_s=args.turn_deadline, episode_deadline_s=args.episode_deadline,
            strategy=args.strategy, **extra,
        )  # fmt: skip
    except (ImportError, ValueError) as e:
        return fail(str(e))
    import uvicorn

    from medsam_agent_rt.segmenters import build_segmenter
    from medsam_agent_rt.server.logs import configure_json_logs

    configure_json_logs(args.log_level)
    try:
        seg = build_segmenter(args.segmenter, backend=args.backend, device=args.device)
        app = create_app(seg, args.policy, config, tool_spec=args.segmenter)
    except Exception as e:  # noqa: BLE001 - unknown spec, missing extra, broken model
        return fail(f"{type(e).__name__}: {e}")
    print(f"medsam-agent serve: http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    with seg:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return _exit.OK
