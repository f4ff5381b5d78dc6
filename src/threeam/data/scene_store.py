"""Generated scenes: disjoint seed spaces for training and evaluation, and a disk cache.

Seed spaces (the guarantee that training never sees an evaluation scene):

* **evaluation** scenes use seeds ``0 .. 2**30 - 1`` (``threeam eval --data synthetic:N --seed S``
  generates seeds ``S .. S+N-1``; the ``lookalike`` evaluation preset of
  `threeam.data.eval_scenes` starts at :data:`EVAL_SEED_BASE`);
* **training** scenes use seeds from :data:`TRAIN_SEED_BASE` = ``2**30`` on
  (:func:`train_scene_seed`), never below it.

A seed fixes a scene's layout, its look-alike copies and its camera path (`threeam.data.synth`), so
disjoint seeds mean no shared layout or camera path (`tests/data/test_scene_store.py` checks it).

Rendering is slow on a CPU (a 48-frame 96 x 128 scene takes ~15 CPU-seconds), so
:func:`cached_scene` keeps rendered scenes as ``.npz`` files (RGB, depth, K, poses, instance ids and
the generator's JSON metadata) keyed by the generator config and seed, written atomically.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zlib
from pathlib import Path

import numpy as np

from threeam.data.synth import SynthConfig, generate_scene
from threeam.data.types import InMemoryScene, PosedFrame
from threeam.errors import InputError

__all__ = ["TRAIN_SEED_BASE", "EVAL_SEED_BASE", "train_scene_seed", "is_train_seed", "config_key",
           "cached_scene", "save_scene_npz", "load_scene_npz"]

TRAIN_SEED_BASE = 1 << 30
"""First seed of the training seed space (evaluation seeds lie below it)."""
EVAL_SEED_BASE = 0
"""First seed of the evaluation presets."""


def train_scene_seed(seed: int, source: str, index: int) -> int:
    """Seed of training scene ``index`` of data source ``source`` in a run seeded ``seed``.

    Always ``>= TRAIN_SEED_BASE`` (and below ``2**31``), so it never equals an evaluation seed.
    """
    if index < 0 or seed < 0:
        raise InputError(f"scene index and seed must be >= 0, got {index}, {seed}")
    h = zlib.crc32(f"train:{seed}:{source}".encode()) % (1 << 20)
    return TRAIN_SEED_BASE + ((h << 10) + index) % (1 << 30)


def is_train_seed(seed: int) -> bool:
    return seed >= TRAIN_SEED_BASE


def config_key(config: SynthConfig) -> str:
    """A short stable hash of a generator config (part of the cache file name)."""
    fields = dataclasses.asdict(config)
    if fields.get("room_style") == "fixed":  # added later: at its default the key (and caches) stay as they were
        fields.pop("room_style")
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _jsonable_meta(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "primitives"}


def save_scene_npz(scene: InMemoryScene, path: str | os.PathLike) -> None:
    """Write a scene's frames and metadata to ``path`` (atomic: temporary file, then rename)."""
    from threeam.io.atomic import atomic_write_bytes

    f0 = scene.frames[0]
    arrays = {
        "rgb": np.stack([f.rgb for f in scene.frames]),
        "depth": np.stack([f.depth for f in scene.frames]).astype(np.float32),
        "K": np.stack([f.K for f in scene.frames]),
        "cam_to_world": np.stack([f.cam_to_world for f in scene.frames]),
        "ids": np.stack([f.instance_ids for f in scene.frames]).astype(np.int32),
        "meta": np.frombuffer(json.dumps({"name": scene.name, **_jsonable_meta(scene.meta)}).encode(), np.uint8),
    }
    if f0.depth is None or f0.cam_to_world is None or f0.instance_ids is None:
        raise InputError(f"scene {scene.name} lacks depth, poses or ids; only generated scenes are cached")
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_scene_npz(path: str | os.PathLike) -> InMemoryScene:
    """Read a scene written by :func:`save_scene_npz`."""
    with np.load(str(path)) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        rgb, depth, K, c2w, ids = z["rgb"], z["depth"], z["K"], z["cam_to_world"], z["ids"]
    frames = [PosedFrame(rgb=rgb[t], depth=depth[t], K=K[t], cam_to_world=c2w[t], instance_ids=ids[t],
                         name=f"frame_{t:06d}") for t in range(len(rgb))]
    name = meta.pop("name")
    return InMemoryScene(name=name, frames=frames, meta=meta)


def cached_scene(config: SynthConfig, seed: int, cache_dir: str | os.PathLike | None = None,
                 name: str | None = None) -> InMemoryScene:
    """``generate_scene(config, seed)``, read from / written to ``cache_dir`` when given.

    The cache file is ``<cache_dir>/<config_key>/<seed>.npz``; a cached scene has the same frames
    as a fresh one (the generator is deterministic) but no mesh.
    """
    if cache_dir is None or str(cache_dir) == "":
        return generate_scene(config, seed=seed, name=name)
    path = Path(cache_dir) / config_key(config) / f"{seed}.npz"
    if path.is_file():
        try:
            scene = load_scene_npz(path)
            if name:
                scene.name = name
            return scene
        except (OSError, ValueError, KeyError):  # a damaged file: render again
            pass
    scene = generate_scene(config, seed=seed, name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_scene_npz(scene, path)
    return scene
