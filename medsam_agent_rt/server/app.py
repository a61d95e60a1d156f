"""``create_app(segmenter, policy, config)``: the FastAPI application (routes, middleware,
lifespan). One loaded segmenter and one policy serve every session; see the package docstring
for the endpoints."""

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from medsam_agent_rt.server.config import ServerConfig
from medsam_agent_rt.server.driver import (
    Driver,
    PolicyFailed,
    PolicySource,
    SessionConflict,
    parse_action,
)
from medsam_agent_rt.server.logs import log
from medsam_agent_rt.server.metrics import Metrics
from medsam_agent_rt.server.security import BodyLimit, RateLimiter, token_ok
from medsam_agent_rt.server.sessions import Session, SessionStore
from medsam_agent_rt.server.uploads import (
    UploadError,
    display_name,
    read_upload,
    save_stream,
    stored_name,
    unpack_series,
)
from medsam_agent_rt.server.worker import ModelWorker

DOWNLOADS = {  # name -> media type
    "mask.png": "image/png",
    "mask.nii.gz": "application/gzip",
    "overlay.png": "image/png",
    "trajectory.json": "application/json",
    "mask.dcm": "application/dicom",
}
PUBLIC = ("/", "/healthz", "/static/", "/favicon.ico")  # no data: served without the token
JSON_LIMIT = 64 * 1024  # bytes of a JSON request body


