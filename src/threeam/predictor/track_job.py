"""Track objects through a video and write the results: the library side of `threeam track`.

Everything the user gave is checked before any model runs (:func:`check_track_inputs`: the
video's frame count and size, every prompt's frame, object id, clicks, box and mask, the output
folder), so a bad value costs seconds, not a tracked video.

Outputs (written with `threeam.io.atomic.atomic_output_dir`: a new folder beside ``out_dir``
swapped in at the end, so a failed or interrupted run leaves the previous result as it was, and
``overwrite`` only replaces a folder threeam wrote):

* ``masks/00000.png`` ...: one DAVIS palette PNG per tracked frame at the video's resolution, pixel
  value = object id (where objects overlap, the one with the higher mask logit wins);
* ``masks.json``: the same masks as COCO RLE (the `threeam.io.masks.write_rle_json` format);
* ``overlay.mp4``: the video with the masks drawn on it at the source's frame rate (unless
  ``overlay=False``; frames folders and arrays have no rate: ``fps``, default 24).

Prompts file (``--prompts``): a JSON list of objects ``{"obj_id": 1, "frame": 0, "points": [[x, y]],
"labels": [1]}``, ``{"obj_id": 2, "box": [x0, y0, x1, y1]}``, ``{"obj_id": 3, "mask": "mask.png"}``
(mask paths relative to the JSON file). ``obj_id`` and ``frame`` are JSON integers, ids 1..254
(palette PNGs hold 0..255; 0 is background, 255 void); coordinates are finite numbers in video
pixels; a box needs x1 > x0 and y1 > y0; labels are 1 (positive) or 0 (negative).
"""
from __future__ import annotations

import json
import math
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from threeam.errors import InputError, VideoError
from threeam.io.atomic import atomic_output_dir, check_output_dir
from threeam.io.masks import TracksWriter, read_palette_png, write_palette_png
from threeam.predictor.validation import check_mask_size, check_points, check_boxes, is_int

MIN_OBJ_ID, MAX_OBJ_ID = 1, 254
DEFAULT_FPS = 24.0
PROMPT_KEYS = ("obj_id", "frame", "points", "labels", "box", "mask")


@dataclass
class ObjectPrompt:
    """One object's prompt on one frame: clicks (``points`` (x, y) in video pixels with ``labels``
    1 positive / 0 negative), a ``box`` (x0, y0, x1, y1), or a ``mask`` ((H, W) bool)."""

    obj_id: int
    frame: int = 0
    points: Optional[list[list[float]]] = None
    labels: Optional[list[int]] = None
    box: Optional[list[float]] = None
    mask: Optional[np.ndarray] = None


@dataclass
class VideoInfo:
    """What `probe_video` finds without decoding the frames: count, size and (video files) rate."""

    num_frames: int
    height: int
    width: int
    fps: Optional[float] = None


@dataclass
class TrackResult:
    out_dir: Path
    frames: list[int]
    obj_ids: list[int]
    files: list[Path] = field(default_factory=list)
    fps: float = DEFAULT_FPS


# ---------------------------------------------------------------------------------- the video


def probe_video(video: Any, check_all_frames: bool = False) -> VideoInfo:
    """Frame count, size and frame rate of a frames folder, video file or in-memory frames, from
    `threeam.io.frame_sources.open_source` (headers and the container's index; no full decode).
    ``check_all_frames``: open every file of a frames folder now, so a file that is not a readable
    image or has another size is reported before any model runs. VideoError otherwise."""
    from threeam.io.frame_sources import open_source

    source = open_source(video, check_all_frames=check_all_frames)
    try:
        n, h, w = int(source.num_frames), int(source.height), int(source.width)
        fps = source.fps
    finally:
        source.close()
    if n == 0 or h == 0 or w == 0:
        raise VideoError(f"video {video} holds no decodable frame")
    fps = float(fps) if fps and math.isfinite(float(fps)) and float(fps) > 0 else None
    return VideoInfo(n, h, w, fps)


# ---------------------------------------------------------------------------------- prompts


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(float(value)))


def check_obj_id(value: Any, where: str = "obj_id") -> int:
    """An object id: an integer in 1..254 (InputError naming ``where`` otherwise)."""
    if not is_int(value):
        raise InputError(f"{where} must be an integer in {MIN_OBJ_ID}..{MAX_OBJ_ID}, got {value!r}")
    if not MIN_OBJ_ID <= int(value) <= MAX_OBJ_ID:
        raise InputError(f"{where} {value} is out of range: object ids must be {MIN_OBJ_ID}..{MAX_OBJ_ID} "
                         "(palette PNGs hold 0..255; 0 is background, 255 void)")
    return int(value)


