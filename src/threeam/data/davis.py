"""DAVIS 2017 / MOSE-style VOS folders: JPEG frames + palette-PNG annotations (no depth, no poses).

Layouts accepted (``<root>`` is the dataset root)::

    DAVIS:  <root>/JPEGImages/<res>/<seq>/00000.jpg   <root>/Annotations/<res>/<seq>/00000.png
            <root>/ImageSets/2017/{train,val}.txt     (res = "480p" or "Full-Resolution")
    MOSE:   <root>/JPEGImages/<seq>/00000.jpg         <root>/Annotations/<seq>/00000.png

Annotation pixel values are object ids (0 = background). 255 (DAVIS "void") is mapped to 0 by
default (``void_to_background=True``). Frames without an annotation file (e.g. MOSE valid, which
only annotates the first frame) have ``instance_ids=None``. ``depth``/``cam_to_world`` are None and
``K`` is a nominal 60-degree pinhole: these sequences are for continuous sampling only.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from threeam.data._io import read_rgb
from threeam.data.geometry import intrinsics_from_hfov
from threeam.data.types import PosedFrame, Scene, SceneMesh, frame_index
from threeam.errors import InputError, VideoError

__all__ = ["DavisSequence", "list_davis_sequences", "write_davis_sequence"]


def _read_palette(path: Path) -> np.ndarray:
    """A DAVIS annotation PNG as ``(H, W)`` uint8 palette indices (`threeam.io.masks.read_palette_png`)."""
    from threeam.io.masks import read_palette_png

    return read_palette_png(path)


def _resolve(root: Path, kind: str, resolution: str | None) -> Path:
    base = root / kind
    if resolution is not None and (base / resolution).is_dir():
        return base / resolution
    return base


def list_davis_sequences(root: str | os.PathLike, split: str | None = None, year: str = "2017",
                         resolution: str = "480p") -> list[str]:
    """Sequence names from ``ImageSets/<year>/<split>.txt`` or, without a split, the JPEGImages folders."""
    root = Path(root)
    if split is not None:
        p = root / "ImageSets" / year / f"{split}.txt"
        if not p.is_file():
            raise InputError(f"split file not found: {p}")
        return [l.strip() for l in p.read_text().splitlines() if l.strip()]
    d = _resolve(root, "JPEGImages", resolution)
    if not d.is_dir():
        raise VideoError(f"no JPEGImages folder under {root}")
    return sorted(p.name for p in d.iterdir() if p.is_dir())


class DavisSequence(Scene):
    """One DAVIS/MOSE sequence as a :class:`~threeam.data.types.Scene` (no depth or poses)."""

    def __init__(self, root: str | os.PathLike, sequence: str, resolution: str = "480p",
                 void_to_background: bool = True) -> None:
        root = Path(root)
        self.name = sequence
        self.image_dir = _resolve(root, "JPEGImages", resolution) / sequence
        self.anno_dir = _resolve(root, "Annotations", resolution) / sequence
        if not self.image_dir.is_dir():
            raise VideoError(f"sequence frames folder not found: {self.image_dir}")
        self.files = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not self.files:
            raise VideoError(f"no frames in {self.image_dir}")
        if not self.anno_dir.is_dir():
            raise InputError(f"annotation folder not found: {self.anno_dir}")
        self.void_to_background = void_to_background

    def __len__(self) -> int:
        return len(self.files)

    def _f(self, i: int) -> Path:
        return self.files[frame_index(i, len(self.files), self.name)]

    def instance_ids(self, i: int) -> np.ndarray | None:
        p = self.anno_dir / (self._f(i).stem + ".png")
        if not p.is_file():
            return None
        ids = _read_palette(p).astype(np.int32)
        if self.void_to_background:
            ids[ids == 255] = 0
        return ids

    def frame(self, i: int) -> PosedFrame:
        f = self._f(i)
        rgb = read_rgb(f)
        ids = self.instance_ids(i)
        if ids is not None and ids.shape != rgb.shape[:2]:
            raise InputError(f"annotation {self.anno_dir / (f.stem + '.png')} is {ids.shape}, frame is {rgb.shape[:2]}")
        h, w = rgb.shape[:2]
        return PosedFrame(rgb=rgb, depth=None, K=intrinsics_from_hfov(w, h, 60.0), cam_to_world=None,
                          instance_ids=ids, name=f.stem)

    def object_ids(self) -> list[int]:
        ids: set[int] = set()
        for i in range(len(self)):
            a = self.instance_ids(i)
            if a is not None:
                ids.update(int(x) for x in np.unique(a))
        ids.discard(0)
        return sorted(ids)

    def mesh(self) -> SceneMesh | None:
        return None


def write_davis_sequence(scene: Scene, root: str | os.PathLike, sequence: str | None = None,
                         resolution: str | None = "480p", annotate: str = "all") -> Path:
    """Write a scene as a DAVIS-style sequence (JPEG frames + palette PNGs; ``resolution=None`` gives
    the MOSE layout). ``annotate="first"`` writes only the first frame's annotation."""
    from threeam.data._io import write_jpg
    from threeam.io.masks import write_palette_png

    root = Path(root)
    seq = sequence or scene.name
    img = root / "JPEGImages" / (resolution or "") / seq
    ann = root / "Annotations" / (resolution or "") / seq
    for i in range(len(scene)):
        f = scene.frame(i)
        write_jpg(img / f"{i:05d}.jpg", f.rgb)
        if f.instance_ids is not None and (annotate == "all" or i == 0):
            if f.instance_ids.max(initial=0) > 255:
                raise InputError(f"frame {i}: palette PNGs hold ids 0..255, got {f.instance_ids.max()}")
            write_palette_png(ann / f"{i:05d}.png", f.instance_ids.astype(np.uint8))
    return img
