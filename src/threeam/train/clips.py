"""Training clips shared by the ``sam2``, ``3am`` and ``must3r`` tasks.

* :func:`open_source_scenes`: the scenes of one data source. ``synthetic*`` sources render
  ``data.scenes_per_source`` scenes of the ``data.scene_preset`` generator at
  ``data.scene_height x data.scene_width`` with ``data.scene_frames`` frames, seeded from the
  training seed space (`threeam.data.scene_store.train_scene_seed`, never an evaluation seed) and
  cached in ``data.scene_cache``; other sources open ``root`` with `threeam.data.discovery`.
* :class:`ClipDrawer`: clip ``i`` of a source as a pure function of (seed, source, i): a scene and an
  object, then FoV-aware / random / covisible (``source.sampler``, probability ``source.fov_prob``) or
  continuous frames; redrawn while the object is present in fewer than ``data.min_present_frac`` of
  the frames.
"""
from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np

from threeam.errors import InputError
from threeam.train.config import DataSourceConfig, TrainConfig
from threeam.train.trainer import IndexedSource, SourceFactory

__all__ = ["open_source_scenes", "scene_seed", "synthetic_scene_config", "ClipDrawer", "clip_source"]

MAX_REDRAWS = 20


def scene_seed(config: TrainConfig) -> int:
    """The seed generated training (and validation) scenes are drawn with: ``data.scene_seed`` or the run seed."""
    return config.seed if config.data.scene_seed is None else int(config.data.scene_seed)


def synthetic_scene_config(config: TrainConfig):
    from threeam.data.synth import get_synth_config

    d = config.data
    return get_synth_config(d.scene_preset, n_frames=d.scene_frames, height=d.scene_height, width=d.scene_width)


def open_source_scenes(source: DataSourceConfig, config: TrainConfig, source_index: int) -> list:
    """The scenes of data source ``source`` (see the module docstring)."""
    if source.name.lower().startswith("synthetic"):
        from threeam.data.scene_store import cached_scene, train_scene_seed

        cfg = synthetic_scene_config(config)
        out = []
        for j in range(config.data.scenes_per_source):
            seed = train_scene_seed(scene_seed(config), source.name, j)
            out.append(cached_scene(cfg, seed, config.data.scene_cache or None, name=f"train_{seed}"))
        return out
    if not source.root:
        raise InputError(f"data source {source.name!r} needs data.sources.{source.name}.root (a dataset folder)")
    from threeam.data.discovery import open_scenes

    return list(open_scenes(source.root, None))


class ClipDrawer:
    """Draws clip ``i`` of one source deterministically (see the module docstring)."""

    def __init__(self, scenes: Sequence, source: DataSourceConfig, config: TrainConfig, seed: int,
                 n_frames: int | None = None) -> None:
        from threeam.data.sampling import SamplerConfig

        if not scenes:
            raise InputError(f"data source {source.name!r} has no scenes")
        self.scenes = list(scenes)
        self.source = source
        self.config = config
        self.seed = seed
        self.cfg = SamplerConfig(n_frames=n_frames or config.data.frames_per_clip, fov_prob=source.fov_prob,
                                 tau=config.data.fov_tau, continuous_stride=config.data.continuous_stride)
        self._vis: dict[int, Any] = {}
        self._geo: dict[int, bool] = {}

    def visibility(self, i: int):
        from threeam.data.visibility import VisibilityTable

        if i not in self._vis:
            self._vis[i] = VisibilityTable(self.scenes[i])
        return self._vis[i]

    def _has_geometry(self, i: int) -> bool:
        if i not in self._geo:
            f = self.scenes[i].frame(0)
            self._geo[i] = f.depth is not None and f.cam_to_world is not None
        return self._geo[i]

    def _draw_once(self, rng: np.random.Generator):
        from threeam.data.sampling import (sample_continuous_clip, sample_covisible_clip, sample_fov_clip,
                                           sample_random_clip)

        for _ in range(100):
            si = int(rng.integers(len(self.scenes)))
            objs = self.visibility(si).objects(self.cfg.min_ref_pixels)
            if objs:
                break
        else:
            raise InputError(f"no scene of source {self.source.name!r} has an object with "
                             f"{self.cfg.min_ref_pixels} visible pixels")
        oid = objs[int(rng.integers(len(objs)))]
        scene, vis = self.scenes[si], self.visibility(si)
        if self._has_geometry(si) and rng.random() < self.source.fov_prob:
            fn = {"fov": sample_fov_clip, "random": sample_random_clip,
                  "covisible": sample_covisible_clip}[self.source.sampler]
            return fn(scene, oid, self.cfg, rng, vis, si)
        return sample_continuous_clip(scene, oid, self.cfg, rng, vis, si)

    def clip(self, i: int):
        """``(Clip, ClipData, item_seed)`` of clip ``i``."""
        from threeam.data.sampling import load_clip

        if self.config.data.num_clips:
            i %= self.config.data.num_clips
        item_seed = zlib.crc32(f"{self.seed}:{self.source.name}:{i}".encode())
        rng = np.random.default_rng(item_seed)
        need = self.config.data.min_present_frac
        best = None
        for _ in range(MAX_REDRAWS if need > 0 else 1):
            clip = self._draw_once(rng)
            area = self.visibility(clip.scene_index).area(clip.object_id)
            present = float(np.mean([area[t] > 0 for t in clip.frames]))
            if best is None or present > best[1]:
                best = (clip, present)
            if present >= need:
                break
        clip = best[0]
        return clip, load_clip(self.scenes[clip.scene_index], clip), item_seed


def clip_source(drawer: ClipDrawer, make_item) -> SourceFactory:
    """An engine source whose item ``i`` is ``make_item(*drawer.clip(i))``."""
    def get_item(i: int) -> Any:
        return make_item(*drawer.clip(i))

    return lambda position, ctx: iter(IndexedSource(get_item, 1 << 20, batch_size=None, seed=drawer.seed,
                                                    shuffle=False)(position, ctx))
