"""MUSt3R feature cache for training (`threeam precompute`).

MUSt3R runs once over every scene, frames in scene order, through the bounded-memory streaming
session (so a scene-wide memory conditions every frame, which a sparse FoV-sampled clip alone could
not give: the paper's reason to precompute). What the Feature Merger needs is stored per frame in
float16: the encoder tokens and the merger's decoder levels ``(N, C)``, the reference-frame pointmap
and the ray map ``(H', W', 3)`` at MUSt3R's resolution.

Layout::

    OUT/<scene>/index.json            {"scene", "num_frames", "chunk_size", "levels", "grid_hw",
                                       "true_shape", "must3r_res", "must3r_weights", "chunks": [...done...],
                                       "complete": bool}
    OUT/<scene>/chunk_00000.safetensors   frames [0, chunk_size): "<t>/level<l>", "<t>/pts_ref", "<t>/rays"

Each scene folder is written with `threeam.io.atomic.atomic_output_dir` (a hidden temporary folder
swapped in when the scene is complete), so a scene folder is always complete. A run skips scenes
whose index says ``complete``; a scene interrupted by a killed run is recomputed from its first
frame (MUSt3R's streaming memory is not stored, so a scene cannot resume mid-way; its temporary
folder is removed by the next run; completed scenes are never redone).

``must3r_weights`` is `must3r_fingerprint` of the MUSt3R that made the scene: a reader given the model's
fingerprint refuses a scene made by other weights, and `precompute` refuses to add scenes to a folder
whose complete scenes came from other weights (it would otherwise skip them and mix two MUSt3Rs).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Optional

import torch
from safetensors.torch import load_file, save_file

from threeam.errors import InputError
from threeam.io.atomic import atomic_output_dir, atomic_write_text
from threeam.models.must3r.rope import grid_positions
from threeam.models.must3r.session import Must3rFrameOutput, Must3rStreamingSession
from threeam.models.three_am import ThreeAM

INDEX = "index.json"


def _scene_dir(root: Path, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return root / safe


def must3r_fingerprint(must3r: torch.nn.Module) -> str:
    """A short hex digest of a MUSt3R's weights: every state-dict entry's name, shape, dtype and bytes
    (about a second per GB of weights). Two modules have the same fingerprint iff they hold the same
    weights (up to hash collisions)."""
    h = hashlib.blake2b(digest_size=12)
    for name, value in sorted(must3r.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _weights_mismatch(scene_name: str, root: Path, have: str, want: str) -> InputError:
    return InputError(f"scene {scene_name!r} in the MUSt3R cache {root} was computed by other MUSt3R weights "
                      f"(fingerprint {have}; this model's is {want}); precompute into a new folder with these "
                      "weights, or load the weights the cache was made with")


def precompute_scene(model: ThreeAM, scene, out_root: str | os.PathLike, chunk_size: int = 64,
                     fingerprint: Optional[str] = None) -> bool:
    """Cache one scene; returns False when it was already complete (nothing done). ``fingerprint``:
    `must3r_fingerprint` of ``model.must3r`` (computed when not given); a complete scene made by other
    weights raises InputError (never skipped, never overwritten)."""
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    fingerprint = fingerprint or must3r_fingerprint(model.must3r)
    folder = _scene_dir(Path(out_root), scene.name)
    if (folder / INDEX).is_file():
        try:
            old = json.loads((folder / INDEX).read_text())
            complete = bool(old.get("complete"))
        except (OSError, ValueError, AttributeError):
            complete = False  # unreadable index: recompute the scene
        if complete:
            have = old.get("must3r_weights")
            if have is not None and have != fingerprint:
                raise _weights_mismatch(scene.name, Path(out_root), have, fingerprint)
            return False
    levels = (0,) + tuple(model.merger_levels)
    session = Must3rStreamingSession(model.must3r, model.stream_config)
    n = len(scene)
    index = {"scene": scene.name, "num_frames": n, "chunk_size": chunk_size, "levels": list(levels),
             "grid_hw": None, "true_shape": None, "must3r_res": model.stream_config.input_res(model.must3r),
             "must3r_weights": fingerprint, "chunks": [], "complete": False}
    with atomic_output_dir(folder, overwrite=True, kind="feature-cache-scene", option="cache scene") as tmp:
        for start in range(0, n, chunk_size):
            tensors = {}
            for t in range(start, min(start + chunk_size, n)):
                out = session.add_frame(scene.frame(t).rgb)
                index["grid_hw"], index["true_shape"] = list(out.grid_hw), list(out.true_shape)
                for lv in levels:
                    tensors[f"{t}/level{lv}"] = out.feature(lv)[0].to(torch.float16).cpu().contiguous()
                tensors[f"{t}/pts_ref"] = out.pts_ref[0].to(torch.float16).cpu().contiguous()
                tensors[f"{t}/rays"] = out.rays[0].to(torch.float16).cpu().contiguous()
            name = f"chunk_{start // chunk_size:05d}.safetensors"
            save_file(tensors, str(tmp / name))
            index["chunks"].append(name)
        index["complete"] = True
        atomic_write_text(tmp / INDEX, json.dumps(index))
    return True


def precompute(model: ThreeAM, scenes: Iterable, out_root: str | os.PathLike, chunk_size: int = 64,
               progress: bool = True) -> list[str]:
    """Cache every scene (skipping complete ones); returns the names of the scenes computed now."""
    from tqdm.auto import tqdm

    done = []
    fingerprint = must3r_fingerprint(model.must3r)
    with torch.no_grad():
        for scene in tqdm(list(scenes), desc="precompute", unit="scene", disable=not progress):
            if precompute_scene(model, scene, out_root, chunk_size, fingerprint):
                done.append(scene.name)
    return done


class GeometryCache:
    """Read cached MUSt3R outputs: ``cache.frame(scene_name, t)`` -> `Must3rFrameOutput` (float32).

    ``must3r_res``: the MUSt3R input size the reader expects (the model's ``must3r_res``); a scene
    cached at another size is refused (its token grid and features are not the model's).
    ``must3r_weights``: the model's `must3r_fingerprint`; a scene made by other weights is refused.
    Caches written before the size / the fingerprint was recorded are not checked for it."""

    def __init__(self, root: str | os.PathLike, must3r_res: Optional[int] = None,
                 must3r_weights: Optional[str] = None):
        self.root = Path(root)
        self.must3r_res = None if must3r_res is None else int(must3r_res)
        self.must3r_weights = must3r_weights
        if not self.root.is_dir():
            raise InputError(f"MUSt3R feature cache not found: {self.root} (run `threeam precompute`)")
        self._index: dict[str, dict] = {}
        self._chunks: dict[tuple[str, str], dict[str, torch.Tensor]] = {}

    def index(self, scene_name: str) -> dict:
        if scene_name not in self._index:
            path = _scene_dir(self.root, scene_name) / INDEX
            if not path.is_file():
                raise InputError(f"scene {scene_name!r} is not in the MUSt3R cache {self.root}")
            idx = json.loads(path.read_text())
            if not idx.get("complete"):
                raise InputError(f"scene {scene_name!r} is incomplete in the MUSt3R cache {self.root}; rerun "
                                 "`threeam precompute` to finish it")
            have = idx.get("must3r_res")
            if self.must3r_res is not None and have is not None and int(have) != self.must3r_res:
                raise InputError(f"scene {scene_name!r} in the MUSt3R cache {self.root} was computed at MUSt3R input "
                                 f"size {have} px, the model streams at {self.must3r_res} px (model.must3r_res); "
                                 "precompute the cache again with the model's size or use a cache made for it")
            made_by = idx.get("must3r_weights")
            if self.must3r_weights is not None and made_by is not None and made_by != self.must3r_weights:
                raise _weights_mismatch(scene_name, self.root, made_by, self.must3r_weights)
            self._index[scene_name] = idx
        return self._index[scene_name]

    def has(self, scene_name: str) -> bool:
        try:
            self.index(scene_name)
            return True
        except InputError:
            return False

    def frame(self, scene_name: str, t: int, device: Optional[torch.device] = None) -> Must3rFrameOutput:
        idx = self.index(scene_name)
        if not 0 <= t < idx["num_frames"]:
            raise InputError(f"frame {t} is out of range for cached scene {scene_name!r} ({idx['num_frames']} frames)")
        chunk = idx["chunks"][t // idx["chunk_size"]]
        key = (scene_name, chunk)
        if key not in self._chunks:
            if len(self._chunks) > 8:
                self._chunks.clear()
            self._chunks[key] = load_file(str(_scene_dir(self.root, scene_name) / chunk))
        data = self._chunks[key]
        levels = tuple(idx["levels"])

        def get(name: str) -> torch.Tensor:
            x = data[f"{t}/{name}"].float()[None]
            return x.to(device) if device is not None else x

        h, w = idx["grid_hw"]
        pts = get("pts_ref")
        return Must3rFrameOutput(frame_index=t, is_keyframe=False, features=[get(f"level{lv}") for lv in levels],
                                 levels=levels, positions=grid_positions(h, w, device=pts.device), grid_hw=(h, w),
                                 true_shape=tuple(idx["true_shape"]), pts_ref=pts, pts_self=pts,
                                 conf=torch.ones(pts.shape[:-1], device=pts.device), rays=get("rays"))
