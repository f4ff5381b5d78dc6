"""A re-implementation of the official SAM 2 frame loading recipe, for comparisons only.

Written from the description of what the official ``sam2.utils.misc.load_video_frames`` does for
a JPEG folder (Dec-2024 release); not its code:

1. list the ``.jpg``/``.jpeg`` files and sort them by the integer value of their stem;
2. for each file: open it with PIL, ``convert("RGB")``, ``resize((S, S))`` (PIL's default filter,
   bicubic), turn it into a numpy array and divide by 255.0 (float64), then store it in a
   preallocated float32 ``(T, 3, S, S)`` tensor (channels first);
3. after all frames: subtract the ImageNet mean and divide by the std, in place, in float32.

For video files the official loader uses decord, which also resizes (with its own filter) while
decoding. decord is not used here: `load_video_file_official_style` decodes with PyAV to RGB and
then applies the JPEG recipe, i.e. what the official code would do with the frames extracted to
JPEG without loss. Our loader does the same for video files (PIL bicubic on the decoded RGB), so
video-file inputs are *not* identical to the official decord path (a documented difference).
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _one(img: Image.Image, image_size: int) -> torch.Tensor:
    arr = np.array(img.convert("RGB").resize((image_size, image_size)))
    arr = arr / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    images -= torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    images /= torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return images


def load_jpeg_folder_official_style(folder: str, image_size: int) -> tuple[torch.Tensor, int, int]:
    """``(images (T, 3, S, S) float32, video_height, video_width)`` as the official loader makes them."""
    names = [p for p in os.listdir(folder) if os.path.splitext(p)[-1].lower() in (".jpg", ".jpeg")]
    names.sort(key=lambda p: int(os.path.splitext(p)[0]))
    images = torch.zeros(len(names), 3, image_size, image_size, dtype=torch.float32)
    h = w = 0
    for i, name in enumerate(names):
        with Image.open(os.path.join(folder, name)) as img:
            images[i] = _one(img, image_size)
            w, h = img.size
    return _normalise(images), h, w


def load_video_file_official_style(path: str, image_size: int) -> tuple[torch.Tensor, int, int]:
    """The official video-file structure (decode every frame at S x S as uint8, stack, ``float() / 255``,
    then normalise in place) with PyAV + PIL bicubic in place of decord's resizing decoder."""
    import av

    frames = []
    h = w = 0
    with av.open(path) as container:
        for frame in container.decode(video=0):
            img = frame.to_image()
            w, h = img.size
            frames.append(torch.from_numpy(np.array(img.resize((image_size, image_size)))).permute(2, 0, 1))
    images = torch.stack(frames, dim=0).float() / 255.0
    return _normalise(images), h, w
