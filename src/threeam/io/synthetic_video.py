"""A generated video of any length, made frame by frame on demand (for benchmarks and tests).

`SyntheticVideo` is a lazy sequence of uint8 RGB frames ``(H, W, 3)``: a textured background
(smooth colour gradients plus a fixed pattern) with one disc that moves along a smooth closed
path. Frame ``t`` depends only on ``t`` and the seed, so any frame can be produced at any time
without storing the video; `threeam.io.video.load_video_frames` accepts it like an array.
`write_mp4` encodes it (or any uint8 frames) to a video file with PyAV.
"""
from __future__ import annotations

import math
import os
from typing import Iterable, Optional

import numpy as np

from threeam.errors import InputError


class SyntheticVideo:
    """``num_frames`` generated frames of ``height x width``; ``video[t]`` -> uint8 ``(H, W, 3)``.

    Args:
        num_frames: the length T (>= 1).
        height, width: the frame size.
        seed: the background pattern and the disc's colour and path.
        period: frames per lap of the disc's path.
    """

    def __init__(self, num_frames: int, height: int = 256, width: int = 256, seed: int = 0, period: int = 240):
        if int(num_frames) < 1 or int(height) < 8 or int(width) < 8:
            raise InputError(f"a synthetic video needs >= 1 frame of at least 8x8, got {num_frames} of {height}x{width}")
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.period = max(int(period), 2)
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        self._yy, self._xx = yy, xx
        base = np.stack([
            80 + 60 * np.sin(xx / (11 + 5 * rng.random())),
            90 + 50 * np.cos(yy / (13 + 5 * rng.random())),
            100 + 40 * np.sin((xx + yy) / (17 + 5 * rng.random())),
        ], axis=-1)
        base += rng.integers(0, 24, size=(self.height, self.width, 1))
        self._background = np.clip(base, 0, 255).astype(np.uint8)
        self._colour = np.array([230, 60 + rng.integers(0, 60), 40], dtype=np.uint8)
        self._phase = float(rng.random() * 2 * math.pi)
        self.radius = max(3.0, min(self.height, self.width) / 8)
        self.fps = 30.0

    def __len__(self) -> int:
        return self.num_frames

    def center(self, t: int) -> tuple[float, float]:
        """The disc's centre ``(x, y)`` in pixels on frame t (e.g. to place a click)."""
        a = 2 * math.pi * (t % self.period) / self.period + self._phase
        cx = self.width / 2 + (self.width / 2 - 1.5 * self.radius) * math.cos(a)
        cy = self.height / 2 + (self.height / 2 - 1.5 * self.radius) * math.sin(2 * a) / 1.2
        return cx, cy

    def box(self, t: int) -> list[float]:
        """The disc's bounding box ``[x0, y0, x1, y1]`` on frame t."""
        cx, cy = self.center(t)
        r = self.radius
        return [max(cx - r, 0.0), max(cy - r, 0.0), min(cx + r, self.width - 1.0), min(cy + r, self.height - 1.0)]

    def mask(self, t: int) -> np.ndarray:
        """bool ``(H, W)``: the disc on frame t."""
        cx, cy = self.center(t)
        return (self._xx - cx) ** 2 + (self._yy - cy) ** 2 <= self.radius ** 2

    def __getitem__(self, t: int) -> np.ndarray:
        if not isinstance(t, (int, np.integer)):
            raise TypeError(f"frame indices must be integers, not {type(t).__name__}")
        t = int(t) + (self.num_frames if t < 0 else 0)
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} is out of range (0..{self.num_frames - 1})")
        frame = self._background.copy()
        frame[self.mask(t)] = self._colour
        return frame


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 30.0, codec: Optional[str] = None,
              gop: int = 30) -> str:
    """Encode uint8 ``(H, W, 3)`` frames into a video file (H.264 if available, else MPEG-4)."""
    import av

    path = str(path)
    codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    stream = None
    with av.open(path, mode="w") as out:
        for frame in frames:
            if stream is None:
                stream = out.add_stream(codec, rate=round(fps))
                stream.height, stream.width = int(frame.shape[0]), int(frame.shape[1])
                stream.pix_fmt = "yuv420p"
                stream.options = {"g": str(gop)} if codec == "libx264" else {}
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        if stream is None:
            raise InputError(f"no frames to write to {path}")
        for packet in stream.encode():
            out.mux(packet)
    return path


__all__ = ["SyntheticVideo", "write_mp4"]
