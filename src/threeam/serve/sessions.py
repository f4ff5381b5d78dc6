"""Sessions of the web app: one per browser tab, each with its own predictor state, on one model.

* `ModelWorker` is the single thread that runs every predictor call (the model is shared by all
  sessions; its calls never overlap). Propagation hands it one frame at a time, so a long
  propagation in one tab does not hold the clicks of another tab back by more than one frame.
* `Session` holds one video: its streaming frame source (`threeam.serve.media.VideoData`, a few
  decoded frames at a time), the predictor's `InferenceState` (which streams its own frames with
  a bounded cache), the latest result of every frame as a compressed id map
  (`threeam.serve.idmaps.IdMaps`; uint8 ``(H, W)``, 0 = background, k = object k; overlaps go
  to the object with the higher logit, the rule of `threeam track`) and a bounded cache of the
  JPEGs sent to the page (`JPEG_CACHE_BYTES`).
* `SessionManager` opens and closes sessions, refuses work on a session while it propagates
  (`Busy`, HTTP 409), closes sessions idle for longer than the timeout, and gives memory back on
  close (drops the state, collects garbage, returns freed heap pages to the OS where glibc allows).
"""
from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from threeam.errors import InputError, ThreeAMError
from threeam.io.masks import TracksWriter, decode_rle, encode_rle, write_palette_png
from threeam.models.sam2.tracking import COND
from threeam.predictor.track_job import id_map_from_logits
from threeam.serve.config import ServeConfig
from threeam.serve.idmaps import IdMaps
from threeam.serve.media import VideoData, clean_message, encode_jpeg, open_video
from threeam.serve.security import NotFoundError

EXPORT_NAMES = {"png": "masks.zip", "rle": "masks.json", "mp4": "overlay.mp4"}
JPEG_CACHE_BYTES = 64 * 1024 * 1024  # per session: the JPEGs already sent to the page (LRU)
STORED_NAME = re.compile(r"\b\d{5}\.[a-z0-9]{1,10}\b")  # an uploaded frame's stored name (00001.png)


class Busy(InputError):
    """The session is propagating; cancel first (HTTP 409)."""


class ServerFull(ThreeAMError):
    """Too many sessions are open (HTTP 503)."""


def masks_payload(id_map: Optional[np.ndarray], obj_ids: list[int]) -> dict[str, dict]:
    """``{"k": COCO RLE}`` for every object of ``obj_ids`` present in ``id_map``."""
    if id_map is None:
        return {}
    present = set(int(v) for v in np.unique(id_map)) - {0}
    return {str(k): encode_rle(id_map == k) for k in obj_ids if k in present}


