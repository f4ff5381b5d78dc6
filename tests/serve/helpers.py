"""Generated videos, a running server and a predictor test double for the web-app tests.

`ColourRegionPredictor` wraps the real (tiny, random-weight) predictor: every call still runs the
real model on the real session state, but the masks it hands back are the region of the clicked
colour (prompted frames: the region under the positive click, given to the real model as a mask
prompt; propagated frames: the pixels of that colour on the frame). Random weights give arbitrary
masks, so this is what lets the browser tests check that the page shows the right mask on the right
frame. It is used ONLY by the browser tests (tests about the page's plumbing); the HTTP API tests
use the real tiny predictor and mask prompts as their deterministic mask source.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

T, H, W = 8, 64, 96
SQUARE = (220, 40, 40)
DISC = (40, 90, 230)
BACKGROUND = (30, 110, 60)
YELLOW = (235, 200, 40)
STEP = 6  # pixels the square moves per frame


def square_frames(n: int = T) -> tuple[np.ndarray, np.ndarray]:
    """``(n, H, W, 3)`` uint8 frames: a red square moving right on green past a still yellow disc
    (centre (82, 52), radius 9); and the square's masks ``(n, H, W)`` bool."""
    frames = np.empty((n, H, W, 3), np.uint8)
    masks = np.zeros((n, H, W), bool)
    frames[:] = BACKGROUND
    yy, xx = np.mgrid[:H, :W]
    frames[:, (xx - 82) ** 2 + (yy - 52) ** 2 < 81] = YELLOW
    for t in range(n):
        x0 = 8 + STEP * t
        masks[t, 18:42, x0:x0 + 24] = True
        frames[t][masks[t]] = SQUARE
    return frames, masks


def disc_frames(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A blue disc moving down: a second, different video."""
    yy, xx = np.mgrid[:H, :W]
    frames = np.empty((n, H, W, 3), np.uint8)
    masks = np.zeros((n, H, W), bool)
    frames[:] = (200, 200, 200)
    for t in range(n):
        masks[t] = (xx - 48) ** 2 + (yy - 14 - 5 * t) ** 2 < 100
        frames[t][masks[t]] = DISC
    return frames, masks


def write_frames(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    return folder


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def tiny_predictor(corrections_as_cond: bool = False):
    """The bundled tiny SAM 2 (debug config) with deterministic random weights (``corrections_as_cond``:
    the option `threeam serve` turns on, see `build_serve_predictor`)."""
    from threeam.models.three_am import debug_sam2_config
    from threeam.predictor.build import build_predictor

    return build_predictor("sam2", preset=debug_sam2_config(), random_weights=True, seed=0, progress=False,
                           add_all_frames_to_correct_as_cond=corrections_as_cond)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float = 30.0, every: float = 0.02) -> bool:
    """Poll ``condition()`` until it holds (True) or ``timeout`` seconds pass (False): waiting for an
    event that happens asynchronously, not a timing check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())


class ColourRegionPredictor:
    """The test double described in the module docstring (delegates everything else to ``inner``)."""

    def __init__(self, inner):
        self.inner = inner
        self._sessions: dict[int, dict] = {}  # id(state) -> {"frames": (T, H, W, 3), "colours": {obj_id: rgb}}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def init_state(self, video, **kwargs):
        from threeam.io.video import read_video

        state = self.inner.init_state(video, **kwargs)
        # the test videos are small: the double keeps them whole (the app itself streams them)
        self._sessions[id(state)] = {"frames": read_video(video), "colours": {}}
        return state

    @staticmethod
    def _region(frame: np.ndarray, colour: np.ndarray) -> np.ndarray:
        return (np.abs(frame.astype(int) - colour.astype(int)).sum(-1) < 60)

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, clear_old_points=True,
                              normalize_coords=True, box=None):
        self.inner.add_new_points_or_box(state, frame_idx, obj_id, points=points, labels=labels,
                                         clear_old_points=clear_old_points, normalize_coords=normalize_coords, box=box)
        frame = self._sessions[id(state)]["frames"][frame_idx]
        colours = self._sessions[id(state)]["colours"]
        pos = [p for p, lab in zip(points or [], labels or []) if lab == 1]
        if pos or box is not None:
            x, y = pos[0] if pos else ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            colours[obj_id] = frame[min(int(y), H - 1), min(int(x), W - 1)]
        if obj_id in colours:
            mask = self._region(frame, colours[obj_id])
        else:
            mask = np.zeros(frame.shape[:2], bool)
        for (nx, ny), lab in zip(points or [], labels or []):
            if lab == 0 and mask[min(int(ny), H - 1), min(int(nx), W - 1)]:
                mask[:] = False  # a negative click on the region removes it
        return self.inner.add_new_mask(state, frame_idx, obj_id, mask)

    def propagate_in_video(self, state, start_frame_idx=None, max_frame_num_to_track=None, reverse=False,
                           progress=None):
        frames = self._sessions[id(state)]["frames"]
        colours = self._sessions[id(state)]["colours"]
        for t, ids, logits in self.inner.propagate_in_video(state, start_frame_idx, max_frame_num_to_track,
                                                            reverse, progress=False):
            fake = torch.full_like(logits, -10.0)
            for i, oid in enumerate(ids):
                idx = state.obj_id_to_idx[oid]
                if t in state.mask_inputs_per_obj[idx]:  # a prompted frame: the prompt's own mask
                    fake[i] = logits[i]
                elif oid in colours:
                    fake[i, 0][torch.from_numpy(self._region(frames[t], colours[oid]))] = 10.0
            yield t, ids, fake


class ServerThread:
    """uvicorn serving ``asgi`` on a free loopback port in a background thread (``with`` block)."""

    def __init__(self, asgi):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)
