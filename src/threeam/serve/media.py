"""Videos for the web app: checked against the limits before decoding, decoded with `threeam.io.video`,
frames served to the page as JPEG.

`open_video` looks at the headers first (frame count from the container's packets, width and
height from the stream or each image's header) so that an upload that would decode into gigabytes
is refused before any frame is decoded. Any decoding failure becomes `threeam.errors.VideoError`
(HTTP 400 with the reason), never a server error.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from threeam.errors import VideoError
from threeam.io.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, list_frame_files, read_video
from threeam.serve.security import TooLarge, check_files_inside

DEFAULT_FPS = 24.0


@dataclass
class VideoData:
    """A decoded video: ``frames`` uint8 RGB ``(T, H, W, 3)``, its ``fps`` and a display ``name``."""

    frames: np.ndarray
    fps: float
    name: str

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


def _clean(message: str, path: Path, label: str) -> str:
    """A decoder's message without the server's own paths (the client sees ``label`` instead)."""
    for p in sorted({str(path), str(path.resolve())}, key=len, reverse=True):
        message = message.replace(p, label)
    return message


def _check_size(w: int, h: int, max_side: int, what: str) -> None:
    if w <= 0 or h <= 0:
        raise VideoError(f"{what} has no valid frame size ({w}x{h})")
    if max(w, h) > max_side:
        raise TooLarge(f"{what} is {w}x{h} pixels; the server allows at most {max_side} pixels a side (--max-side)")


def probe_video_file(path: Path, max_frames: int, max_side: int, label: Optional[str] = None) -> float:
    """Check a video file's size and frame count from its headers and packets (no decoding).

    Returns:
        its frame rate (``DEFAULT_FPS`` when the container does not say).
    Raises:
        VideoError: not a readable video; TooLarge: over ``max_frames`` or ``max_side``.
    """
    import av

    label = label or path.name
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{label}: no video stream in the file")
            stream = container.streams.video[0]
            _check_size(int(stream.codec_context.width or 0), int(stream.codec_context.height or 0), max_side,
                        label)
            rate = stream.average_rate or stream.base_rate
            fps = float(rate) if rate else DEFAULT_FPS
            packets = 0
            for packet in container.demux(stream):
                if packet.size:
                    packets += 1
                    if packets > max_frames:
                        raise TooLarge(f"{label} has more than {max_frames} frames; the server allows at most "
                                       f"{max_frames} (--max-frames)")
    except (VideoError, TooLarge):
        raise
    except Exception as e:  # PyAV raises its own classes for corrupt or unknown files
        reason = getattr(e, "strerror", None) or str(e)
        raise VideoError(f"{label} is not a readable video: {_clean(str(reason), path, label)}") from None
    if packets == 0:
        raise VideoError(f"{label} holds no video frame")
    return fps if 0 < fps < 1000 else DEFAULT_FPS


def probe_frames_folder(folder: Path, max_frames: int, max_side: int, root: Optional[Path],
                        label: Optional[str] = None) -> list[Path]:
    """Check a frames folder: frame count, every image header's size, no link out of ``root``."""
    from PIL import Image

    label = label or folder.name
    try:
        files = list_frame_files(folder)
    except VideoError as e:
        raise VideoError(_clean(str(e), folder, label)) from None
    if len(files) > max_frames:
        raise TooLarge(f"{label} has {len(files)} frames; the server allows at most {max_frames} (--max-frames)")
    if root is not None:
        check_files_inside(files, root)
    for f in files:
        try:
            with Image.open(f) as im:
                w, h = im.size
        except Exception as e:  # PIL raises many classes on corrupt headers
            raise VideoError(f"frame {f.name} is not a readable image: {_clean(str(e), f, f.name)}") from None
        _check_size(w, h, max_side, f"frame {f.name}")
    return files


def open_video(path: Path, max_frames: int, max_side: int, root: Optional[Path] = None,
               name: Optional[str] = None) -> VideoData:
    """Probe and decode a video file or frames folder into a `VideoData`."""
    path = Path(path)
    label = name or path.name
    if path.is_dir():
        probe_frames_folder(path, max_frames, max_side, root, label)
        fps = DEFAULT_FPS
    elif path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            kinds = ", ".join(VIDEO_EXTENSIONS)
            raise VideoError(f"{label}: not a video file (expected one of {kinds}, or a folder of "
                             f"{'/'.join(IMAGE_EXTENSIONS)} frames)")
        fps = probe_video_file(path, max_frames, max_side, label)
    else:
        raise VideoError(f"{label}: not a file or folder")
    try:
        frames = read_video(path)
    except VideoError as e:
        raise VideoError(_clean(str(e), path, label)) from None
    except Exception as e:  # anything a decoder may raise on a crafted file
        raise VideoError(f"{label}: cannot decode: {_clean(str(e), path, label)}") from None
    if frames.shape[0] > max_frames:
        raise TooLarge(f"{label} has {frames.shape[0]} frames; the server allows at most {max_frames}")
    return VideoData(frames=frames, fps=fps, name=label)


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """One uint8 RGB ``(H, W, 3)`` frame as JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()