class ModelWorker:
    """The one thread that owns the model. ``await worker.run(fn, *args)`` runs ``fn`` there,
    inside the predictor's own autocast setting (``predictor.autocast_context()``: the
    predictor's ``autocast`` option, by default bf16 on CUDA); a predictor built with
    ``autocast=False`` runs in float32, and one without the setting runs plain."""

    def __init__(self, predictor: Any):
        self.predictor = predictor
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="threeam-model")

    def _call(self, fn: Callable, *args, **kwargs):
        context = getattr(self.predictor, "autocast_context", None)
        with (context() if callable(context) else nullcontext()):
            return fn(*args, **kwargs)

    async def run(self, fn: Callable, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(self._call, fn, *args, **kwargs))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class Session:
    """One tab's video session (see the module docstring)."""

    id: str
    video: VideoData
    state: Any
    workdir: Path
    id_maps: IdMaps = field(default_factory=IdMaps)
    jpegs: "OrderedDict[int, bytes]" = field(default_factory=OrderedDict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cancel: threading.Event = field(default_factory=threading.Event)
    propagating: bool = False
    closed: bool = False
    last_active: float = field(default_factory=time.monotonic)
    exports: dict[str, Path] = field(default_factory=dict)
    task: Optional[asyncio.Task] = None
    client_names: dict[str, str] = field(default_factory=dict)  # upload: stored file name -> client's

    @property
    def obj_ids(self) -> list[int]:
        return [] if self.state is None else list(self.state.obj_ids)

    def info(self) -> dict:
        v = self.video
        return {"id": self.id, "name": v.name, "num_frames": v.num_frames, "width": v.width, "height": v.height,
                "fps": v.fps, "obj_ids": self.obj_ids, "frames_with_masks": sorted(self.id_maps)}

    def check_frame(self, frame: int, name: str = "frame") -> int:
        if not 0 <= frame < self.video.num_frames:
            raise InputError(f"{name} {frame} is out of range: the video has {self.video.num_frames} frames "
                             f"(valid 0..{self.video.num_frames - 1})")
        return frame

    def frame_payload(self, frame: int) -> dict:
        return {"frame": frame, "obj_ids": self.obj_ids, "masks": masks_payload(self.id_maps.get(frame), self.obj_ids)}


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc only; a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class SessionManager:
    """Every open session of one server, on one predictor (see the module docstring)."""

    def __init__(self, predictor: Any, config: ServeConfig, workdir: Optional[Path] = None):
        self.predictor = predictor
        self.config = config
        self.root = Path(config.root).resolve()
        self.worker = ModelWorker(predictor)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="threeam-serve-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sessions: dict[str, Session] = {}
        self._pending = 0  # sessions being opened (counted against max_sessions)

    # ------------------------------------------------------------------ open / close
    def new_workdir(self) -> tuple[str, Path]:
        """A fresh session id and its private folder (uploads and exports go there)."""
        sid = secrets.token_urlsafe(18)
        d = self.workdir / sid
        d.mkdir()
        return sid, d

    def _reserve(self) -> None:
        if len(self.sessions) + self._pending >= self.config.max_sessions:
            raise ServerFull(f"{self.config.max_sessions} sessions are open already (--max-sessions); "
                             "close a tab or wait for an idle one to expire")
        self._pending += 1

    def client_message(self, message: str, path: Optional[Path], label: str,
                       client_names: Optional[dict[str, str]] = None, workdir: Optional[Path] = None) -> str:
        """``message`` as a client may see it: the video's server ``path`` becomes ``label`` (the
        name the client opened it by), stored upload names become the client's file names
        (``client_names``), and any other server folder (the session's, the server's work folder,
        the root) is named by what it is, never by its path."""
        if path is not None:
            message = clean_message(message, Path(path), label)
        if client_names:
            message = STORED_NAME.sub(lambda m: client_names.get(m.group(0), m.group(0)), message)
        for folder, what in ((workdir, "<session folder>"), (self.workdir, "<server folder>"),
                             (self.root, "<root>")):
            if folder is not None and len(str(Path(folder))) > 1:  # never a bare "/"
                message = clean_message(message, Path(folder), what)
        return message

    def _for_client(self, session: Session, message: str) -> str:
        v = session.video
        return self.client_message(message, v.path, v.name, session.client_names, session.workdir)

    def _rewrap(self, e: ThreeAMError, message: str) -> ThreeAMError:
        """``e`` with ``message`` (same class, so the same HTTP status)."""
        if message == str(e):
            return e
        try:
            return type(e)(message)
        except Exception:  # a class with another constructor
            return InputError(message)

    async def _model(self, session: Session, fn: Callable, *args, **kwargs):
        """``worker.run`` for a session's call; its `ThreeAMError` messages cleaned for the client."""
        try:
            return await self.worker.run(fn, *args, **kwargs)
        except ThreeAMError as e:
            raise self._rewrap(e, self._for_client(session, str(e))) from None

    async def open(self, path: Path, *, name: Optional[str] = None, root_checked: bool = True,
                   sid: Optional[str] = None, workdir: Optional[Path] = None,
                   client_names: Optional[dict[str, str]] = None) -> Session:
        """Decode ``path`` (a video file or frames folder), start a predictor session on it.

        ``root_checked``: the path came through `resolve_under_root` (frames inside must then also
        stay in the root); uploads live in the session's own folder instead. ``workdir`` (with
        ``sid``) is removed on any failure, a full server (`ServerFull`) included.
        ``client_names``: for an upload, ``{stored file name: the client's name}`` (messages name
        the client's files). Every error message is cleaned of server paths (`client_message`).
        """
        try:
            self._reserve()
        except BaseException:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            raise
        if sid is None:
            sid, workdir = self.new_workdir()
        try:
            cfg = self.config
            video = await asyncio.to_thread(open_video, path, cfg.max_frames, cfg.max_side,
                                            self.root if root_checked else None, name)
            try:  # the predictor streams its own frames of the (checked) path, with a bounded cache
                state = await self.worker.run(self.predictor.init_state, str(video.path),
                                              offload_video_to_cpu=cfg.offload_video_to_cpu,
                                              offload_state_to_cpu=cfg.offload_state_to_cpu)
            except BaseException:
                video.close()
                raise
            session = Session(id=sid, video=video, state=state, workdir=workdir,
                              client_names=dict(client_names or {}))
            self.sessions[sid] = session
            return session
        except ThreeAMError as e:
            shutil.rmtree(workdir, ignore_errors=True)
            label = name or Path(path).name
            raise self._rewrap(e, self.client_message(str(e), Path(path), label, client_names, workdir)) from None
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            self._pending -= 1

    def get(self, sid: str) -> Session:
        session = self.sessions.get(sid)
        if session is None or session.closed:
            raise NotFoundError("no such session (it was closed, or expired after being idle); open the video again")
        session.last_active = time.monotonic()
        return session

    async def close(self, sid: str) -> bool:
        """Stop any propagation, drop the session's state and files; False if it was not open."""
        session = self.sessions.pop(sid, None)
        if session is None:
            return False
        session.closed = True
        session.cancel.set()
        async with session.lock:  # waits for a running propagation to notice the cancel
            state, session.state = session.state, None
            session.id_maps.clear()
            session.jpegs.clear()
            session.video.close()
            del state
            await self.worker.run(self._collect)
        shutil.rmtree(session.workdir, ignore_errors=True)
        return True

    def _collect(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        _malloc_trim()

    async def close_all(self) -> None:
        for sid in list(self.sessions):
            await self.close(sid)
        self.worker.shutdown()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def sweep(self) -> list[str]:
        """Close the sessions idle for longer than ``idle_timeout_s`` (0 or less: never)."""
        timeout = self.config.idle_timeout_s
        if timeout <= 0:
            return []
        now = time.monotonic()
        stale = [sid for sid, s in self.sessions.items() if not s.propagating and now - s.last_active > timeout]
        for sid in stale:
            await self.close(sid)
        return stale

    # ------------------------------------------------------------------ editing
    def _editable(self, session: Session) -> None:
        if session.propagating:
            raise Busy("propagation is running in this session; cancel it or wait for it to finish")

    async def add_prompt(self, session: Session, frame: int, obj_id: int, points: list, labels: list,
                         box: Optional[list], mask_rle: Optional[dict]) -> dict:
        """Set one object's prompts on one frame (one model call); returns the frame's masks."""
        self._editable(session)
        session.check_frame(frame)
        mask = None
        if mask_rle is not None:
            size = mask_rle.get("size") if isinstance(mask_rle, dict) else None
            want = [session.video.height, session.video.width]
            if not isinstance(size, (list, tuple)) or [int(v) for v in size] != want:
                # checked before decoding: a few bytes of RLE may claim gigabytes of pixels
                raise InputError(f"mask has size {list(size) if isinstance(size, (list, tuple)) else size!r} "
                                 f"but the video frames are [H, W] = {want}; send a mask at the video's size")
            mask = decode_rle(mask_rle)
        async with session.lock:
            self._editable(session)
            p, state = self.predictor, session.state

            def call():
                if mask is not None:
                    _, ids, logits = p.add_new_mask(state, frame, obj_id, mask)
                elif points or box is not None:
                    _, ids, logits = p.add_new_points_or_box(state, frame, obj_id, points=points or None,
                                                             labels=labels or None, box=box, clear_old_points=True)
                elif obj_id in state.obj_ids:
                    _, ids, logits = p.clear_all_prompts_in_frame(state, frame, obj_id)
                else:
                    raise InputError(f"object {obj_id} has no prompts yet: give points, a box or a mask")
                return id_map_from_logits(ids, logits)

            session.id_maps[frame] = await self._model(session, call)
            session.last_active = time.monotonic()
            return session.frame_payload(frame)

    async def clear_prompts(self, session: Session, frame: int, obj_id: int) -> dict:
        """Remove one object's prompts on one frame; returns the frame's masks."""
        return await self.add_prompt(session, frame, obj_id, [], [], None, None)

    async def remove_object(self, session: Session, obj_id: int) -> dict:
        """Remove an object everywhere; returns ``{"obj_ids": [...], "frames": [frame payloads]}``."""
        self._editable(session)
        async with session.lock:
            self._editable(session)
            p, state = self.predictor, session.state

            def call():
                remaining, updated = p.remove_object(state, obj_id, strict=True, need_output=True)
                return remaining, [(t, id_map_from_logits(list(remaining), m)) for t, m in updated]

            remaining, updated = await self._model(session, call)
            for t in list(session.id_maps):
                m = session.id_maps[t]
                if (m == obj_id).any():
                    m[m == obj_id] = 0
                    session.id_maps[t] = m
            for t, m in updated:
                session.id_maps[t] = m
            if not remaining:
                session.id_maps.clear()
            return {"obj_ids": list(remaining), "frames": [session.frame_payload(t) for t in sorted(session.id_maps)]}

    async def reset(self, session: Session) -> dict:
        """Forget every object, prompt and result of the session (the video stays open)."""
        self._editable(session)
        async with session.lock:
            self._editable(session)
            reset = getattr(self.predictor, "reset_session", self.predictor.reset_state)
            await self._model(session, reset, session.state)
            session.id_maps.clear()
            return session.info()

    # ------------------------------------------------------------------ propagation
    def start_propagation(self, session: Session, direction: str = "both", start: Optional[int] = None,
                          max_frames: Optional[int] = None) -> "asyncio.Queue[Optional[dict]]":
        """Start tracking every object in a background task; its events arrive on the returned queue
        (``None`` after the last one).

        Events: ``{"type": "start", "total": n, "start": t0, "direction": d}``, then per frame
        ``{"type": "frame", "frame": t, "obj_ids": [...], "masks": {"k": RLE}, "done": i, "total": n}``,
        then ``{"type": "end", "cancelled": bool, "frames": i}``; a failure gives
        ``{"type": "error", "message": ...}`` instead of the end. ``total`` counts distinct frames
        (the start frame once for ``both``). The task owns the session until it ends, whatever
        happens to whoever reads the queue.
        """
        self._editable(session)
        if direction not in ("forward", "backward", "both"):
            raise InputError(f"direction must be forward, backward or both, got {direction!r}")
        if start is not None:
            session.check_frame(start, "start")
        if not session.obj_ids:
            raise InputError("nothing to propagate: click an object first")
        session.propagating = True
        session.cancel.clear()
        queue: asyncio.Queue[Optional[dict]] = asyncio.Queue()
        session.task = asyncio.create_task(self._propagate(session, queue, direction, start, max_frames))
        return queue

    async def _propagate(self, session: Session, queue: asyncio.Queue, direction: str, start: Optional[int],
                         max_frames: Optional[int]) -> None:
        passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        done: set[int] = set()
        cancelled = False
        try:
            async with session.lock:
                if session.closed:
                    queue.put_nowait({"type": "end", "cancelled": True, "frames": 0})
                    return
                p, state = self.predictor, session.state
                first = start if start is not None else await self._model(session, _earliest_prompt, state)
                total = _pass_frames(session.video.num_frames, first, passes, max_frames)
                queue.put_nowait({"type": "start", "total": total, "start": first, "direction": direction})
                for reverse in passes:
                    gen = p.propagate_in_video(state, start_frame_idx=first, max_frame_num_to_track=max_frames,
                                               reverse=reverse, progress=False)
                    try:
                        while not (cancelled := session.cancel.is_set()):
                            item = await self.worker.run(_next_id_map, gen)
                            if item is None:
                                break
                            t, ids, id_map = item
                            session.id_maps[t] = id_map
                            done.add(t)
                            session.last_active = time.monotonic()
                            queue.put_nowait({"type": "frame", **session.frame_payload(t), "done": len(done),
                                              "total": total})
                    finally:
                        await self.worker.run(gen.close)
                    if cancelled:
                        break
                queue.put_nowait({"type": "end", "cancelled": cancelled, "frames": len(done)})
        except ThreeAMError as e:
            queue.put_nowait({"type": "error", "message": self._for_client(session, str(e))})
        except Exception as e:  # a model failure must not leave the session stuck
            message = f"propagation failed: {e.__class__.__name__}: {e}"
            queue.put_nowait({"type": "error", "message": self._for_client(session, message)})
        finally:
            session.propagating = False
            queue.put_nowait(None)

    def cancel(self, session: Session) -> bool:
        """Ask a running propagation to stop after its current frame; False if none runs."""
        if not session.propagating:
            return False
        session.cancel.set()
        return True

    # ------------------------------------------------------------------ frames and export
    async def frame_jpeg(self, session: Session, frame: int) -> bytes:
        session.check_frame(frame)
        data = session.jpegs.get(frame)
        if data is not None:
            session.jpegs.move_to_end(frame)
            return data
        video, quality = session.video, self.config.jpeg_quality
        try:
            data = await asyncio.to_thread(lambda: encode_jpeg(video.frame(frame), quality))
        except ThreeAMError as e:
            raise self._rewrap(e, self._for_client(session, str(e))) from None
        session.jpegs[frame] = data
        while sum(len(b) for b in session.jpegs.values()) > JPEG_CACHE_BYTES and len(session.jpegs) > 1:
            session.jpegs.popitem(last=False)
        return data

    async def export(self, session: Session, formats: list[str]) -> list[dict]:
        """Write the results with the `threeam track` writers into the session folder.

        ``png``: ``masks.zip`` holding ``masks/00000.png``... (DAVIS palette, one per frame with a
        result); ``rle``: ``masks.json`` (COCO RLE, `threeam.io.masks.write_rle_json`); ``mp4``:
        ``overlay.mp4`` (`threeam.io.overlay.write_overlay_video`). Returns ``[{"format", "name", "bytes"}]``.
        """
        self._editable(session)
        if not session.id_maps:
            raise InputError("nothing to export yet: click an object (and propagate) first")
        async with session.lock:
            snapshot = session.id_maps.snapshot()
            obj_ids = session.obj_ids
            video = session.video
        out = session.workdir / "export"
        try:
            written = await asyncio.to_thread(_write_exports, out, snapshot, obj_ids, video, sorted(set(formats)))
        except ThreeAMError as e:
            raise self._rewrap(e, self._for_client(session, str(e))) from None
        session.exports.update(written)
        return [{"format": f, "name": p.name, "bytes": p.stat().st_size} for f, p in written.items()]


def _earliest_prompt(state) -> int:
    """The earliest conditioning (prompted) frame, the official default start of a propagation;
    tracked frames' outputs do not count (temporary outputs are prompts not yet consolidated)."""
    frames = [t for d in state.output_dict_per_obj.values() for t in d.get(COND, {})]
    frames += [t for d in state.temp_output_dict_per_obj.values() for t in d.get(COND, {})]
    return min(frames) if frames else 0


def _pass_frames(num_frames: int, start: int, passes: list[bool], max_frames: Optional[int]) -> int:
    frames: set[int] = set()
    limit = num_frames if max_frames is None else max_frames
    for reverse in passes:
        if reverse:
            if start > 0:
                frames.update(range(max(start - limit, 0), start + 1))
        else:
            frames.update(range(start, min(start + limit, num_frames - 1) + 1))
    return len(frames)


def _next_id_map(gen):
    """Advance a propagation by one frame (in the model thread): ``(t, ids, id_map)`` or None at the end."""
    try:
        t, ids, logits = next(gen)
    except StopIteration:
        return None
    return int(t), list(ids), id_map_from_logits(list(ids), logits)


def _write_exports(out: Path, id_maps: IdMaps, obj_ids: list[int], video: VideoData,
                   formats: list[str]) -> dict[str, Path]:
    """The export files (see `SessionManager.export`), each written atomically, frame by frame
    (one id map and one decoded frame in memory at a time)."""
    from threeam.io.atomic import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    order = sorted(id_maps)
    written: dict[str, Path] = {}
    if "png" in formats:
        tmp_dir = Path(tempfile.mkdtemp(prefix=".masks.", dir=out))
        try:
            target = out / EXPORT_NAMES["png"]
            with atomic_path(target) as tmp:
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
                    for t in order:
                        png = tmp_dir / f"{t:05d}.png"
                        write_palette_png(png, id_maps[t])
                        z.write(png, f"masks/{t:05d}.png")
                        png.unlink()
            written["png"] = target
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    if "rle" in formats:
        with TracksWriter(out / EXPORT_NAMES["rle"]) as writer:
            for t in order:
                m = id_maps[t]
                writer.add(t, {k: m == k for k in obj_ids if (m == k).any()})
        written["rle"] = out / EXPORT_NAMES["rle"]
    if "mp4" in formats:
        from threeam.io.overlay import write_overlay_video

        write_overlay_video(out / EXPORT_NAMES["mp4"], video.frames(order), (id_maps[t] for t in order),
                            fps=max(1, int(round(video.fps))))
        written["mp4"] = out / EXPORT_NAMES["mp4"]
    return written
