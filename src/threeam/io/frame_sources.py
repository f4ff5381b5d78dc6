"""Frame decoders: one original frame at a time, from a frames folder, a video file or an array.

Every source gives ``num_frames``, the frame size ``(height, width)``, ``fps`` (None where the
source has no frame rate) and ``read(t)``: frame ``t`` as uint8 RGB, either a numpy ``(H, W, 3)``
array or a PIL image of mode ``"RGB"`` (see `threeam.io.frame_prep.frame_array`). Nothing is
decoded ahead of time except frame 0, which fixes the frame size; `threeam.io.frame_stream`
adds caching and read-ahead on top.

* `FolderSource`: ``.jpg``/``.jpeg``/``.png`` files ordered by the number in their names.
  Reads are independent, so several threads may read at once.
* `VideoFileSource`: a video file (or its bytes) decoded with PyAV. Sequential reads decode the
  next frame; a jump seeks to the keyframe before the frame and decodes forward. The frame count
  and rate come from the container and are verified (see the class).
* `ArraySource`: a uint8 ``(T, H, W, 3)`` numpy array or torch tensor, or any sequence of
  uint8 ``(H, W, 3)`` frames (``len()`` and ``[t]``, e.g. frames synthesised on the fly).

Every failure raises `threeam.errors.VideoError` naming the file, the frame and what is wrong.
"""
from __future__ import annotations

import bisect
import io
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from threeam.errors import VideoError
from threeam.io.frame_prep import frame_hw, pil_to_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")

_NUMBER = re.compile(r"\d+")


# --------------------------------------------------------------------------- folders
def _frame_sort_key(name: str) -> tuple:
    """Order frame files by the last number in their stem; names without a number go last."""
    numbers = _NUMBER.findall(os.path.splitext(name)[0])
    if numbers:
        return (0, int(numbers[-1]), name)
    return (1, 0, name)


