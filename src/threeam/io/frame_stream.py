"""Streaming model inputs: frames decoded and prepared on demand, with read-ahead and a bounded cache.

`StreamingFrames` behaves like the float32 ``(T, 3, S, S)`` tensor of normalised frames that the
predictors index (``frames[t]`` -> ``(3, S, S)`` on the chosen device, ``len(frames) == T``), but
holds only a bounded number of frames:

* ``frames[t]`` returns the cached input of frame t, or decodes and prepares it
  (`threeam.io.frame_prep.prepare_frame`: bit-identical to the official SAM 2 recipe);
* background threads prepare the next ``read_ahead`` frames in the direction of access
  (forward or backward, from the last two frames asked for), so a propagation loop normally
  finds its next frame ready (``workers`` threads for folders and arrays, one for a video file);
* prepared frames live in an LRU cache bounded by ``max_frames`` and ``max_mib``;
* ``frames.raw(t)`` gives the original uint8 RGB frame ``(H, W, 3)`` (read-only), kept in a
  small LRU of its own (``raw_frames``), e.g. for MUSt3R, which works at the original aspect ratio.

Thread safety: any thread may index the frames; each frame is decoded by one thread at a time
(another thread asking for it waits for that result). An error while reading a frame in the
background is raised, as a `VideoError` naming the frame, on the thread that asks for the frame.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from threeam.errors import InputError, VideoError
from threeam.io.frame_prep import frame_array, prepare_frame
from threeam.io.frame_sources import FrameSource


@dataclass
class FrameCacheConfig:
    """How many frames a `StreamingFrames` keeps and prepares ahead.

    max_frames: prepared frames kept (LRU); None: no count limit.
    max_mib: memory for prepared frames in MiB (a 1024 x 1024 frame is 12 MiB); None: no limit.
        The smaller of the two limits applies; it must leave room for one frame.
    read_ahead: frames prepared ahead on a background thread in the direction of access
        (0: no background thread; frames are prepared when asked for). Capped at the cache
        capacity minus one.
    raw_frames: original frames kept for `StreamingFrames.raw` (LRU; 0 keeps none).
    workers: read-ahead threads for sources that can be read in parallel (frames folders,
        arrays; PIL decodes and resizes without holding the GIL). A video file always has one:
        its decoder is sequential.
    """

    max_frames: Optional[int] = 16
    max_mib: Optional[float] = 1024.0
    read_ahead: int = 8
    raw_frames: int = 8
    workers: int = 2

    def __post_init__(self) -> None:
        if self.max_frames is not None and (not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise InputError(f"cache max_frames must be an integer >= 1 or None, got {self.max_frames!r}")
        if self.max_mib is not None and not (isinstance(self.max_mib, (int, float)) and self.max_mib > 0):
            raise InputError(f"cache max_mib must be a number > 0 or None, got {self.max_mib!r}")
        if not isinstance(self.read_ahead, int) or self.read_ahead < 0:
            raise InputError(f"read_ahead must be an integer >= 0, got {self.read_ahead!r}")
        if not isinstance(self.raw_frames, int) or self.raw_frames < 0:
            raise InputError(f"raw_frames must be an integer >= 0, got {self.raw_frames!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise InputError(f"workers must be an integer >= 1, got {self.workers!r}")


class _Engine:
    """The shared state of one `StreamingFrames` and its read-ahead thread.

    The thread holds a reference to the engine only, so dropping the `StreamingFrames` closes it.
    """

    def __init__(self, source: FrameSource, image_size: int, device: torch.device, cfg: FrameCacheConfig):
        self.source = source
        self.image_size = int(image_size)
        self.device = device
        self.cfg = cfg
        self.cond = threading.Condition()
        self.read_lock = None if source.concurrent_reads else threading.Lock()
        self.prepared: "OrderedDict[int, torch.Tensor]" = OrderedDict()
        self.raw: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self.inflight: set[int] = set()
        self.errors: "OrderedDict[int, BaseException]" = OrderedDict()
        self.last: Optional[int] = None
        self.direction = 1
        self.closed = False
        self.timing_version = getattr(source, "timing_version", 0)
        self.stats = {"hits": 0, "misses": 0, "waits": 0, "read_ahead": 0, "decoded": 0, "evicted": 0}
        frame_bytes = 3 * self.image_size * self.image_size * 4
        cap = cfg.max_frames if cfg.max_frames is not None else None
        if cfg.max_mib is not None:
            by_bytes = int(cfg.max_mib * 2**20) // frame_bytes
            if by_bytes < 1:
                raise InputError(f"cache max_mib={cfg.max_mib} cannot hold one {self.image_size}x{self.image_size} frame "
                                 f"({frame_bytes / 2**20:.1f} MiB); raise it or pass None")
            cap = by_bytes if cap is None else min(cap, by_bytes)
        self.capacity = cap  # None: unbounded
        self.read_ahead = cfg.read_ahead if cap is None else min(cfg.read_ahead, max(cap - 1, 0))
        self.threads: list[threading.Thread] = []

    @property
    def num_frames(self) -> int:
        return self.source.num_frames

    # ---------------------------------------------------------------- decoding one frame
    def _decode(self, indices: list[int]) -> dict:
        """Decode and prepare `indices` (increasing), storing each as soon as it is ready;
        returns ``{t: (prepared, raw)}`` for the frames done.

        Every index must be in ``inflight`` (owned by the calling thread); each is released as it
        is stored or fails. A failing frame stores its error and ends the batch.
        """
        pending = list(indices)
        done: dict = {}
        try:
            with torch.inference_mode(False):
                if self.read_lock is not None:
                    self.read_lock.acquire()
                try:
                    for t, frame in self.source.read_many(pending):
                        raw = None
                        if self.cfg.raw_frames > 0:
                            raw = frame_array(frame)
                            if raw.flags.writeable:
                                raw = raw.view()
                                raw.flags.writeable = False
                        with self.cond:
                            img = self.prepared.get(t)
                        new = img is None
                        if new:
                            img = prepare_frame(frame, self.image_size).to(self.device)
                        self._store(t, img if new else None, raw)
                        done[t] = (img, raw if raw is not None else frame_array(frame))
                        pending.remove(t)
                        if self._should_stop(pending):
                            break
                finally:
                    if self.read_lock is not None:
                        self.read_lock.release()
        except Exception as exc:  # stored for the thread that asks for the frame
            if pending:
                t = pending[0]
                err = exc if isinstance(exc, VideoError) else VideoError(
                    f"cannot read {self.source.frame_name(t)}: {type(exc).__name__}: {exc}")
                if err is not exc:
                    err.__cause__ = exc
                with self.cond:
                    self.errors[t] = err
                    while len(self.errors) > 64:
                        self.errors.popitem(last=False)
        finally:
            with self.cond:
                for t in pending:
                    self.inflight.discard(t)
                self.cond.notify_all()
            self._check_timing()
        return done

    def _should_stop(self, pending: list[int]) -> bool:
        """A read-ahead batch stops early once its next frame left the read-ahead window."""
        if not pending or threading.current_thread() not in self.threads:
            return False
        with self.cond:
            if self.closed:
                return True
            window = set(self._window())
            return pending[0] not in window

    def _check_timing(self) -> None:
        """A video file that switched to exact timestamps renumbered its frames: drop the cache."""
        version = getattr(self.source, "timing_version", 0)
        if version != self.timing_version:
            with self.cond:
                self.timing_version = version
                self.prepared.clear()
                self.raw.clear()

    def _store(self, t: int, img: Optional[torch.Tensor], raw: Optional[np.ndarray]) -> None:
        with self.cond:
            if img is not None:
                self.prepared[t] = img
                self.prepared.move_to_end(t)
                self.stats["decoded"] += 1
                if self.capacity is not None:
                    while len(self.prepared) > self.capacity:
                        self.prepared.popitem(last=False)
                        self.stats["evicted"] += 1
            if raw is not None:
                self.raw[t] = raw
                self.raw.move_to_end(t)
                while len(self.raw) > self.cfg.raw_frames:
                    self.raw.popitem(last=False)
            self.inflight.discard(t)
            self.errors.pop(t, None)
            self.cond.notify_all()

    # ---------------------------------------------------------------- the caller's side
    def _note_access(self, t: int) -> None:
        if self.last is not None and t != self.last:
            self.direction = 1 if t > self.last else -1
        self.last = t
        if self.threads:
            self.cond.notify_all()

    def get(self, t: int, want_raw: bool = False):
        """Frame t's prepared input (or, with `want_raw`, its original uint8 frame)."""
        if want_raw and self.cfg.raw_frames == 0:  # raw frames are not kept: read it here
            if self.read_lock is None:
                return frame_array(self.source.read(t))
            with self.read_lock:
                return frame_array(self.source.read(t))
        store = self.raw if want_raw else self.prepared
        with self.cond:
            if self.closed:
                raise VideoError(f"the frames of {self.source.description} were closed")
            if not want_raw:
                self._note_access(t)
            waited = False
            while True:
                if t in store:
                    store.move_to_end(t)
                    self.stats["waits" if waited else "hits"] += 1
                    return store[t]
                err = self.errors.pop(t, None)
                if err is not None:
                    raise err
                if t not in self.inflight:
                    self.inflight.add(t)
                    self.stats["misses"] += 1
                    break
                waited = True
                self.cond.wait()
        done = self._decode([t])
        if t in done:
            return done[t][1 if want_raw else 0]
        with self.cond:
            err = self.errors.pop(t, None)
        raise err if err is not None else VideoError(f"cannot read {self.source.frame_name(t)}")

    # ---------------------------------------------------------------- read-ahead
    def _window(self) -> list[int]:
        """Frames the read-ahead wants (nearest first), given the last frame asked for."""
        if self.last is None or self.read_ahead <= 0:
            return []
        n = self.num_frames
        out = []
        for k in range(1, self.read_ahead + 1):
            i = self.last + self.direction * k
            if 0 <= i < n:
                out.append(i)
        return out

    def _plan(self) -> list[int]:
        """The next frames for the read-ahead thread to prepare (called with the lock held)."""
        missing = [i for i in self._window() if i not in self.prepared and i not in self.inflight
                   and i not in self.errors]
        if not missing:
            return []
        if self.source.concurrent_reads or self.direction > 0:
            return missing[:1] if self.source.concurrent_reads else sorted(missing)
        return sorted(missing)  # backwards in a video file: one seek, then decode forward

    def start(self) -> None:
        if self.read_ahead <= 0 or self.threads:
            return
        n = min(self.cfg.workers, self.read_ahead) if self.source.concurrent_reads else 1
        for i in range(n):
            th = threading.Thread(target=self._run, name=f"threeam-frames-{i}:{self.source.description}", daemon=True)
            self.threads.append(th)
            th.start()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.closed and not (plan := self._plan()):
                    self.cond.wait()
                if self.closed:
                    return
                self.inflight.update(plan)
                self.stats["read_ahead"] += len(plan)
            self._decode(plan)

    def wait_idle(self, timeout: Optional[float]) -> bool:
        """Wait until the read-ahead has nothing left to do; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self.closed or not self.threads
                                      or (not self._plan() and not self.inflight), timeout)

    def close(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        if self.read_lock is not None:
            with self.read_lock:
                self.source.close()
        else:
            self.source.close()
        with self.cond:
            self.prepared.clear()
            self.raw.clear()


class StreamingFrames:
    """The normalised frames of a video, decoded on demand (see the module docstring).

    Args:
        source: a `threeam.io.frame_sources.FrameSource`.
        image_size: the model's square input size S.
        device: where prepared frames are kept (``frames[t]`` is on this device).
        cache: a `FrameCacheConfig` (default: 16 frames / 1 GiB, read-ahead 8 on 2 threads, 8 raw frames).

    Frame 0 is prepared here (it fails early on an unreadable video) and the read-ahead of
    frames 1, 2, ... starts at once.
    ``frames[t]``: float32 ``(3, S, S)`` on ``device``; a slice gives the stacked ``(n, 3, S, S)``.
    ``len(frames)``: T. ``frames.shape``: ``(T, 3, S, S)``. ``frames.raw(t)``: uint8 ``(H, W, 3)``.
    """

    def __init__(self, source: FrameSource, image_size: int, device: torch.device | str = "cpu",
                 cache: Optional[FrameCacheConfig] = None):
        cfg = cache if cache is not None else FrameCacheConfig()
        if not isinstance(cfg, FrameCacheConfig):
            raise InputError(f"cache must be a FrameCacheConfig, got {type(cfg).__name__}")
        self._engine = _Engine(source, image_size, torch.device(device), cfg)
        self._finalizer = weakref.finalize(self, _Engine.close, self._engine)
        self._engine.get(0)
        self._engine.start()

    # ---------------------------------------------------------------- sequence protocol
    def __len__(self) -> int:
        return self._engine.num_frames

    def _index(self, t: Any) -> int:
        if isinstance(t, torch.Tensor) and t.numel() == 1:
            t = int(t.item())
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"frame indices must be integers or slices, not {type(t).__name__}")
        n = len(self)
        t = int(t)
        if t < 0:
            t += n
        if not 0 <= t < n:
            raise IndexError(f"frame {t} is out of range: the video has {n} frames")
        return t

    def __getitem__(self, t: Any) -> torch.Tensor:
        if isinstance(t, slice):
            return torch.stack([self._engine.get(i) for i in range(*t.indices(len(self)))])
        return self._engine.get(self._index(t))

    def __iter__(self):
        for t in range(len(self)):
            yield self[t]

    def raw(self, t: int) -> np.ndarray:
        """The original frame t as read-only uint8 RGB ``(H, W, 3)`` (copy it before modifying)."""
        return self._engine.get(self._index(t), want_raw=True)

    # ---------------------------------------------------------------- tensor-like facts
    @property
    def shape(self) -> torch.Size:
        s = self._engine.image_size
        return torch.Size((len(self), 3, s, s))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return self._engine.device

    @property
    def image_size(self) -> int:
        return self._engine.image_size

    @property
    def video_height(self) -> int:
        """Height of the original frames."""
        return self._engine.source.height

    @property
    def video_width(self) -> int:
        """Width of the original frames."""
        return self._engine.source.width

    @property
    def fps(self) -> Optional[float]:
        return self._engine.source.fps

    @property
    def source(self) -> FrameSource:
        return self._engine.source

    @property
    def capacity(self) -> Optional[int]:
        """How many prepared frames the cache holds at most (None: unbounded)."""
        return self._engine.capacity

    def cache_info(self) -> dict:
        """Counters (``hits``, ``misses`` decoded on the caller's thread, ``waits`` for a frame being
        read ahead, ``read_ahead``, ``decoded``, ``evicted``) and ``cached`` / ``cached_raw`` sizes."""
        e = self._engine
        with e.cond:
            return dict(e.stats, cached=len(e.prepared), cached_raw=len(e.raw), capacity=e.capacity,
                        read_ahead_frames=e.read_ahead)

    def wait_read_ahead(self, timeout: Optional[float] = 30.0) -> bool:
        """Block until the read-ahead window around the last frame asked for is prepared (or
        failed); False if `timeout` seconds passed first. For tests and benchmarks."""
        return self._engine.wait_idle(timeout)

    def close(self) -> None:
        """Stop the read-ahead thread, drop the cache and close the decoder (also done when the
        object is garbage collected)."""
        self._finalizer()

    def __enter__(self) -> "StreamingFrames":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self._engine.image_size
        return (f"StreamingFrames({self._engine.source.description!r}, {len(self)} frames, {s}x{s}, "
                f"device={self.device}, capacity={self.capacity})")


__all__ = ["FrameCacheConfig", "StreamingFrames"]
