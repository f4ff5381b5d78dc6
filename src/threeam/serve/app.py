"""The FastAPI application of `threeam serve`: the page, its HTTP API and the tab's WebSocket.

HTTP API (JSON in and out; errors are ``{"detail": message}`` with 400 bad input, 403 refused
path or origin, 404 unknown session/file/frame, 409 busy propagating, 413 too large, 422 malformed
request, 503 too many sessions):

=========================================  ==================================================
``GET  /api/info``                          model, limits, version
``GET  /api/videos``                        videos under the root (files and frames folders)
``POST /api/sessions``                      ``{"path": "rel/path"}`` -> session info
``POST /api/sessions/upload``               multipart ``files`` (one video, or the frames of a folder)
``GET  /api/sessions/{id}``                 session info
``DELETE /api/sessions/{id}``               close it
``GET  /api/sessions/{id}/frames/{t}``      frame t as JPEG
``GET  /api/sessions/{id}/masks/{t}``       frame t's masks (COCO RLE per object)
``POST /api/sessions/{id}/prompts``         `PromptRequest` -> that frame's masks (one model call)
``POST /api/sessions/{id}/clear``           clear one object's prompts on one frame
``POST /api/sessions/{id}/remove_object``   remove an object everywhere
``POST /api/sessions/{id}/reset``           forget every object and result
``POST /api/sessions/{id}/propagate``       `PropagateRequest` -> NDJSON stream of events, one per frame
``POST /api/sessions/{id}/cancel``          stop a running propagation
``POST /api/sessions/{id}/export``          `ExportRequest` -> files written
``GET  /api/sessions/{id}/export/{name}``   download ``masks.zip``, ``masks.json`` or ``overlay.mp4``
``WS   /api/sessions/{id}/ws``              the tab's lifeline: the session closes when it drops
=========================================  ==================================================
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from threeam.errors import InputError, ThreeAMError
from threeam.io.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from threeam.serve.config import ServeConfig
from threeam.serve.schemas import (MAX_SIDE, ExportRequest, ObjectFrameRequest, ObjectRequest, OpenRequest,
                                   PromptRequest, PropagateRequest)
from threeam.serve.security import (AccessDenied, BodyLimit, BodyTooLarge, HostOriginGuard, NotFoundError, TooLarge,
                                    allowed_host_names, list_videos, resolve_under_root, safe_filename)
from threeam.serve.sessions import EXPORT_NAMES, Busy, ServerFull, SessionManager

log = logging.getLogger("threeam.serve")

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
JSON_LIMIT = 32 * 1024 * 1024  # non-upload request bodies (a mask RLE can be a few MB)


def _status(e: Exception) -> int:
    for cls, code in ((AccessDenied, 403), (NotFoundError, 404), (Busy, 409), (TooLarge, 413), (ServerFull, 503)):
        if isinstance(e, cls):
            return code
    return 400


def static_dir() -> Path:
    return Path(str(resources.files("threeam.serve") / "static"))


def create_app(predictor: Any, config: Optional[ServeConfig] = None, model_name: str = "") -> FastAPI:
    """The web app around one predictor (SAM 2 or 3AM; anything with the video predictor session API).

    Args:
        predictor: built with `threeam.predictor.build.build_predictor` (or a test double).
        config: limits, root and timeouts (`ServeConfig`).
        model_name: shown in the page (e.g. ``"sam2 sam2.1_hiera_l"``).
    """
    config = config or ServeConfig()
    root = Path(config.root).resolve()
    if not root.is_dir():
        raise InputError(f"--root {config.root} is not a folder")
    if not 1 <= config.max_side <= MAX_SIDE:
        raise InputError(f"--max-side must be 1..{MAX_SIDE} pixels, got {config.max_side}")
    if not 1 <= config.jpeg_quality <= 95:
        raise InputError(f"--jpeg-quality must be 1..95, got {config.jpeg_quality}")
    if not config.sweep_interval_s > 0:
        raise InputError(f"--sweep-interval must be > 0 seconds, got {config.sweep_interval_s}")
    if config.max_upload_files < 1:
        raise InputError(f"--max-upload-files must be >= 1, got {config.max_upload_files}")
    manager = SessionManager(predictor, config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async def janitor():
            while True:
                await asyncio.sleep(config.sweep_interval_s)
                try:
                    closed = await manager.sweep()
                    if closed:
                        log.info("closed %d idle session(s)", len(closed))
                except Exception:  # never let the janitor die
                    log.exception("idle sweep failed")

        task = asyncio.create_task(janitor())
        try:
            yield
        finally:
            task.cancel()
            await manager.close_all()

    app = FastAPI(title="threeam serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.manager = manager
    app.state.config = config

    @app.exception_handler(ThreeAMError)
    async def _three_am_error(request: Request, exc: ThreeAMError):
        return JSONResponse({"detail": str(exc)}, status_code=_status(exc))

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, exc: BodyTooLarge):
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        msgs = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            msgs.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "; ".join(msgs) or "invalid request"}, status_code=422)

    def session_of(sid: str):
        if not SESSION_ID.match(sid):
            raise NotFoundError("no such session")
        return manager.get(sid)

    # ------------------------------------------------------------------ page
    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse((static_dir() / "index.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")

    @app.get("/api/info")
    async def info():
        from threeam import __version__

        return {"model": model_name, "version": __version__, "root": root.name or str(root),
                "limits": {"max_upload_mb": config.max_upload_mb, "max_frames": config.max_frames,
                           "max_side": config.max_side, "idle_timeout_s": config.idle_timeout_s,
                           "max_sessions": config.max_sessions},
                "video_extensions": list(VIDEO_EXTENSIONS), "image_extensions": list(IMAGE_EXTENSIONS)}

    @app.get("/api/status")
    async def status():
        return {"sessions": len(manager.sessions)}

    @app.get("/api/videos")
    async def videos():
        return {"videos": await asyncio.to_thread(list_videos, root)}

    # ------------------------------------------------------------------ sessions
    @app.post("/api/sessions")
    async def open_session(body: OpenRequest):
        path = resolve_under_root(root, body.path)
        session = await manager.open(path, name=body.path)
        return session.info()

    @app.post("/api/sessions/upload")
    async def upload(request: Request):
        sid, workdir = manager.new_workdir()
        try:
            target, name, stored = await _save_upload(request, workdir / "upload", config)
        except BaseException:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
            raise
        # messages name the client's files, not the stored ones (and no server path)
        session = await manager.open(target, name=name, root_checked=False, sid=sid, workdir=workdir,
                                     client_names=stored)
        return session.info()

    @app.get("/api/sessions/{sid}")
    async def get_session(sid: str):
        return session_of(sid).info()

    @app.delete("/api/sessions/{sid}")
    async def close_session(sid: str):
        session_of(sid)
        await manager.close(sid)
        return {"closed": sid}

    @app.get("/api/sessions/{sid}/frames/{frame}")
    async def frame(sid: str, frame: int):
        session = session_of(sid)
        try:
            data = await manager.frame_jpeg(session, frame)
        except InputError as e:
            raise NotFoundError(str(e)) from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/sessions/{sid}/masks/{frame}")
    async def masks(sid: str, frame: int):
        session = session_of(sid)
        session.check_frame(frame)
        return session.frame_payload(frame)

    @app.post("/api/sessions/{sid}/prompts")
    async def prompts(sid: str, body: PromptRequest):
        session = session_of(sid)
        return await manager.add_prompt(session, body.frame, body.obj_id, [list(p) for p in body.points],
                                        list(body.labels), None if body.box is None else list(body.box),
                                        None if body.mask is None else body.mask.model_dump())

    @app.post("/api/sessions/{sid}/clear")
    async def clear(sid: str, body: ObjectFrameRequest):
        session = session_of(sid)
        if body.obj_id not in session.obj_ids:
            raise InputError(f"unknown object id {body.obj_id} (objects: {session.obj_ids})")
        return await manager.clear_prompts(session, body.frame, body.obj_id)

    @app.post("/api/sessions/{sid}/remove_object")
    async def remove_object(sid: str, body: ObjectRequest):
        return await manager.remove_object(session_of(sid), body.obj_id)

    @app.post("/api/sessions/{sid}/reset")
    async def reset(sid: str):
        return await manager.reset(session_of(sid))

    @app.post("/api/sessions/{sid}/propagate")
    async def propagate(sid: str, body: PropagateRequest):
        session = session_of(sid)
        queue = manager.start_propagation(session, body.direction, body.start, body.max_frames)

        async def events():
            finished = False
            try:
                while (event := await queue.get()) is not None:
                    yield json.dumps(event, separators=(",", ":")) + "\n"
                finished = True
            finally:
                if not finished:  # the reader went away: stop the model too
                    manager.cancel(session)

        return StreamingResponse(events(), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/sessions/{sid}/cancel")
    async def cancel(sid: str):
        return {"cancelled": manager.cancel(session_of(sid))}

    @app.post("/api/sessions/{sid}/export")
    async def export(sid: str, body: ExportRequest):
        session = session_of(sid)
        files = await manager.export(session, list(body.formats))
        for f in files:
            f["url"] = f"/api/sessions/{sid}/export/{f['name']}"
        return {"files": files}

    @app.get("/api/sessions/{sid}/export/{name}")
    async def download(sid: str, name: str):
        session = session_of(sid)
        by_name = {p.name: p for p in session.exports.values()}
        if name not in EXPORT_NAMES.values() or name not in by_name or not by_name[name].is_file():
            raise NotFoundError(f"no exported file {name!r}; export first ({', '.join(EXPORT_NAMES.values())})")
        media = {"masks.zip": "application/zip", "masks.json": "application/json", "overlay.mp4": "video/mp4"}[name]
        stem = Path(session.video.name).stem or "video"
        return FileResponse(by_name[name], media_type=media, filename=f"{safe_stem(stem)}_{name}")

    @app.websocket("/api/sessions/{sid}/ws")
    async def lifeline(ws: WebSocket, sid: str):
        if not SESSION_ID.match(sid) or sid not in manager.sessions:
            await ws.close(code=4404, reason="no such session")
            return
        await ws.accept()
        await ws.send_json({"type": "hello", "session": sid})
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.receive(), timeout=config.sweep_interval_s)
                except asyncio.TimeoutError:
                    if sid not in manager.sessions:
                        await ws.send_json({"type": "closed", "reason": "the session expired after being idle"})
                        await ws.close(code=4000)
                        return
                    continue
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text") or ""
                session = manager.sessions.get(sid)
                if session is None:
                    await ws.send_json({"type": "closed", "reason": "the session was closed"})
                    await ws.close(code=4000)
                    return
                try:
                    msg = json.loads(text) if len(text) < 10_000 else {}
                except json.JSONDecodeError:
                    msg = {}
                op = msg.get("op") if isinstance(msg, dict) else None
                if op == "cancel":
                    await ws.send_json({"type": "cancel", "cancelled": manager.cancel(session)})
                elif op == "ping":
                    await ws.send_json({"type": "pong"})
                else:
                    await ws.send_json({"type": "error", "message": "unknown message; expected {\"op\": \"ping\"} "
                                                                    "or {\"op\": \"cancel\"}"})
        except WebSocketDisconnect:
            pass
        finally:
            await manager.close(sid)  # the tab went away

    return with_guards(app, config)


def safe_stem(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:60] or "video"


def with_guards(app: FastAPI, config: ServeConfig):
    """The app behind the Host/Origin guard and the body-size limit; ``.state`` still reaches the app."""
    hosts = allowed_host_names(config.host, config.allowed_hosts)  # a wildcard bind: this machine's names
    guarded = HostOriginGuard(BodyLimit(app, JSON_LIMIT, config.max_upload_bytes), hosts)
    guarded.state = app.state
    guarded.fastapi = app
    return guarded


async def _save_upload(request: Request, folder: Path, config: ServeConfig) -> tuple[Path, str, dict[str, str]]:
    """Store an upload: one video file, or the image frames of a folder.

    Frames are stored as ``00000.png``, ``00001.jpg``, ... in the order of the numbers in their
    original names (`_frame_order`), so the frames-folder reader (which orders by the last number
    in a name) reads them in that order whatever the original names were (``cover.jpg`` after
    ``frame_7.jpg``). Returns the video file or the frames folder, the name to show for it, and
    ``{stored name: the client's safe base name}`` for messages."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise InputError("upload must be multipart/form-data with one or more 'files'")
    try:
        form = await request.form(max_files=config.max_upload_files, max_fields=16)
    except BodyTooLarge:
        raise
    except Exception as e:  # malformed multipart bodies, too many files
        raise InputError(f"cannot read the upload: {e}") from None
    try:
        files = [f for f in form.getlist("files") if hasattr(f, "read")]
        if not files:
            raise InputError("the upload holds no file (send them as the 'files' field)")
        folder.mkdir(parents=True)
        names = [str(f.filename or "") for f in files]
        suffixes = [Path(n).suffix.lower() for n in names]
        videos = [i for i, s in enumerate(suffixes) if s in VIDEO_EXTENSIONS]
        images = [i for i, s in enumerate(suffixes) if s in IMAGE_EXTENSIONS]
        if videos and (len(files) > 1):
            raise InputError("upload one video file, or the image frames of one folder, not both")
        if not videos and not images:
            raise InputError(f"unsupported upload {names[0]!r}: send a video ({', '.join(VIDEO_EXTENSIONS)}) "
                             f"or image frames ({', '.join(IMAGE_EXTENSIONS)})")
        if len(images) != len(files) and not videos:
            bad = next(n for n, s in zip(names, suffixes) if s not in IMAGE_EXTENSIONS)
            raise InputError(f"{bad!r} is not an image frame ({', '.join(IMAGE_EXTENSIONS)})")
        if videos:
            target = folder / safe_filename(names[0], 0)
            await _copy(files[0], target)
            return target, target.name.split("_", 1)[1], {}
        # keep the order of the numbers in the original names (the frames folder rule); stored
        # under the rank alone, so the folder reader (by the last number in a name) keeps that order
        order = sorted(range(len(files)), key=lambda i: _frame_order(names[i]))
        stored = {}
        for rank, i in enumerate(order):
            await _copy(files[i], folder / f"{rank:05d}{suffixes[i]}")
            stored[f"{rank:05d}{suffixes[i]}"] = safe_filename(names[i], rank).split("_", 1)[1]
        return folder, f"uploaded frames ({len(files)})", stored
    finally:
        await form.close()


def _frame_order(name: str) -> tuple:
    """Frames by the last number in the file's stem; names without a number last, by name
    (the order `threeam.io.video.list_frame_files` reads a frames folder in)."""
    stem = PurePosixPath(name.replace("\\", "/")).stem
    numbers = re.findall(r"\d+", stem)
    return (0, int(numbers[-1]), name) if numbers else (1, 0, name)


async def _copy(upload, target: Path) -> None:
    with open(target, "wb") as out:
        while chunk := await upload.read(1 << 20):
            out.write(chunk)
