"""Video input for the predictors: frames folders, video files and in-memory arrays.

A video reaches the model as a sequence of float32 ``(3, S, S)`` frames: every frame resized to
the model's square input size ``S`` (PIL bicubic, as the official SAM 2 frame loader does), scaled
to [0, 1] and normalised with the ImageNet mean and std. The original frame size ``(H, W)`` is
kept beside it: prompts are given in, and outputs are resized back to, that frame.

By default nothing but frame 0 is decoded up front: `load_video_frames` returns a
`threeam.io.frame_stream.StreamingFrames` that decodes and prepares frames on demand, reads ahead
on a background thread in the direction of access and keeps a bounded cache
(`FrameCacheConfig`), so the time to the first mask and the memory held do not grow with the
video's length. ``streaming=False`` gives the whole ``(T, 3, S, S)`` tensor instead. Either way
the model inputs are bit-identical to the official recipe (`threeam.io.frame_prep`).

Accepted sources (`load_video_frames`, `read_video`):

* a folder of ``.jpg``/``.jpeg``/``.png`` frames, ordered by the number in each file name
  (``00007.jpg``, ``frame_12.png``; names without a number come last, by name); 16-bit PNGs are
  scaled to 8 bits;
* a video file (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``, ``.m4v``) or its bytes, decoded
  with PyAV (sequential reads decode forward; jumps seek to a keyframe and decode forward);
* a numpy array or torch tensor ``(T, H, W, 3)`` of uint8 RGB frames, or any sequence of uint8
  ``(H, W, 3)`` frames (``len()`` and ``[t]``; e.g. frames generated on the fly);
* a `threeam.io.frame_sources.FrameSource`.

Frames that already are ``S x S`` are not resized. Together with ``video_size`` this lets a caller
hand over frames that were prepared at model resolution and still declare the size of the
original video (the golden parity data does exactly that).

Every failure (missing path, empty folder, unreadable or corrupt frame, frames of different sizes,
wrong array shape or dtype) raises `threeam.errors.VideoError` with a message naming the culprit;
with streaming, a bad frame other than frame 0 raises when it is read (``check_all_frames=True``
checks every file of a folder up front).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from threeam.errors import VideoError
from threeam.io.frame_prep import IMG_MEAN, IMG_STD, frame_array, prepare_frame
from threeam.io.frame_sources import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ArraySource,
    FolderSource,
    FrameSource,
    VideoFileSource,
    list_frame_files,
    open_source,
    read_image,
    read_image_file,
)
from threeam.io.frame_stream import FrameCacheConfig, StreamingFrames

VideoSource = Union[str, os.PathLike, bytes, np.ndarray, torch.Tensor, FrameSource, Any]


def read_video(source: VideoSource) -> np.ndarray:
    """Read a whole video as uint8 RGB ``(T, H, W, 3)`` from a folder, a video file or an array.

    An array is returned as it is (a tensor as its numpy view / CPU copy); other sources are
    decoded frame by frame.
    """
    if isinstance(source, np.ndarray):
        ArraySource(source)  # validates shape and dtype
        return source
    if isinstance(source, torch.Tensor):
        ArraySource(source)
        return source.detach().cpu().numpy()
    src = open_source(source)
    try:
        out = np.empty((src.num_frames, src.height, src.width, 3), dtype=np.uint8)
        for t, frame in src.read_many(range(src.num_frames)):
            out[t] = frame_array(frame)
        return out
    finally:
        src.close()


def read_video_file(path: str | os.PathLike) -> np.ndarray:
    """Decode every frame of a video file with PyAV into uint8 RGB ``(T, H, W, 3)``."""
    return read_video(VideoFileSource(path))


def frame_to_model_input(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """One uint8 RGB frame ``(H, W, 3)`` -> normalised float32 ``(3, S, S)`` at ``S = image_size``.

    Frames that already are ``S x S`` are used as they are; others are resized with PIL bicubic.
    Same values as the official SAM 2 recipe, bit for bit (see `threeam.io.frame_prep`).
    """
    return prepare_frame(frame, image_size)


@dataclass
class LoadedVideo:
    """A video ready for the model.

    images: a `StreamingFrames` (indexable like a float32 ``(T, 3, S, S)`` tensor of normalised
        frames, with ``raw(t)`` for the original frames), or with ``streaming=False`` that tensor;
    video_height, video_width: the original frame size that prompts and outputs refer to;
    source: a short description of where the frames came from;
    fps: the frame rate of a video file (None for folders and arrays).
    """

    images: Union[torch.Tensor, StreamingFrames]
    video_height: int
    video_width: int
    source: str
    fps: Optional[float] = None

    @property
    def num_frames(self) -> int:
        return len(self.images)

    def raw(self, t: int) -> np.ndarray:
        """Original frame t as uint8 ``(H, W, 3)`` (streaming only)."""
        if not isinstance(self.images, StreamingFrames):
            raise VideoError("original frames are only kept by a streaming video (streaming=True)")
        return self.images.raw(t)


def load_video_frames(
    source: VideoSource,
    image_size: int,
    *,
    video_size: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    async_loading_frames: bool = False,
    streaming: bool = True,
    cache: Optional[FrameCacheConfig] = None,
    check_all_frames: bool = False,
) -> LoadedVideo:
    """Load a video for the predictor.

    Args:
        source: a frames folder, a video file (path or bytes), a uint8 ``(T, H, W, 3)`` numpy
            array / torch tensor, a sequence of uint8 ``(H, W, 3)`` frames, or a `FrameSource`.
        image_size: the model's square input size ``S``.
        video_size: ``(height, width)`` of the original video. Defaults to the size of the frames.
            Give it when the frames were already resized (e.g. to ``S x S``) and prompts and outputs
            should refer to the original video frame.
        device: where the normalised frames are kept.
        async_loading_frames: accepted for compatibility with the official loader (which then
            returns after frame 0 and loads the rest in a thread). Streaming always works that
            way; with ``streaming=False`` it is ignored (everything is loaded before returning).
        streaming: decode on demand with read-ahead and a bounded cache (default); False decodes
            every frame now into one ``(T, 3, S, S)`` tensor.
        cache: cache and read-ahead sizes for streaming (`FrameCacheConfig`; default 16 frames /
            1 GiB, read-ahead 8 frames, 8 original frames).
        check_all_frames: for a frames folder, read every file's header now (corrupt files and
            size mismatches are found before tracking; a few milliseconds per hundred files).

    Returns:
        `LoadedVideo`; ``images[t]`` is float32 ``(3, S, S)`` on `device`.
    """
    if video_size is not None:
        if len(video_size) != 2 or any(int(v) <= 0 for v in video_size):
            raise VideoError(f"video_size must be (height, width) with positive values, got {video_size}")
        video_size = (int(video_size[0]), int(video_size[1]))
    src = open_source(source, check_all_frames=check_all_frames)
    desc = src.description
    h, w = video_size or (src.height, src.width)
    if streaming:
        frames = StreamingFrames(src, image_size, device=device, cache=cache)
        return LoadedVideo(frames, h, w, desc, src.fps)
    try:
        images = torch.empty(src.num_frames, 3, image_size, image_size, dtype=torch.float32)
        for t, frame in src.read_many(range(src.num_frames)):
            images[t] = prepare_frame(frame, image_size)
    finally:
        src.close()
    return LoadedVideo(images.to(device), h, w, desc, src.fps)


__all__ = [
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "IMG_MEAN", "IMG_STD", "VideoSource", "LoadedVideo",
    "FrameCacheConfig", "StreamingFrames", "FrameSource", "FolderSource", "VideoFileSource", "ArraySource",
    "load_video_frames", "read_video", "read_video_file", "read_image", "read_image_file", "list_frame_files",
    "frame_to_model_input", "open_source",
]