def prompts_from_mask_png(path: str | os.PathLike, frame: int = 0, obj_id: Optional[int] = None) -> list[ObjectPrompt]:
    """A binary mask PNG gives one object (``obj_id``, default 1); a palette PNG gives one object per id."""
    ids = read_palette_png(path)
    values = [int(v) for v in np.unique(ids) if v != 0]
    if not values:
        raise InputError(f"mask {path} is empty: it marks no object")
    if len(values) == 1 or obj_id is not None:  # a binary mask (0/1 or 0/255) or a forced single object
        only = values[0] if values[0] not in (1, 255) else 1
        return [ObjectPrompt(obj_id=obj_id if obj_id is not None else only, frame=frame, mask=ids > 0)]
    return [ObjectPrompt(obj_id=v, frame=frame, mask=ids == v) for v in values if v != 255]  # 255: void


def _read_json(p: Path, what: str) -> Any:
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if not p.is_file():
        raise InputError(f"{what} {p} is not a file (give a JSON file)")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {p} is not a text file (expected UTF-8 JSON)") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {p}: {e.strerror or e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} {p} is not valid JSON: {e}") from None
    except RecursionError:
        raise InputError(f"{what} {p} is nested too deeply") from None


def _points(value: Any, where: str) -> list[list[float]]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: points must be a non-empty list of [x, y] pairs, got {value!r}")
    out = []
    for j, pt in enumerate(value):
        if not (isinstance(pt, list) and len(pt) == 2 and all(_is_number(v) for v in pt)):
            raise InputError(f"{where}: point {j} must be [x, y] (two finite numbers), got {pt!r}")
        out.append([float(pt[0]), float(pt[1])])
    return out


def _labels(value: Any, n: int, where: str) -> list[int]:
    if not isinstance(value, list) or len(value) != n:
        raise InputError(f"{where}: labels must be a list of {n} values (one per point), got {value!r}")
    for v in value:
        if not (is_int(v) and v in (0, 1)):
            raise InputError(f"{where}: labels must be 1 (positive) or 0 (negative), got {v!r}")
    return [int(v) for v in value]


def _box(value: Any, where: str) -> list[float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_number(v) for v in value)):
        raise InputError(f"{where}: box must be [x0, y0, x1, y1] (four finite numbers), got {value!r}")
    return [float(v) for v in value]


