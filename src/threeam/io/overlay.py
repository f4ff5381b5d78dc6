"""Overlay videos: frames with coloured, semi-transparent object masks and their contours.

Each object id ``k > 0`` is drawn in the DAVIS palette colour of ``k``: inside the mask the frame is
blended as ``(1 - alpha) * frame + alpha * colour``; pixels on the object's contour (mask pixels
with a 4-neighbour outside the mask) are painted in the full colour. Id 0 is background and left
unchanged.
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Iterable

import numpy as np

from threeam.errors import InputError
from threeam.io.atomic import atomic_path
from threeam.io.masks import davis_palette

__all__ = ["overlay_frame", "write_overlay_video", "pick_codec"]


def _check_frame(frame, name: str = "frame") -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"{name} must be (H, W, 3) RGB, got shape {tuple(frame.shape)}")
    if frame.dtype != np.uint8:
        raise InputError(f"{name} must be uint8, got {frame.dtype}")
    return frame


def _check_ids(ids, hw: tuple[int, int], name: str = "id map") -> np.ndarray:
    ids = np.asarray(ids)
    if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"{name} must have an integer dtype, got {ids.dtype}")
    if ids.shape != hw:
        raise InputError(f"{name} has shape {tuple(ids.shape)}, expected {hw} to match the frame")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > 255):
        raise InputError(f"{name} holds ids outside 0..255: [{int(ids.min())}, {int(ids.max())}]")
    return ids


def _contours(ids: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: object pixels (id > 0) with a 4-neighbour of a different id (image edge excluded)."""
    edge = np.zeros(ids.shape, dtype=bool)
    d = ids[:, 1:] != ids[:, :-1]
    edge[:, 1:] |= d
    edge[:, :-1] |= d
    d = ids[1:, :] != ids[:-1, :]
    edge[1:, :] |= d
    edge[:-1, :] |= d
    return edge & (ids > 0)


def overlay_frame(frame: np.ndarray, ids: np.ndarray, alpha: float = 0.5, contour: bool = True,
                  palette: np.ndarray | None = None) -> np.ndarray:
    """Draw coloured masks over one frame.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        ids: ``(H, W)`` integer id map (0 = background, 1..255 objects).
        alpha: mask opacity in [0, 1].
        contour: paint object contours in full colour.
        palette: ``(256, 3)`` uint8 colours; defaults to the DAVIS palette.

    Returns:
        ``(H, W, 3)`` uint8 RGB (a new array).
    """
    frame = _check_frame(frame)
    ids = _check_ids(ids, frame.shape[:2])
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    pal = davis_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    if pal.shape != (256, 3):
        raise InputError(f"palette must have shape (256, 3), got {tuple(pal.shape)}")
    out = frame.copy()
    fg = ids > 0
    if fg.any():
        colour = pal[ids[fg]].astype(np.float32)
        blended = (1.0 - alpha) * frame[fg].astype(np.float32) + alpha * colour
        out[fg] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        if contour:
            edge = _contours(ids)
            out[edge] = pal[ids[edge]]
    return out


def pick_codec(preferred: str | None = None) -> str:
    """The encoder to use: ``preferred`` if given and available, else ``libx264``, else ``mpeg4``."""
    import av

    candidates = [preferred] if preferred else ["libx264", "mpeg4"]
    for name in candidates:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # unknown or decoder-only codec
            continue
    raise InputError(f"no usable video encoder among {candidates} in this PyAV build")


def _pad_even(img: np.ndarray) -> np.ndarray:
    """Pad ``(H, W, 3)`` by replicating the last row/column so that H and W are even."""
    h, w = img.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return img
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_overlay_video(path: str | os.PathLike, frames: Iterable[np.ndarray], id_maps: Iterable[np.ndarray],
                        fps: float = 24.0, alpha: float = 0.5, contour: bool = True,
                        palette: np.ndarray | None = None, codec: str | None = None,
                        quality: int = 20, *, overwrite: bool = True) -> str:
    """Write an mp4 of frames with their masks drawn on, atomically.

    Args:
        path: target video file (``.mp4``; the container is picked from the suffix).
        frames: ``(T, H, W, 3)`` uint8 RGB array, or an iterable of ``(H, W, 3)`` uint8 frames.
        id_maps: ``(T, H, W)`` integer id maps (or an iterable of ``(H, W)``), one per frame.
        fps: frame rate (> 0).
        alpha, contour, palette: as in :func:`overlay_frame`.
        codec: encoder name; default ``libx264`` if this PyAV has it, else ``mpeg4``.
        quality: x264 CRF, 0..51 (lower = better); the mpeg4 fallback uses a high fixed bit rate.
        overwrite: if False, an existing ``path`` raises :class:`InputError`.

    Odd frame sizes are padded by one replicated row/column to even (``yuv420p`` needs even sizes),
    so the video is ``ceil(H/2)*2 x ceil(W/2)*2``.

    Returns:
        The codec used.
    """
    import av

    if not overwrite and os.path.exists(path):
        raise InputError(f"{path} already exists (pass overwrite=True to replace it)")
    if not (isinstance(fps, (int, float, Fraction)) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    if not 0 <= int(quality) <= 51:
        raise InputError(f"quality must be in 0..51, got {quality}")
    codec_name = pick_codec(codec)
    rate = Fraction(fps).limit_denominator(1001)
    frame_iter = iter(frames)
    ids_iter = iter(id_maps)
    n = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as container:
            stream = None
            for frame in frame_iter:
                try:
                    ids = next(ids_iter)
                except StopIteration:
                    raise InputError(f"fewer id maps than frames: id maps ran out at frame {n}") from None
                frame = _check_frame(frame, name=f"frame {n}")
                img = _pad_even(overlay_frame(frame, _check_ids(ids, frame.shape[:2], name=f"id map {n}"),
                                              alpha=alpha, contour=contour, palette=palette))
                if stream is None:
                    stream = container.add_stream(codec_name, rate=rate)
                    stream.width, stream.height = img.shape[1], img.shape[0]
                    stream.pix_fmt = "yuv420p"
                    if codec_name == "libx264":
                        stream.options = {"crf": str(int(quality)), "preset": "medium"}
                    else:
                        stream.bit_rate = max(2_000_000, img.shape[0] * img.shape[1] * 8)
                elif (img.shape[1], img.shape[0]) != (stream.width, stream.height):
                    raise InputError(f"frame {n} has size {frame.shape[1]}x{frame.shape[0]}, "
                                     f"different from the first frame")
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                    container.mux(packet)
                n += 1
            if stream is None:
                raise InputError("no frames to write")
            if next(ids_iter, None) is not None:
                raise InputError(f"more id maps than frames ({n} frames)")
            for packet in stream.encode():
                container.mux(packet)
    return codec_name