def require_server_extra() -> None:
    """ImportError naming the ``server`` extra when FastAPI / uvicorn are missing."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"the server needs {' and '.join(missing)}: pip install 'medsam-agent-rt[server]'"
        )


def _metrics() -> Metrics:
    m = Metrics()
    m.counter("msrt_sessions_created_total", "sessions created from an upload")
    m.counter("msrt_sessions_evicted_total", "sessions evicted (LRU, bytes or TTL)")
    m.counter("msrt_turns_total", "turns by who acted (agent / human) and outcome")
    m.counter("msrt_episodes_total", "finished episodes by end reason")
    m.counter(
        "msrt_encoder_cache_total", "episode starts whose image embedding was cached (hit) or not"
    )
    m.counter("msrt_http_requests_total", "HTTP requests by status code")
    m.counter("msrt_uploads_refused_total", "uploads refused by status code")
    m.histogram("msrt_turn_seconds", "latency of one turn (queue + model), by source")
    m.histogram("msrt_model_wait_seconds", "time a model call waited for the worker")
    m.histogram("msrt_model_call_seconds", "time a model call ran on the worker, by kind")
    m.histogram("msrt_http_request_seconds", "HTTP request latency (streams excluded)")
    return m


class ServerState:
    """Everything the routes share: config, store, worker, driver, metrics."""

    def __init__(self, segmenter: Any, policy: Any, config: ServerConfig, tool_spec: str) -> None:
        from medsam_agent_rt.session_config import SessionConfig

        self.config = config
        self.metrics = _metrics()
        self.worker = ModelWorker(self._on_call)
        self._own_root = config.store_dir is None
        root = Path(config.store_dir or tempfile.mkdtemp(prefix="msrt-sessions-"))
        root.mkdir(parents=True, exist_ok=True)
        self.store = SessionStore(
            root, config.max_sessions, config.session_ttl_s, config.max_store_bytes
        )
        self.policies = PolicySource(policy)
        session_config = SessionConfig(
            max_actions=config.max_actions,
            turn_deadline_s=config.turn_deadline_s,
            episode_deadline_s=config.episode_deadline_s,
            strategy=config.strategy,
            agent_ends_episode=False,  # the agent's stop leaves the episode open for corrections
        )
        self.driver = Driver(
            segmenter, self.policies, session_config, self.worker, self.metrics, tool_spec
        )
        self.limiter = (
            RateLimiter(config.rate_per_s, config.rate_burst) if config.rate_per_s else None
        )
        self.segmenter = segmenter
        m = self.metrics
        m.gauge("msrt_sessions_active", "sessions in the store", lambda: len(self.store))
        m.gauge("msrt_store_bytes", "upload bytes kept on disk", lambda: self.store.disk_bytes)
        m.gauge(
            "msrt_model_queue_depth", "model calls waiting or running", lambda: self.worker.queued
        )
        m.gauge("msrt_encoder_calls", "image encoder runs of the shared segmenter",
                lambda: getattr(segmenter, "encoder_calls", 0))  # fmt: skip

    def _on_call(self, what: str, wait: float, ran: float) -> None:
        self.metrics.observe("msrt_model_wait_seconds", wait)
        self.metrics.observe("msrt_model_call_seconds", ran, kind=what)

    async def evicted(self, ids: list[str], why: str) -> None:
        for sid in ids:
            self.metrics.inc("msrt_sessions_evicted_total")
            log("session_evicted", session_id=sid, reason=why)

    async def close(self) -> None:
        await self.store.clear()
        self.worker.close()
        if self._own_root:
            shutil.rmtree(self.store.root, ignore_errors=True)


def create_app(
    segmenter: Any,
    policy: Any = "default",
    config: ServerConfig | None = None,
    *,
    tool_spec: str | None = None,
):
    """The FastAPI app serving ``segmenter`` (a loaded Segmenter, shared) and ``policy`` (a
    ``build_policy`` spec or a Policy) under ``config``. The caller owns the segmenter."""
    require_server_extra()
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import (
        FileResponse,
        JSONResponse,
        PlainTextResponse,
        Response,
        StreamingResponse,
    )

    config = config or ServerConfig()
    spec = tool_spec or str(getattr(segmenter, "spec", getattr(segmenter, "family", "segmenter")))
    state = ServerState(segmenter, policy, config, spec)
    static = Path(str(resources.files("medsam_agent_rt.server") / "static"))

    @asynccontextmanager
    async def lifespan(app):
        async def sweep() -> None:
            while True:
                await asyncio.sleep(min(30.0, config.session_ttl_s / 2))
                await state.evicted(await state.store.expire(), "ttl")

        task = asyncio.create_task(sweep())
        log("server_started", host=config.host, port=config.port, policy=state.policies.name,
            segmenter=spec, store=str(state.store.root), token=bool(config.token))  # fmt: skip
        try:
            yield
        finally:
            task.cancel()
            await state.close()
            log("server_stopped")

    app = FastAPI(title="medsam-agent-rt", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip
    app.state.msrt = state

    # ------------------------------------------------------------------ middleware
    @app.middleware("http")
    async def guard(request: Request, call_next):
        rid = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        path = request.url.path
        client = request.client.host if request.client else "?"
        t0 = time.perf_counter()
        public = path == "/" or any(path.startswith(p) for p in PUBLIC[1:])
        if not public and not token_ok(config.token, request.headers.get("authorization")):
            response: Response = JSONResponse(
                {"detail": "missing or wrong token: send 'Authorization: Bearer <token>'"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        elif (
            state.limiter is not None
            and path != "/healthz"
            and not (allowed := state.limiter.allow(client))[0]
        ):
            response = JSONResponse(
                {"detail": f"too many requests from {client}: slow down"}, status_code=429,
                headers={"Retry-After": str(max(1, round(allowed[1])))},
            )  # fmt: skip
        else:
            response = await call_next(request)
        seconds = time.perf_counter() - t0
        response.headers["x-request-id"] = rid
        state.metrics.inc("msrt_http_requests_total", status=str(response.status_code))
        if not path.endswith("/events"):
            state.metrics.observe("msrt_http_request_seconds", seconds)
        parts = path.split("/")
        log("request", request_id=rid, method=request.method, path=path[:200],
            status=response.status_code, seconds=round(seconds, 4), client=client,
            session_id=parts[3] if len(parts) > 3 and parts[2] == "sessions" else None)  # fmt: skip
        return response

    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["*"], allow_headers=["*"])  # fmt: skip
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes + 4096)

    # ------------------------------------------------------------------ helpers
    def session(sid: str) -> Session:
        s = state.store.get(sid)
        if s is None:
            raise HTTPException(404, f"no session {sid[:40]!r} (unknown, deleted or evicted)")
        return s

    async def json_body(request: Request) -> Any:
        raw = b""
        async for chunk in request.stream():  # bounded while it streams in
            raw += chunk
            if len(raw) > JSON_LIMIT:
                raise HTTPException(413, f"JSON body over {JSON_LIMIT} bytes")
        try:
            return json.loads(raw or b"null")
        except ValueError as e:
            raise HTTPException(400, f"malformed JSON body: {e}") from None

    def read_args(q: Any) -> dict[str, Any]:
        from medsam_agent_rt.io import parse_window

        out: dict[str, Any] = {}
        try:
            if q.get("window") not in (None, ""):
                out["window"] = parse_window(str(q["window"]))
            for key, name in (("frame", "frame"), ("slice", "slice_index"), ("axis", "axis")):
                if q.get(key) not in (None, ""):
                    out[name] = int(q[key])
        except (ValueError, TypeError) as e:
            raise HTTPException(422, f"bad image option: {e}") from None
        return out

    async def guarded(call, *args):
        try:
            return await call(*args)
        except SessionConflict as e:
            raise HTTPException(409, str(e)) from None
        except PolicyFailed as e:
            raise HTTPException(502, str(e)) from None
        except (ValueError, TypeError) as e:
            raise HTTPException(422, str(e)) from None
        except RuntimeError as e:  # ToolError: the segmenter failed on this action
            raise HTTPException(500, f"the segmenter failed: {e}") from None

    # ------------------------------------------------------------------ page, health, metrics
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str):
        path = static / name
        if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(path)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "sessions": len(state.store), "queue": state.worker.queued}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/api/info")
    async def info():
        from medsam_agent_rt.io import WINDOW_PRESETS

        c = config
        return {"policy": state.policies.name, "requires_gt": state.policies.requires_gt,
                "segmenter": spec, "max_actions": c.max_actions, "window_presets": sorted(WINDOW_PRESETS),
                "limits": {"max_upload_bytes": c.max_upload_bytes, "max_pixels": c.max_pixels,
                           "max_slices": c.max_slices, "max_sessions": c.max_sessions,
                           "session_ttl_s": c.session_ttl_s}}  # fmt: skip

    # ------------------------------------------------------------------ sessions
    @app.post("/api/sessions", status_code=201)
    async def create_session(request: Request):
        """Body: the file's bytes (PNG/JPEG/TIFF/BMP, DICOM, zipped DICOM series, NIfTI).
        Query: filename, target, window (preset or C,W), frame, slice, axis."""
        q = request.query_params
        args = read_args(q)
        target = (q.get("target") or "").strip()
        if len(target) > 500:
            raise HTTPException(422, "target: at most 500 characters")
        sid, folder = state.store.new_folder()
        source = folder / stored_name(q.get("filename"))
        try:
            size = await save_stream(request.stream(), source, config.max_upload_bytes)
            if source.suffix == ".zip":
                source = await asyncio.to_thread(
                    unpack_series,
                    source,
                    folder / "series",
                    config.max_slices,
                    config.max_upload_bytes,
                )
            loaded = await asyncio.to_thread(
                read_upload, source, config.max_pixels, config.max_slices, **args
            )
        except UploadError as e:
            shutil.rmtree(folder, ignore_errors=True)
            state.metrics.inc("msrt_uploads_refused_total", status=str(e.status))
            raise HTTPException(e.status, str(e)) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # a truncated / aborted upload leaves nothing
            raise
        s = Session(
            sid, folder, source, display_name(q.get("filename")), loaded, args, size, target
        )
        await state.evicted(await state.store.expire(), "ttl")
        await state.evicted(await state.store.add(s), "lru")
        state.metrics.inc("msrt_sessions_created_total")
        log("session_created", session_id=sid, bytes=size, format=loaded.format,
            shape=list(loaded.shape))  # fmt: skip
        return s.state()

    @app.get("/api/sessions")
    async def list_sessions():
        return [s.state() for s in state.store]

    @app.get("/api/sessions/{sid}")
    async def get_session(sid: str):
        return session(sid).state()

    @app.delete("/api/sessions/{sid}", status_code=204)
    async def delete_session(sid: str):
        session(sid)
        await state.store.remove(sid)
        return Response(status_code=204)

    @app.put("/api/sessions/{sid}/target")
    async def set_target(sid: str, request: Request):
        s, body = session(sid), await json_body(request)
        target = body.get("target") if isinstance(body, dict) else None
        if not isinstance(target, str) or not target.strip() or len(target) > 500:
            raise HTTPException(
                422, 'body must be {"target": "<what to segment>"} (1..500 characters)'
            )
        async with s.lock:
            if target.strip() != s.target and s.episode is not None:
                await state.driver.reset(s, "target")
            s.target = target.strip()
        return s.state()

    @app.put("/api/sessions/{sid}/gt")
    async def set_gt(sid: str, request: Request):
        """Body: a ground-truth mask image (or NIfTI mask volume) of the session's image."""
        from medsam_agent_rt.io import read_mask

        s = session(sid)
        path = s.folder / (
            "gt-" + uuid.uuid4().hex[:8] + stored_name(request.query_params.get("filename"))[6:]
        )
        try:
            await save_stream(request.stream(), path, config.max_upload_bytes)
            gt = await asyncio.to_thread(read_mask, path, s.loaded)
        except UploadError as e:
            raise HTTPException(e.status, str(e)) from None
        except (ValueError, OSError) as e:
            raise HTTPException(422, str(e).replace(str(path), "the mask")) from None
        finally:
            path.unlink(missing_ok=True)
        async with s.lock:
            s.gt = gt
            if s.episode is not None:
                await state.driver.reset(s, "gt")
        return s.state()

    @app.post("/api/sessions/{sid}/image")
    async def reload_image(sid: str, request: Request):
        """Re-read the upload with other options: {"window": "abdomen" | "C,W", "slice": k,
        "frame": k, "axis": a}; starts a new episode (the agent sees a new image)."""
        s, body = session(sid), await json_body(request)
        if not isinstance(body, dict):
            raise HTTPException(422, 'body must be a JSON object like {"window": "abdomen"}')
        args = {**s.read_args, **read_args(body)}
        try:
            loaded = await asyncio.to_thread(
                read_upload, s.source, config.max_pixels, config.max_slices, **args
            )
        except UploadError as e:
            raise HTTPException(e.status, str(e)) from None
        async with s.lock:
            s.loaded, s.read_args = loaded, args
            if s.gt is not None and s.gt.shape != loaded.shape:
                s.gt = None
            await state.driver.reset(s, "image")
        return s.state()

    @app.get("/api/sessions/{sid}/image.png")
    async def image_png(sid: str):
        from medsam_agent_rt.io.writers import encode_png

        s = session(sid)
        data = await asyncio.to_thread(encode_png, s.loaded.rgb)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/api/sessions/{sid}/current-mask.png")
    async def current_mask(sid: str):
        """The current mask (0/255 PNG, the image's size); all zero before any action."""
        import numpy as np

        from medsam_agent_rt.io.writers import encode_mask_png

        s = session(sid)
        async with s.lock:
            ep = s.episode
            mask = ep.mask if ep is not None and ep.started else np.zeros(s.loaded.shape, bool)
        data = await asyncio.to_thread(encode_mask_png, mask)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ turns
    @app.post("/api/sessions/{sid}/step")
    async def step(sid: str):
        s = session(sid)
        if s.running:
            raise HTTPException(409, "the agent is running; stop it first")
        async with s.lock:
            turns = await guarded(state.driver.step, s)
        return {"turns": turns, "state": s.state()}

    @app.post("/api/sessions/{sid}/run")
    async def run(sid: str, wait: bool = False):
        """Agent turns until the episode ends (``wait=true``: answer then), one worker call per
        turn; a person's actions may come in between."""
        s = session(sid)
        if s.running:
            raise HTTPException(409, "the agent is already running")
        async with s.lock:
            ep = await guarded(state.driver.ensure_started, s)
            if ep.done:
                raise HTTPException(
                    409, f"the episode is over ({ep.record.end_reason}); reset to go on"
                )
            if ep.agent_done == "budget":
                raise HTTPException(409, "the agent has used its actions: click, undo or accept")
            s.stop_requested = False
            s.runner = asyncio.create_task(state.driver.run_to_end(s))
        if wait:
            await asyncio.shield(s.runner)
            return s.state()
        return JSONResponse(s.state(), status_code=202)

    @app.post("/api/sessions/{sid}/stop")
    async def stop(sid: str):
        """Stop an agent run after its current turn (the episode stays open)."""
        s = session(sid)
        await state.driver.stop_run(s)
        return s.state()

    @app.post("/api/sessions/{sid}/cancel")
    async def cancel(sid: str):
        """End the episode now ("cancelled"; a turn in flight is discarded)."""
        s = session(sid)
        await state.driver.stop_run(s, cancel=True)
        async with s.lock:
            await state.driver.publish_end(s)
        return s.state()

    @app.post("/api/sessions/{sid}/reset")
    async def reset(sid: str):
        s = session(sid)
        await state.driver.stop_run(s)
        async with s.lock:
            await state.driver.reset(s, "reset")
        return s.state()

    @app.post("/api/sessions/{sid}/actions")
    async def act(sid: str, request: Request):
        """A person's action: {"type": "point", "x", "y", "positive"} | {"type": "box", "box":
        [x1, y1, x2, y2]} | {"type": "undo"} | {"type": "accept"} (image pixels)."""
        s, body = session(sid), await json_body(request)
        try:
            action = parse_action(body, s.loaded.shape)
        except (ValueError, TypeError) as e:
            raise HTTPException(422, str(e)) from None
        async with s.lock:
            turns = await guarded(state.driver.apply, s, action)
        return {"turns": turns, "state": s.state()}

    @app.get("/api/sessions/{sid}/events")
    async def events(sid: str, request: Request, after: int = -1, until_done: bool = False):
        """Server-sent events: every event after ``after`` (its ``seq``; also Last-Event-ID),
        then new ones as they happen. ``until_done``: close once the episode has ended."""
        s = session(sid)
        last = request.headers.get("last-event-id")
        if last is not None and last.isdigit():
            after = int(last)

        async def stream():
            nonlocal after
            while True:
                pending = s.events[after + 1 :]
                for e in pending:
                    yield f"id: {e['seq']}\nevent: {e['kind']}\ndata: {json.dumps(e)}\n\n"
                    after = e["seq"]
                    if e["kind"] == "closed" or (until_done and e["kind"] == "end"):
                        return
                if s.closed or await request.is_disconnected():
                    return
                async with s.changed:
                    if len(s.events) == after + 1:
                        try:
                            await asyncio.wait_for(s.changed.wait(), 15.0)
                        except asyncio.TimeoutError:
                            yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip

    # ------------------------------------------------------------------ downloads
    @app.get("/api/sessions/{sid}/files/{name}")
    async def download(sid: str, name: str):
        """mask.png, mask.nii.gz (the input's affine for NIfTI / DICOM), overlay.png (the views
        the agent saw), trajectory.json (who did each step), mask.dcm (DICOM-SEG, when a writer
        is installed)."""
        s = session(sid)
        if name not in DOWNLOADS:
            raise HTTPException(404, f"no file {name[:60]!r}; available: {', '.join(DOWNLOADS)}")
        async with s.lock:
            ep = s.episode
            if ep is None or not ep.started:
                raise HTTPException(409, "nothing to download yet: run the agent or click first")
            out = await asyncio.to_thread(export, s, name == "mask.dcm")
        return FileResponse(out / name, media_type=DOWNLOADS[name],
                            filename=f"{Path(s.name).stem.split('.')[0]}-{name}")  # fmt: skip

    def export(s: Session, seg: bool) -> Path:
        """Write the session's outputs with ``io.write_outputs`` (once per state of the
        episode) into ``<session>/out``; returns that folder."""
        from medsam_agent_rt.io import write_mask_nifti, write_outputs

        ep, out = s.episode, s.folder / "out"
        version = (s.generation, len(ep.record.turns), ep.done)
        if s.exported != version:
            mask = ep.result().mask if ep.done else ep.mask
            rec = ep.record
            rec.source = {"image": {**s.loaded.to_dict(), "path": s.name}, "server": True,
                          "gt": "uploaded" if s.gt is not None else None}  # fmt: skip
            write_outputs(out, s.loaded, mask, rec, overwrite=True)
            if s.loaded.format != "nifti":
                write_mask_nifti(out / "mask.nii.gz", mask, like=s.loaded)
            s.exported = version
        if seg:
            write_dicom_seg(s, out)
        return out

    def write_dicom_seg(s: Session, out: Path) -> None:
        from medsam_agent_rt.io.dicom_seg import import_highdicom, write_image_dicom_seg

        if s.loaded.format != "dicom":
            raise HTTPException(
                409, "DICOM-SEG needs a DICOM input; download mask.nii.gz or mask.png"
            )
        try:
            import_highdicom()
        except ImportError as exc:
            raise HTTPException(501, f"DICOM-SEG export is not available: {exc}") from None
        ep = s.episode
        mask = ep.result().mask if ep.done else ep.mask
        try:
            write_image_dicom_seg(out / "mask.dcm", mask, s.loaded, label=s.target or "target")
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    return app
