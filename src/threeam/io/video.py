"""Video input for the predictors: frames folders, video files and in-memory arrays.

A video reaches the model as a float32 tensor ``(T, 3, S, S)``: every frame resized to the model's
square input size ``S`` (bicubic, as the official SAM 2 frame loader does with PIL), scaled to
[0, 1] and normalised with the ImageNet mean and std. The original frame size ``(H, W)`` is kept
beside it: prompts are given in, and outputs are resized back to, that frame.

Accepted sources (`load_video_frames`):

* a folder of ``.jpg``/``.jpeg``/``.png`` frames, ordered by the number in each file name
  (``00007.jpg``, ``frame_12.png``; names without a number come last, by name);
* a video file (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``) decoded with PyAV;
* a numpy array or torch tensor ``(T, H, W, 3)`` of uint8 RGB frames.

Frames that already are ``S x S`` are not resized. Together with ``video_size`` this lets a caller
hand over frames that were prepared at model resolution and still declare the size of the
original video (the golden parity data does exactly that).

Every failure (missing path, empty folder, unreadable or corrupt frame, frames of different sizes,
wrong array shape or dtype) raises `threeam.errors.VideoError` with a message naming the culprit.
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from threeam.errors import VideoError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)

VideoSource = Union[str, os.PathLike, np.ndarray, torch.Tensor]

_NUMBER = re.compile(r"\d+")


def _frame_sort_key(name: str) -> tuple:
    """Order frame files by the last number in their stem; names without a number go last."""
    numbers = _NUMBER.findall(Path(name).stem)
    if numbers:
        return (0, int(numbers[-1]), name)
    return (1, 0, name)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of a frames folder, ordered by the number in their names.

    Raises `VideoError` if the folder is missing or holds no jpg/jpeg/png file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise VideoError(f"video path does not exist: {folder}")
    if not folder.is_dir():
        raise VideoError(f"expected a frames folder, got a file: {folder}")
    names = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not names:
        raise VideoError(f"no .jpg/.jpeg/.png frames found in folder {folder}")
    names.sort(key=_frame_sort_key)
    return [folder / n for n in names]


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """Read one frame file as uint8 RGB ``(H, W, 3)``; a corrupt file raises `VideoError` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError) as exc:
        raise VideoError(f"cannot read frame {path}: {exc}") from exc