def prompts_from_json(path: str | os.PathLike) -> list[ObjectPrompt]:
    """Read a prompts file (format in the module docstring); every field is type-checked, so a
    wrong value is one InputError naming the prompt, the key and what is allowed."""
    p = Path(path)
    items = _read_json(p, "prompts file")
    if not isinstance(items, list) or not items:
        raise InputError(f"prompts file {p} must hold a non-empty JSON list of prompts")
    out = []
    for i, item in enumerate(items):
        where = f"prompt {i} in {p}"
        if not isinstance(item, dict) or "obj_id" not in item:
            raise InputError(f"{where} must be an object with an obj_id")
        unknown = set(item) - set(PROMPT_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown keys {sorted(unknown)} (allowed: {', '.join(PROMPT_KEYS)})")
        obj_id = check_obj_id(item["obj_id"], f"{where}: obj_id")
        frame = item.get("frame", 0)
        if not is_int(frame) or frame < 0:
            raise InputError(f"{where}: frame must be an integer >= 0, got {frame!r}")
        mask = None
        if item.get("mask") is not None:
            if not isinstance(item["mask"], str) or not item["mask"]:
                raise InputError(f"{where}: mask must be a PNG path (relative to the prompts file), "
                                 f"got {item['mask']!r}")
            mask = read_palette_png(p.parent / item["mask"]) > 0
        points = None if item.get("points") is None else _points(item["points"], where)
        labels = item.get("labels")
        if points is None and labels is not None:
            raise InputError(f"{where}: labels given without points")
        if points is not None:
            labels = [1] * len(points) if labels is None else _labels(labels, len(points), where)
        box = None if item.get("box") is None else _box(item["box"], where)
        out.append(ObjectPrompt(obj_id=obj_id, frame=int(frame), points=points, labels=labels, box=box, mask=mask))
    return out


def check_prompts(prompts: Sequence[ObjectPrompt], info: VideoInfo) -> None:
    """Every prompt against the video: frame in range, id 1..254, one kind of prompt (clicks and/or
    a box, or a mask), clicks and boxes by the predictors' rule (`threeam.predictor.validation`:
    boxes used as given, nothing clearly outside), boxes of positive area, masks of the frame's size or
    aspect ratio and not empty, at most one prompt per object and frame. InputError otherwise."""
    if not prompts:
        raise InputError("no prompts: give a point (--point), a box (--box), a mask (--mask) or a prompts file "
                         "(--prompts)")
    seen: set[tuple[int, int]] = set()
    w, h = info.width, info.height
    for k, pr in enumerate(prompts):
        obj = check_obj_id(pr.obj_id, "object id")
        name = f"object {obj}"
        if not is_int(pr.frame):
            raise InputError(f"{name}: frame must be an integer, got {pr.frame!r}")
        if not 0 <= pr.frame < info.num_frames:
            raise InputError(f"{name}: frame {pr.frame} is out of range: the video has {info.num_frames} frames "
                             f"(valid 0..{info.num_frames - 1})")
        if (obj, pr.frame) in seen:
            raise InputError(f"{name} has two prompts on frame {pr.frame}; give its clicks, box or mask in one prompt")
        seen.add((obj, pr.frame))
        if pr.points is None and pr.box is None and pr.mask is None:
            raise InputError(f"{name}: give points, a box or a mask")
        if pr.mask is not None:
            if pr.points is not None or pr.box is not None:
                raise InputError(f"{name}: a mask prompt cannot be combined with points or a box")
            m = np.asarray(pr.mask)
            if m.ndim != 2:
                raise InputError(f"{name}: a mask must be 2-D (H, W), got shape {m.shape}")
            try:  # the video's size, or the same aspect ratio (resized by the predictor)
                check_mask_size(m.shape, (h, w))
            except InputError as e:
                raise InputError(f"{name}: {e}") from None
            if not m.any():
                raise InputError(f"{name}: mask on frame {pr.frame} is empty")
            continue
        if pr.points is not None:
            if pr.labels is None or len(pr.labels) != len(pr.points):
                raise InputError(f"{name}: give one label per point")
            for (x, y) in pr.points:
                if not (_is_number(x) and _is_number(y)):
                    raise InputError(f"{name}: point ({x!r}, {y!r}) must be two finite numbers")
                try:  # the predictors' rule (docs/tracking.md, "Prompts outside the frame")
                    xy = torch.tensor([[float(x), float(y)]], dtype=torch.float64)  # the exact values given
                    check_points(xy, "point", (h, w), True, area="frame", pixels="video pixels")
                except InputError as e:
                    raise InputError(f"{name}: {e}") from None
            if any(not (is_int(v) and v in (0, 1)) for v in pr.labels):
                raise InputError(f"{name}: labels must be 1 (positive) or 0 (negative), got {pr.labels}")
        if pr.box is not None:
            x0, y0, x1, y1 = (float(v) for v in pr.box)
            if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
                raise InputError(f"{name}: box must be four finite numbers, got {pr.box}")
            if not (x1 > x0 and y1 > y0):
                raise InputError(f"{name}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) needs x1 > x0 and y1 > y0 "
                                 "(a box of positive area)")
            try:  # the predictor's rule (used as given; clearly outside is refused), checked here already
                check_boxes(torch.tensor([[x0, y0], [x1, y1]]), "box corner", (h, w), True, area="frame",
                           pixels="video pixels")
            except InputError as e:
                raise InputError(f"{name}: {e}") from None


DIRECTIONS = ("forward", "backward", "both")


def check_track_inputs(video: Any, prompts: Sequence[ObjectPrompt], out_dir: str | os.PathLike, *,
                       direction: str = "both", overwrite: bool = False, fps: Optional[float] = None,
                       check_all_frames: bool = False) -> VideoInfo:
    """All checks of :func:`track_video` that need no model (run them before building one)."""
    if direction not in DIRECTIONS:
        raise InputError(f"--direction must be forward, backward or both, got {direction!r}")
    if fps is not None and not (_is_number(fps) and fps > 0):
        raise InputError(f"--fps must be a positive number, got {fps!r}")
    check_output_dir(out_dir, overwrite=overwrite)
    info = probe_video(video, check_all_frames=check_all_frames)
    check_prompts(prompts, info)
    return info


# ---------------------------------------------------------------------------------- tracking


def _add(predictor, state, prompt: ObjectPrompt) -> None:
    if prompt.mask is not None:
        predictor.add_new_mask(state, prompt.frame, prompt.obj_id, prompt.mask)
        return
    predictor.add_new_points_or_box(state, prompt.frame, prompt.obj_id, points=prompt.points, labels=prompt.labels,
                                    box=prompt.box)


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, leave=False, file=sys.stderr)


def _iter_frames(video: Any, frames: Sequence[int]):
    """The source's original RGB frames ``frames`` (increasing), decoded one at a time."""
    from threeam.io.frame_sources import open_source

    source = open_source(video)
    try:
        for _, frame in source.read_many(frames):
            yield np.asarray(frame, dtype=np.uint8)
    finally:
        source.close()


