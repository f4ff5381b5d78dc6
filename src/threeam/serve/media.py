"""Videos for the web app: checked against the limits, then read frame by frame, never decoded whole.

`open_video` looks at the headers first (frame count from the container's packets, width and
height from the stream or each image's header) so that an upload over the limits is refused
before any frame is decoded; a frames folder's files are then each read once
(`verify_frame_data`: PNG CRCs, JPEGs decoded at 1/8 size) so a damaged frame is refused at open.
It then opens a streaming `threeam.io.frame_sources.FrameSource` for the frames the page shows and the overlay export uses: a session holds a few decoded frames
(`VideoData.CACHE_FRAMES`), not the video (1000 frames of 4096 x 4096 would be 47 GiB). Any
decoding failure becomes `threeam.errors.VideoError` (HTTP 400 with the reason), never a server
error.
"""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from threeam.errors import VideoError
from threeam.io.frame_prep import frame_array
from threeam.io.frame_sources import FrameSource, open_source
from threeam.io.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, list_frame_files
from threeam.serve.security import TooLarge, check_files_inside

DEFAULT_FPS = 24.0


class VideoData:
    """One opened video: its frame source (read on demand), ``fps``, display ``name`` and ``path``.

    ``frame(t)`` gives frame t as uint8 RGB ``(H, W, 3)`` (read-only; the last `CACHE_FRAMES`
    frames read are kept). Reads are serialised by a lock (a video file's decoder is sequential;
    the page may ask for several frames at once). The predictor opens its own stream of ``path``.
    """

    CACHE_FRAMES = 4

    def __init__(self, source: FrameSource, fps: float, name: str, path: Optional[Path] = None):
        self.source = source
        self.fps = fps
        self.name = name
        self.path = path
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._num_frames, self._height, self._width = int(source.num_frames), int(source.height), int(source.width)
        self.closed = False

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def height(self) -> int:
        return self._height

    @property
    def width(self) -> int:
        return self._width

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as uint8 RGB ``(H, W, 3)``, read-only. Raises `VideoError` naming the frame."""
        with self._lock:
            if self.closed:
                raise VideoError(f"{self.name} is closed")
            cached = self._cache.get(t)
            if cached is not None:
                self._cache.move_to_end(t)
                return cached
            try:
                arr = np.array(frame_array(self.source.read(int(t))), dtype=np.uint8, copy=True)
            except VideoError as e:
                raise VideoError(_clean(str(e), Path(str(self.path or self.name)), self.name)) from None
            except Exception as e:  # anything a decoder may raise on a crafted file
                raise VideoError(f"{self.name}: cannot decode frame {t}: {e.__class__.__name__}") from None
            if arr.shape != (self._height, self._width, 3):
                raise VideoError(f"{self.name}: frame {t} is {arr.shape[1]}x{arr.shape[0]}, "
                                 f"not {self._width}x{self._height} like frame 0")
            arr.setflags(write=False)
            self._cache[t] = arr
            while len(self._cache) > self.CACHE_FRAMES:
                self._cache.popitem(last=False)
            return arr

    def frames(self, indices: Iterable[int]) -> Iterator[np.ndarray]:
        """The frames of ``indices`` one at a time (for writers that stream)."""
        for t in indices:
            yield self.frame(t)

    def close(self) -> None:
        """Drop the cached frames and close the decoder (idempotent)."""
        with self._lock:
            self.closed = True
            self._cache.clear()
            self.source.close()


def clean_message(message: str, path: Path, label: str) -> str:
    """``message`` with the server path ``path`` (as given and resolved) replaced by ``label``, the
    name the client knows it by (a decoder's or the predictor's message must not show server paths)."""
    path = Path(path)
    for p in sorted({str(path), str(path.resolve())}, key=len, reverse=True):
        message = message.replace(p, label)
    return message


_clean = clean_message


def verify_frame_data(im, what: str) -> None:
    """Read an opened frame image's whole body once, cheaply, so a file whose header is valid but
    whose data is cut off or damaged is refused at open rather than when the predictor reaches it:
    a PNG's chunks are read and their CRCs checked (``Image.verify``, no decompression); a JPEG is
    decoded at 1/8 size (libjpeg's DCT scaling still reads every entropy-coded byte); any other
    format is decoded. Raises `VideoError` naming ``what``."""
    try:
        if im.format == "PNG":
            im.verify()
        else:
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except Exception as e:  # PIL raises many classes on damaged data
        raise VideoError(f"{what} is not a readable image: {e.__class__.__name__}: {e}") from None


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
    """Check a frames folder: frame count, every image header's size, no link out of ``root``, and
    every frame's data once (`verify_frame_data`; one file open at a time)."""
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
    for f in files:  # every header is within the limits: now each frame's data, once
        try:
            with Image.open(f) as im:
                verify_frame_data(im, f"frame {f.name}")
        except VideoError as e:
            raise VideoError(_clean(str(e), f, f.name)) from None
        except Exception as e:  # the file changed since its header was read
            raise VideoError(f"frame {f.name} is not a readable image: {_clean(str(e), f, f.name)}") from None
    return files


def open_video(path: Path, max_frames: int, max_side: int, root: Optional[Path] = None,
               name: Optional[str] = None) -> VideoData:
    """Probe a video file or frames folder against the limits and open it for streaming reads.

    Only frame 0 (and, for a video file, the few frames that verify its frame count) are decoded
    here; every other frame is decoded when it is asked for. A frames folder's files are each
    checked once, one at a time (`verify_frame_data`), so a damaged frame is refused here.
    """
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
        source = open_source(path)
    except VideoError as e:
        raise VideoError(_clean(str(e), path, label)) from None
    except Exception as e:  # anything a decoder may raise on a crafted file
        raise VideoError(f"{label}: cannot decode: {_clean(str(e), path, label)}") from None
    if source.num_frames > max_frames:
        source.close()
        raise TooLarge(f"{label} has {source.num_frames} frames; the server allows at most {max_frames}")
    try:
        _check_size(int(source.width), int(source.height), max_side, label)
    except BaseException:
        source.close()
        raise
    return VideoData(source, fps=fps, name=label, path=path)


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """One uint8 RGB ``(H, W, 3)`` frame as JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()