def _frame_names(folder: Path) -> list[str]:
    if not folder.exists():
        raise VideoError(f"video path does not exist: {folder}")
    if not folder.is_dir():
        raise VideoError(f"expected a frames folder, got a file: {folder}")
    with os.scandir(folder) as entries:
        names = [e.name for e in entries
                 if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file()]
    if not names:
        raise VideoError(f"no .jpg/.jpeg/.png frames found in folder {folder}")
    names.sort(key=_frame_sort_key)
    return names


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a frames folder, ordered by the number in their names.

    Raises `VideoError` if the folder is missing or holds no jpg/jpeg/png file.
    """
    folder = Path(folder)
    return [folder / n for n in _frame_names(folder)]


def read_image(path: str | os.PathLike):
    """One frame file as a PIL image of mode ``"RGB"`` (16-bit grayscale scaled to 8 bits, see
    `threeam.io.frame_prep.pil_to_rgb`); a missing or corrupt file raises `VideoError` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return pil_to_rgb(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise VideoError(f"cannot read frame {path}: {exc}") from None


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """Read one frame file as a writable uint8 RGB array ``(H, W, 3)``; errors as `read_image`."""
    img = read_image(path)
    return np.asarray(img, dtype=np.uint8).copy()


class FrameSource:
    """Base class: decodes the original frames of one video (see the module docstring).

    Attributes: ``num_frames``, ``height``, ``width``, ``fps`` (float or None), ``description``
    (where the frames come from), ``concurrent_reads`` (whether `read` may run on several
    threads at once).
    """

    num_frames: int
    height: int
    width: int
    fps: Optional[float] = None
    description: str = ""
    concurrent_reads: bool = True

    def __len__(self) -> int:
        return self.num_frames

    def frame_name(self, t: int) -> str:
        """How frame `t` is named in error messages."""
        return f"frame {t} of {self.description}"

    def read(self, t: int):
        """Frame `t` as uint8 RGB (numpy ``(H, W, 3)`` or PIL ``"RGB"`` image)."""
        raise NotImplementedError

    def read_many(self, indices: Iterable[int]) -> Iterator[tuple[int, Any]]:
        """``(t, frame)`` for each of `indices` (in increasing order); sources that decode in one pass override it."""
        for t in sorted(indices):
            yield t, self.read(t)

    def close(self) -> None:
        """Release files and decoders (reading afterwards is an error or reopens)."""

    def _check_size(self, t: int, frame) -> None:
        hw = frame_hw(frame)
        if hw != (self.height, self.width):
            raise VideoError(
                f"frames have different sizes: {self.frame_name(0)} is {self.height}x{self.width} (HxW) but "
                f"{self.frame_name(t)} is {hw[0]}x{hw[1]}"
            )


class FolderSource(FrameSource):
    """A frames folder, read file by file.

    Args:
        folder: the folder (its ``.jpg``/``.jpeg``/``.png`` files, ordered by the number in the names).
        check_all_frames: also read every file's header now, so that a corrupt file or a frame
            of another size is reported before tracking starts (costs a few milliseconds per
            hundred files); otherwise such a frame raises when it is read.
    """

    concurrent_reads = True

    def __init__(self, folder: str | os.PathLike, check_all_frames: bool = False):
        self.folder = str(folder)
        self.files = [os.path.join(self.folder, n) for n in _frame_names(Path(folder))]
        self.description = self.folder
        self.num_frames = len(self.files)
        self.fps = None
        first = read_image(self.files[0])
        self.height, self.width = frame_hw(first)
        self._first = first
        if check_all_frames:
            self._check_headers()

    def frame_name(self, t: int) -> str:
        return self.files[t]

    def _check_headers(self) -> None:
        from PIL import Image

        for path in self.files[1:]:
            try:
                with Image.open(path) as img:
                    w, h = img.size
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise VideoError(f"cannot read frame {path}: {exc}") from None
            if (h, w) != (self.height, self.width):
                raise VideoError(
                    f"frames have different sizes: {self.files[0]} is {self.height}x{self.width} (HxW) but "
                    f"{path} is {h}x{w}"
                )

    def read(self, t: int):
        if t == 0 and self._first is not None:
            return self._first
        img = read_image(self.files[t])
        self._check_size(t, img)
        return img

    def close(self) -> None:
        self._first = None


# --------------------------------------------------------------------------- arrays
class ArraySource(FrameSource):
    """In-memory frames: a uint8 ``(T, H, W, 3)`` numpy array / torch tensor, or a sequence of
    uint8 ``(H, W, 3)`` frames (anything with ``len()`` and ``[t]``, checked frame by frame)."""

    concurrent_reads = True

    def __init__(self, frames: Any, description: Optional[str] = None):
        if isinstance(frames, torch.Tensor):
            if frames.dtype != torch.uint8:
                raise VideoError(f"a video tensor must be uint8 (T, H, W, 3), got dtype {frames.dtype}")
            frames = frames.detach()
            if frames.device.type == "cpu":
                frames = frames.numpy()
        elif isinstance(frames, np.ndarray):
            if frames.dtype != np.uint8:
                raise VideoError(f"a video array must be uint8 (T, H, W, 3), got dtype {frames.dtype}")
        self._frames = frames
        self._is_array = isinstance(frames, (np.ndarray, torch.Tensor))
        if self._is_array:
            shape = tuple(frames.shape)
            if len(shape) != 4 or shape[-1] != 3:
                raise VideoError(f"a video array must have shape (T, H, W, 3), got {shape}")
            if shape[0] == 0 or shape[1] == 0 or shape[2] == 0:
                raise VideoError(f"a video array must hold at least one non-empty frame, got shape {shape}")
            self.description = description or f"array {shape}"
        else:
            try:
                n = len(frames)
            except TypeError:
                raise VideoError(f"unsupported video input of type {type(frames).__name__}") from None
            if n == 0:
                raise VideoError("a video sequence must hold at least one frame, got an empty one")
            self.description = description or f"{type(frames).__name__} of {n} frames"
        self.num_frames = int(len(frames))
        self.fps = getattr(frames, "fps", None) if not self._is_array else None
        first = self._fetch(0)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def frame_name(self, t: int) -> str:
        return f"frame {t} of the {self.description}"

    def _fetch(self, t: int) -> np.ndarray:
        if self._is_array:
            frame = self._frames[t]
            if isinstance(frame, torch.Tensor):
                frame = frame.cpu().numpy()
            return frame
        try:
            frame = self._frames[t]
        except Exception as exc:  # any error of a user-provided sequence: name the frame
            raise VideoError(f"cannot get {self.frame_name(t)}: {type(exc).__name__}: {exc}") from exc
        if isinstance(frame, torch.Tensor):
            frame = frame.detach().cpu().numpy()
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3 or 0 in frame.shape:
            raise VideoError(f"{self.frame_name(t)} must be a non-empty uint8 (H, W, 3) array, got "
                             f"{frame.dtype} {tuple(frame.shape)}")
        return frame

    def read(self, t: int) -> np.ndarray:
        frame = self._fetch(t)
        if not self._is_array:
            self._check_size(t, frame)
        return frame


# --------------------------------------------------------------------------- video files
def _av_errors() -> tuple:
    import av

    return (av.error.FFmpegError, OSError, ValueError, EOFError)


class VideoFileSource(FrameSource):
    """A video file (path, or the file's bytes) decoded with PyAV, frame by frame.

    Frame ``t`` is the t-th frame the decoder outputs (presentation order), exactly as decoding
    the whole file from the start would number it.

    * Reading the frame after the last one read decodes one frame (the sequential fast path);
      a short jump forward decodes forward; any other jump seeks to the keyframe at or before the
      frame's timestamp and decodes forward from there.
    * Numbering: the timestamp step between the first two frames gives every frame's
      constant-rate timestamp; each decoded frame's timestamp must be an exact multiple of the
      step from frame 0 and match the frame count so far. A file whose timestamps do not
      (variable frame rate, gaps, jittery millisecond timestamps) switches to an exact index of
      presentation timestamps read from the packets (one pass over the file, no decoding).
    * Frame count: the container's frame count (or, where it has none, its duration divided by
      the step) is checked by decoding from the keyframe before the last frame to the end, so
      ``num_frames`` is the number of frames the decoder really gives; a count that disagrees
      with the container's switches to the exact index. The rate (``fps``) is the container's.

    Args:
        path: the video file, or its bytes.
        description: how the video is named in messages (default: the path).
        exact_index: build the exact timestamp index when opening (one demuxing pass over the
            file) instead of relying on the constant frame rate; use it for variable-frame-rate
            files whose irregularity only starts late in the file.
    """

    concurrent_reads = False

    def __init__(self, path: str | os.PathLike | bytes, description: Optional[str] = None,
                 exact_index: bool = False):
        self._bytes = path if isinstance(path, (bytes, bytearray, memoryview)) else None
        if self._bytes is None:
            path = Path(path)
            if not path.is_file():
                raise VideoError(f"video path does not exist: {path}")
        self._path = path
        self.description = description or (f"video bytes ({len(self._bytes)} bytes)" if self._bytes is not None
                                            else str(path))
        self._container = self._open()
        streams = self._container.streams.video
        if not streams:
            self._container.close()
            raise VideoError(f"no video stream in {self.description}")
        self._stream = streams[0]
        self._stream.thread_type = "AUTO"
        self._tb = self._stream.time_base
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._step: Optional[int] = None  # timestamp units between frames (constant-rate numbering)
        self._frame_pts: Optional[list[int]] = None  # exact timestamps per frame (irregular timing)
        self._sequential_only = False  # no usable timestamps: frames are counted from the start
        self._iter = None
        self._next: Optional[int] = None  # index of the frame the decoder gives next (None: unknown)
        self._gop = 16
        self._last_key: Optional[int] = None
        self._pts0 = 0
        self.timing_version = 0  # bumped when the numbering switches to exact timestamps
        try:
            self._init_decoding(exact_index)
        except BaseException:
            self.close()
            raise

    def _init_decoding(self, exact_index: bool) -> None:
        """Decode frames 0 and 1 (size, timestamp step), then count and verify the frames."""
        self._restart()
        first = self._decode_next()
        if first is None:
            raise VideoError(f"video file {self.description} holds no decodable frame")
        self.height, self.width = int(first.height), int(first.width)
        self._pts0 = first.pts if first.pts is not None else 0
        self._held: dict[int, np.ndarray] = {0: self._to_rgb(0, first)}
        self._next = 1
        second = self._decode_next()
        if second is not None:
            self._held[1] = self._to_rgb(1, second)
            self._next = 2
            if first.pts is not None and second.pts is not None and second.pts > first.pts:
                self._step = int(second.pts - first.pts)
        if exact_index or first.pts is None or (self._step is None and second is not None):
            self._build_index()
        if self.fps is None and self._step is not None and self._tb:
            self.fps = float(1 / (self._step * self._tb))
        self.num_frames = 1 if second is None and not self._sequential_only and self._frame_pts is None \
            else self._count_frames()

    # ---------------------------------------------------------------- opening and timing
    def _open(self):
        import av

        try:
            if self._bytes is not None:
                return av.open(io.BytesIO(bytes(self._bytes)))
            return av.open(str(self._path))
        except _av_errors() as exc:
            raise VideoError(f"cannot open video file {self.description}: {exc}") from None

    def _pts_of(self, t: int) -> int:
        if self._frame_pts is not None:
            return self._frame_pts[t]
        return int(self._pts0 + t * (self._step or 1))

    def _index_of(self, frame) -> Optional[int]:
        """The frame number of a decoded frame from its timestamp; None if it has none."""
        if frame.pts is None:
            return None
        if self._frame_pts is not None:
            i = bisect.bisect_left(self._frame_pts, frame.pts)
            return min(i, len(self._frame_pts) - 1)
        d = int(frame.pts) - int(self._pts0)
        if self._step is None or d < 0 or d % self._step:
            raise _Irregular()
        return d // self._step

    def _build_index(self) -> None:
        """Switch to exact per-frame timestamps from one demuxing pass (no decoding)."""
        if self._frame_pts is not None or self._sequential_only:
            return
        pts: list[int] = []
        missing = False
        container = self._open()
        try:
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0 or getattr(packet, "is_discard", False):
                    continue
                if packet.pts is None:
                    missing = True
                    break
                pts.append(int(packet.pts))
        except _av_errors() as exc:
            raise VideoError(f"cannot read the packets of video file {self.description}: {exc}") from None
        finally:
            container.close()
        if missing or not pts:
            self._sequential_only = True
            return
        self._frame_pts = sorted(pts)

    def _count_frames(self) -> int:
        if self._sequential_only:
            return self._count_by_decoding()
        if self._frame_pts is not None:
            return len(self._frame_pts)
        hint = int(self._stream.frames or 0)
        if hint <= 0:
            duration = None
            if self._stream.duration:
                duration = Fraction(self._stream.duration) * self._tb
            elif self._container.duration:
                duration = Fraction(self._container.duration, 1_000_000)
            if duration is None or not self._tb:
                self._build_index()
                return self._count_frames()
            hint = max(1, round(duration / (self._step * self._tb)))
        try:
            last = self._last_index_from(hint - 1)
        except _Irregular:
            self._build_index()
            return self._count_frames()
        if last is None or (self._stream.frames and last + 1 != int(self._stream.frames)):
            # no frame decoded at the end, or the container counts a different number of frames
            # than the constant rate gives (a gap or a rate change somewhere): number exactly
            self._build_index()
            return self._count_frames()
        return last + 1

    def _last_index_from(self, target: int) -> Optional[int]:
        """Decode from the keyframe before frame `target` to the end (on a second decoder);
        the number of the last frame, checking that timestamps advance one frame at a time."""
        container = self._open()
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            container.seek(max(int(self._pts_of(max(target, 0))), int(self._pts0)), stream=stream,
                           backward=True, any_frame=False)
            last = None
            for frame in container.decode(stream):
                idx = self._index_of(frame)
                if idx is None:
                    raise _Irregular()
                if last is not None and idx != last + 1:
                    raise _Irregular()
                last = idx
            return last
        except _av_errors() as exc:
            raise VideoError(f"cannot decode the end of video file {self.description}: {exc}") from None
        finally:
            container.close()

    def _count_by_decoding(self) -> int:
        container = self._open()
        n = 0
        try:
            for _ in container.decode(container.streams.video[0]):
                n += 1
        except _av_errors() as exc:
            raise VideoError(f"cannot decode video file {self.description} (after {n} frames): {exc}") from None
        finally:
            container.close()
        if n == 0:
            raise VideoError(f"video file {self.description} holds no decodable frame")
        return n

    # ---------------------------------------------------------------- decoding
    def _restart(self) -> None:
        """Back to the first frame (a fresh decoder on the reopened file: no seek to trust)."""
        if self._iter is not None:
            self._container.close()
            self._container = self._open()
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
        self._iter = self._container.decode(self._stream)
        self._next = 0

    def _seek(self, t: int) -> None:
        try:
            self._container.seek(int(self._pts_of(t)), stream=self._stream, backward=True, any_frame=False)
        except _av_errors() as exc:
            raise VideoError(f"cannot seek to frame {t} in video file {self.description}: {exc}") from None
        self._iter = self._container.decode(self._stream)
        self._next = None

    def _decode_next(self):
        """The decoder's next frame (None at the end); keeps track of its number."""
        try:
            frame = next(self._iter)
        except StopIteration:
            return None
        except _av_errors() as exc:
            where = f"frame {self._next}" if self._next is not None else "a frame"
            raise VideoError(f"cannot decode {where} of video file {self.description}: {exc}") from None
        return frame

    def _number(self, frame) -> int:
        """The number of a decoded frame. A timestamp that does not fit the constant rate (or
        the count so far) switches to the exact index of packet timestamps."""
        counted = self._next
        if not self._sequential_only:
            try:
                idx = self._index_of(frame)
            except _Irregular:
                idx = None
            if idx is not None and (counted is None or idx == counted or self._frame_pts is not None):
                return idx
            self._switch_to_index()
            if not self._sequential_only:
                idx = self._index_of(frame)
                if idx is not None:
                    return idx
        if counted is None:
            raise VideoError(f"lost the frame position while decoding {self.description} (no usable timestamps)")
        return counted

    def _switch_to_index(self) -> None:
        """Timing surprise after opening: use exact timestamps from now on (and say so if the
        frame count changes, since frames were numbered by the constant rate until here)."""
        before = getattr(self, "num_frames", None)
        self._build_index()
        self.timing_version += 1
        if before is None:
            return
        after = len(self._frame_pts) if self._frame_pts is not None else before
        if after != before:
            import warnings

            warnings.warn(f"{self.description}: timestamps do not follow the frame rate; frames are numbered "
                          f"by their timestamps from now on and the video has {after} frames, not {before}. "
                          "Open it with VideoFileSource(path, exact_index=True) to number frames exactly "
                          "from the start.", stacklevel=3)
            self.num_frames = after

    def _to_rgb(self, t: int, frame) -> np.ndarray:
        try:
            rgb = frame.to_ndarray(format="rgb24")
        except _av_errors() as exc:
            raise VideoError(f"cannot convert {self.frame_name(t)} to RGB: {exc}") from None
        return rgb

    def frame_name(self, t: int) -> str:
        return f"frame {t} of video file {self.description}"

    def read(self, t: int) -> np.ndarray:
        if not 0 <= t < self.num_frames:
            raise VideoError(f"{self.frame_name(t)} does not exist: the video has {self.num_frames} frames")
        if t in self._held:
            return self._held[t]
        if self._iter is None:  # closed: reopen
            self._container = self._open()
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._restart()
        if self._sequential_only:
            if self._next is None or t < self._next:
                self._restart()
        elif self._next is None or not 0 <= t - self._next <= max(32, 2 * self._gop):
            self._seek(t)
        restarted = False
        while True:
            frame = self._decode_next()
            if frame is None:
                raise VideoError(f"cannot decode {self.frame_name(t)}: the decoder ended before it "
                                 f"(the container promised {self.num_frames} frames)")
            idx = self._number(frame)
            self._next = idx + 1
            if frame.key_frame:
                if self._last_key is not None and idx > self._last_key:
                    self._gop = max(self._gop, idx - self._last_key)
                self._last_key = idx
            if idx < t:
                continue
            if idx > t:  # the seek landed after the frame: decode from the start instead
                if restarted:
                    raise VideoError(f"cannot find {self.frame_name(t)}: decoding went from frame {idx - 1} to "
                                     f"{idx}")
                restarted = True
                self._restart()
                continue
            rgb = self._to_rgb(t, frame)
            self._check_size(t, rgb)
            self._held.clear()
            return rgb

    def read_many(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
        for t in sorted(indices):  # one seek, then the sequential fast path
            yield t, self.read(t)

    def close(self) -> None:
        if self._iter is not None or getattr(self, "_container", None) is not None:
            try:
                self._container.close()
            except Exception:  # closing a broken container must not hide the real error
                pass
        self._iter = None


class _Irregular(Exception):
    """Timestamps that do not follow the constant frame rate."""


# --------------------------------------------------------------------------- choosing a source
def open_source(source: Any, *, check_all_frames: bool = False) -> FrameSource:
    """The `FrameSource` for a frames folder, a video file (path or bytes), or in-memory frames."""
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return VideoFileSource(source)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return ArraySource(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return FolderSource(path, check_all_frames=check_all_frames)
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            return VideoFileSource(path)
        if not path.exists():
            raise VideoError(f"video path does not exist: {path}")
        raise VideoError(f"unsupported video input {path}: expected a frames folder or one of {VIDEO_EXTENSIONS}")
    if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        return ArraySource(source)
    raise VideoError(
        f"unsupported video input of type {type(source).__name__}: expected a frames folder, a video file "
        "path (or its bytes), a uint8 array/tensor (T, H, W, 3), or a sequence of uint8 (H, W, 3) frames"
    )


__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "FrameSource", "FolderSource", "ArraySource",
           "VideoFileSource", "list_frame_files", "read_image", "read_image_file", "open_source"]