def track_video(predictor, video: Any, prompts: Sequence[ObjectPrompt], out_dir: str | os.PathLike, *,
                direction: str = "both", overlay: bool = True, overwrite: bool = False,
                fps: Optional[float] = None, progress: bool = False,
                log: Optional[Callable[[str], None]] = None, check_all_frames: bool = False) -> TrackResult:
    """Prompt, propagate (forward from the earliest prompted frame, backward from it, or both) and
    write the outputs described in the module docstring.

    Memory does not grow with the video's length: each frame's id map is written as a PNG (and its
    RLE record parked on disk by `threeam.io.masks.TracksWriter`) as soon as the frame is
    tracked, and the overlay streams the source's frames and reads the id maps back one at a time.

    ``fps``: the overlay's frame rate (default: the source's, 24 for frames folders and arrays).
    ``progress``: progress bars for writing and encoding (tracking uses the predictor's own).
    ``log``: called with a line at the start of each phase (decoding, tracking, writing, overlay).
    ``check_all_frames``: open every file of a frames folder before tracking (see `probe_video`).
    Tracking runs inside the predictor's own ``autocast_context()`` (its ``autocast`` option: a
    predictor built with ``autocast=False`` stays float32 on CUDA); a predictor without one gets
    bf16 autocast on CUDA."""
    say = log or (lambda msg: None)
    info = check_track_inputs(video, prompts, out_dir, direction=direction, overwrite=overwrite, fps=fps,
                              check_all_frames=check_all_frames)
    rate = float(fps) if fps is not None else (info.fps or DEFAULT_FPS)
    say(f"decoding {info.num_frames} frames ({info.width}x{info.height})")
    state = predictor.init_state(video)
    for prompt in prompts:
        _add(predictor, state, prompt)
    start = min(p.frame for p in prompts)
    own = getattr(predictor, "autocast_context", None)  # the predictor's ``autocast`` option
    if callable(own):
        autocast = own()
    else:  # a predictor without the setting: bf16 on CUDA, as before
        device = getattr(predictor, "device", torch.device("cpu"))
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if torch.device(device).type == "cuda"
                    else nullcontext())
    out = Path(out_dir).expanduser()
    written: set[int] = set()
    with atomic_output_dir(out, overwrite=overwrite, kind="track") as tmp:
        masks_dir = tmp / "masks"
        masks_dir.mkdir()
        with TracksWriter(tmp / "masks.json") as rle:
            say(f"tracking {len({p.obj_id for p in prompts})} object(s), direction {direction}")
            with autocast:
                passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
                for reverse in passes:
                    for t, ids, masks in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
                        if t in written:
                            continue
                        id_map = id_map_from_logits(list(ids), masks)
                        write_palette_png(masks_dir / f"{t:05d}.png", id_map)
                        rle.add(t, {oid: id_map == oid for oid in ids})
                        written.add(t)
            frames = sorted(written)
            say(f"writing {len(frames)} masks to {out}")
        obj_ids = list(state.obj_ids)
        if overlay:
            from threeam.io.overlay import write_overlay_video

            say(f"encoding overlay.mp4 at {rate:g} fps")
            bar = _bar(progress, len(frames), "overlay")

            def counted(it):
                for x in it:
                    yield x
                    if bar is not None:
                        bar.update(1)

            try:
                write_overlay_video(tmp / "overlay.mp4", counted(_iter_frames(video, frames)),
                                    (read_palette_png(masks_dir / f"{t:05d}.png") for t in frames), fps=rate)
            finally:
                if bar is not None:
                    bar.close()
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != ".threeam-output.json")
    return TrackResult(out_dir=out, frames=frames, obj_ids=obj_ids, files=files, fps=rate)


def id_map_from_logits(ids: list[int], logits: torch.Tensor) -> np.ndarray:
    """``(N, H, W)`` or ``(N, 1, H, W)`` mask logits of objects ``ids`` -> ``(H, W)`` uint8 id map.

    A pixel belongs to the object with the highest logit among those above 0, else it is 0
    (background); no objects give an all-zero map. This is the rule of ``threeam track`` and of the
    web app (`threeam.serve`).
    """
    for i in ids:
        check_obj_id(i, "object id")
    if not ids:
        return np.zeros(tuple(logits.shape[-2:]), dtype=np.uint8)
    logits = logits.float().cpu()
    if logits.dim() == 4:
        logits = logits[:, 0]
    best = logits.argmax(dim=0)
    fg = (logits > 0).any(dim=0)
    table = torch.tensor(ids, dtype=torch.uint8)
    return torch.where(fg, table[best], torch.zeros((), dtype=torch.uint8)).numpy()