def read_video_file(path: str | os.PathLike) -> np.ndarray:
    """Decode every frame of a video file with PyAV into uint8 RGB ``(T, H, W, 3)``."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video path does not exist: {path}")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"no video stream in {path}")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
    except VideoError:
        raise
    except Exception as exc:  # PyAV raises its own error classes (av.error.*) for corrupt input
        raise VideoError(f"cannot decode video file {path} (after {len(frames)} frames): {exc}") from exc
    if not frames:
        raise VideoError(f"video file {path} holds no decodable frame")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoError(f"video file {path} has frames of different sizes: {sorted(shapes)}")
    return np.stack(frames)


def _as_uint8_frames(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """Validate an in-memory video ``(T, H, W, 3)`` uint8 and return it as a numpy array."""
    if isinstance(array, torch.Tensor):
        if array.dtype != torch.uint8:
            raise VideoError(f"a video tensor must be uint8 (T, H, W, 3), got dtype {array.dtype}")
        array = array.detach().cpu().numpy()
    if array.dtype != np.uint8:
        raise VideoError(f"a video array must be uint8 (T, H, W, 3), got dtype {array.dtype}")
    if array.ndim != 4 or array.shape[-1] != 3:
        raise VideoError(f"a video array must have shape (T, H, W, 3), got {tuple(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise VideoError(f"a video array must hold at least one non-empty frame, got shape {tuple(array.shape)}")
    return array


def read_video(source: VideoSource) -> np.ndarray:
    """Read a whole video as uint8 RGB ``(T, H, W, 3)`` from a folder, a video file or an array."""
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return _as_uint8_frames(source)
    path = _as_path(source)
    if path.is_dir():
        files = list_frame_files(path)
        frames = [read_image_file(f) for f in files]
        _check_same_size([f.shape[:2] for f in frames], files)
        return np.stack(frames)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return read_video_file(path)
    if not path.exists():
        raise VideoError(f"video path does not exist: {path}")
    raise VideoError(f"unsupported video input {path}: expected a frames folder or one of {VIDEO_EXTENSIONS}")


def _as_path(source) -> Path:
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    raise VideoError(
        f"unsupported video input of type {type(source).__name__}: expected a frames folder, a video file "
        "path, or a uint8 array/tensor (T, H, W, 3)"
    )


def _check_same_size(sizes: Sequence[tuple[int, int]], names: Sequence) -> None:
    first = tuple(sizes[0])
    for size, name in zip(sizes, names):
        if tuple(size) != first:
            raise VideoError(
                f"frames have different sizes: {names[0]} is {first[0]}x{first[1]} (HxW) but {name} is "
                f"{size[0]}x{size[1]}"
            )


def frame_to_model_input(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """One uint8 RGB frame ``(H, W, 3)`` -> normalised float32 ``(3, S, S)`` at ``S = image_size``.

    Frames that already are ``S x S`` are used as they are; others are resized with PIL bicubic.
    """
    if frame.shape[0] != image_size or frame.shape[1] != image_size:
        from PIL import Image

        frame = np.asarray(Image.fromarray(frame).resize((image_size, image_size), Image.BICUBIC))
    img = torch.from_numpy(np.array(frame, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return (img - mean) / std


@dataclass
class LoadedVideo:
    """A video ready for the model.

    images: float32 ``(T, 3, S, S)`` normalised frames (or an `AsyncFrameLoader` that behaves like
        a sequence of ``(3, S, S)`` tensors);
    video_height, video_width: the original frame size that prompts and outputs refer to;
    source: a short description of where the frames came from.
    """

    images: torch.Tensor | "AsyncFrameLoader"
    video_height: int
    video_width: int
    source: str

    @property
    def num_frames(self) -> int:
        return len(self.images)


class AsyncFrameLoader:
    """Frames of a folder loaded in a background thread; indexing waits for (or loads) a frame.

    Behaves like a sequence of normalised float32 ``(3, S, S)`` tensors. Frame 0 is loaded at
    construction (it fixes the video size). An error in the thread is re-raised on the next access.
    """

    def __init__(self, files: list[Path], image_size: int, device: torch.device | str = "cpu"):
        self.files = files
        self.image_size = image_size
        self.device = torch.device(device)
        self._images: list[torch.Tensor | None] = [None] * len(files)
        self._lock = threading.Lock()
        self.exception: BaseException | None = None
        first = read_image_file(files[0])
        self.video_height, self.video_width = int(first.shape[0]), int(first.shape[1])
        self._images[0] = frame_to_model_input(first, image_size).to(self.device)
        self.thread = threading.Thread(target=self._load_all, daemon=True)
        self.thread.start()

    def _load_all(self) -> None:
        try:
            for i in range(len(self.files)):
                self[i]
        except BaseException as exc:  # re-raised on the next access from the caller's thread
            self.exception = exc

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.exception is not None:
            raise self.exception
        img = self._images[index]
        if img is not None:
            return img
        frame = read_image_file(self.files[index])
        if frame.shape[:2] != (self.video_height, self.video_width):
            raise VideoError(
                f"frames have different sizes: {self.files[0]} is {self.video_height}x{self.video_width} (HxW) "
                f"but {self.files[index]} is {frame.shape[0]}x{frame.shape[1]}"
            )
        img = frame_to_model_input(frame, self.image_size).to(self.device)
        with self._lock:
            if self._images[index] is None:
                self._images[index] = img
            return self._images[index]


def load_video_frames(
    source: VideoSource,
    image_size: int,
    *,
    video_size: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    async_loading_frames: bool = False,
) -> LoadedVideo:
    """Load a video for the predictor.

    Args:
        source: a frames folder, a video file, or a uint8 ``(T, H, W, 3)`` numpy array / torch tensor.
        image_size: the model's square input size ``S``.
        video_size: ``(height, width)`` of the original video. Defaults to the size of the frames.
            Give it when the frames were already resized (e.g. to ``S x S``) and prompts and outputs
            should refer to the original video frame.
        device: where the normalised frames are kept.
        async_loading_frames: for a frames folder, return after frame 0 and load the rest in a
            background thread (ignored for video files and arrays, which are decoded at once).

    Returns:
        `LoadedVideo` with ``images`` float32 ``(T, 3, S, S)``.
    """
    if video_size is not None:
        if len(video_size) != 2 or any(int(v) <= 0 for v in video_size):
            raise VideoError(f"video_size must be (height, width) with positive values, got {video_size}")
        video_size = (int(video_size[0]), int(video_size[1]))
    if async_loading_frames and isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        files = list_frame_files(source)
        loader = AsyncFrameLoader(files, image_size, device)
        h, w = video_size or (loader.video_height, loader.video_width)
        return LoadedVideo(loader, h, w, str(source))

    frames = read_video(source)
    desc = f"array {tuple(frames.shape)}" if isinstance(source, (np.ndarray, torch.Tensor)) else str(source)
    h, w = video_size or (int(frames.shape[1]), int(frames.shape[2]))
    images = torch.empty(len(frames), 3, image_size, image_size, dtype=torch.float32)
    for i, frame in enumerate(frames):
        images[i] = frame_to_model_input(frame, image_size)
    return LoadedVideo(images.to(device), h, w, desc)
