"""Track objects through a video and write the results: the library side of `threeam track`.

Outputs (in ``out_dir``, written into a temporary folder that is renamed at the end, so a failed run
leaves nothing half-written and an existing result is never replaced unless ``overwrite``):

* ``masks/00000.png`` ...: one DAVIS palette PNG per tracked frame at the video's resolution, pixel
  value = object id (where objects overlap, the one with the higher mask logit wins);
* ``masks.json``: the same masks as COCO RLE (`threeam.io.masks.write_rle_json`);
* ``overlay.mp4``: the video with the masks drawn on it (unless ``overlay=False``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from threeam.errors import InputError
from threeam.io.masks import read_palette_png, write_palette_png, write_rle_json
from threeam.io.video import read_video


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
class TrackResult:
    out_dir: Path
    frames: list[int]
    obj_ids: list[int]
    files: list[Path] = field(default_factory=list)


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


def prompts_from_json(path: str | os.PathLike) -> list[ObjectPrompt]:
    """``[{"obj_id": 1, "frame": 0, "points": [[x, y]], "labels": [1]}, {"obj_id": 2, "box": [...]},
    {"obj_id": 3, "mask": "mask.png"}]`` (mask paths relative to the JSON file)."""
    p = Path(path)
    try:
        items = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"prompts file not found: {p}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"prompts file {p} is not valid JSON: {e}") from None
    if not isinstance(items, list) or not items:
        raise InputError(f"prompts file {p} must hold a non-empty JSON list of prompts")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "obj_id" not in item:
            raise InputError(f"prompt {i} in {p} must be an object with an obj_id")
        unknown = set(item) - {"obj_id", "frame", "points", "labels", "box", "mask"}
        if unknown:
            raise InputError(f"prompt {i} in {p}: unknown keys {sorted(unknown)}")
        mask = None
        if item.get("mask") is not None:
            mask = read_palette_png(p.parent / item["mask"]) > 0
        points = item.get("points")
        labels = item.get("labels")
        if points is not None and labels is None:
            labels = [1] * len(points)
        out.append(ObjectPrompt(obj_id=int(item["obj_id"]), frame=int(item.get("frame", 0)), points=points,
                                labels=labels, box=item.get("box"), mask=mask))
    return out


def _add(predictor, state, prompt: ObjectPrompt) -> None:
    given = [x is not None for x in (prompt.points, prompt.box, prompt.mask)]
    if not any(given):
        raise InputError(f"object {prompt.obj_id}: give points, a box or a mask")
    if prompt.mask is not None:
        if prompt.points is not None or prompt.box is not None:
            raise InputError(f"object {prompt.obj_id}: a mask prompt cannot be combined with points or a box")
        predictor.add_new_mask(state, prompt.frame, prompt.obj_id, prompt.mask)
        return
    predictor.add_new_points_or_box(state, prompt.frame, prompt.obj_id, points=prompt.points, labels=prompt.labels,
                                    box=prompt.box)


def track_video(predictor, video: Any, prompts: Sequence[ObjectPrompt], out_dir: str | os.PathLike, *,
                direction: str = "both", overlay: bool = True, overwrite: bool = False, fps: int = 24) -> TrackResult:
    """Prompt, propagate (forward from the earliest prompted frame, backward from it, or both) and
    write the outputs described in the module docstring."""
    if direction not in ("forward", "backward", "both"):
        raise InputError(f"direction must be forward, backward or both, got {direction!r}")
    if not prompts:
        raise InputError("no prompts: give a point, a box, a mask or a prompts file")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError(f"output folder {out} already exists and is not empty; pass --overwrite to replace it")
    state = predictor.init_state(video)
    for prompt in prompts:
        _add(predictor, state, prompt)
    start = min(p.frame for p in prompts)
    device = getattr(predictor, "device", torch.device("cpu"))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if torch.device(device).type == "cuda"
                else nullcontext())
    results: dict[int, tuple[list[int], torch.Tensor]] = {}
    with autocast:
        passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        for reverse in passes:
            for t, ids, masks in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
                if t not in results:
                    results[t] = (list(ids), masks.float().cpu())
    frames = sorted(results)
    obj_ids = list(state.obj_ids)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "masks").mkdir()
        tracks, id_maps = {}, {}
        for t in frames:
            ids, logits = results[t]
            id_map = _id_map(ids, logits[:, 0])
            id_maps[t] = id_map
            write_palette_png(tmp / "masks" / f"{t:05d}.png", id_map)
            tracks[t] = {oid: id_map == oid for oid in ids}
        write_rle_json(tmp / "masks.json", tracks)
        if overlay:
            from threeam.io.overlay import write_overlay_video

            raw = read_video(video)
            write_overlay_video(tmp / "overlay.mp4", [raw[t] for t in frames], [id_maps[t] for t in frames], fps=fps)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(out.rglob("*"))
    return TrackResult(out_dir=out, frames=frames, obj_ids=obj_ids, files=[f for f in files if f.is_file()])


def _id_map(ids: list[int], logits: torch.Tensor) -> np.ndarray:
    """(N, H, W) logits of objects ``ids`` -> (H, W) uint8 id map; overlaps go to the highest logit."""
    if any(not 0 < i < 255 for i in ids):
        raise InputError(f"object ids must be 1..254 to be written as palette PNGs, got {ids}")
    best = logits.argmax(dim=0)
    fg = (logits > 0).any(dim=0)
    table = torch.tensor(ids, dtype=torch.uint8)
    return torch.where(fg, table[best], torch.zeros((), dtype=torch.uint8)).numpy()
