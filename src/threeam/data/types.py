"""Reader-agnostic in-memory types shared by every dataset reader, the samplers and the trainer.

Conventions (all readers follow them):

* Camera axes are OpenCV: x right, y down, z forward. A pixel ``(u, v)`` = (column, row) has its
  centre at integer coordinates, so the ray of pixel ``(u, v)`` is ``K^-1 [u, v, 1]``.
* ``cam_to_world`` is a ``(4, 4)`` float64 rigid transform mapping camera points to world points.
* Depth is **z-depth** in metres (distance along the camera z axis), ``0`` = invalid/unknown.
* Instance ids are int32, ``0`` = no annotated object (background, walls, floor, unlabelled).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from threeam.errors import InputError

__all__ = ["PosedFrame", "SceneMesh", "Scene", "InMemoryScene", "check_frame", "frame_index"]


def frame_index(index: int, n: int, scene: str) -> int:
    """`index` (negative counts from the end, as in a list) as a position in ``range(n)``.

    Raises:
        InputError: outside ``[-n, n)``; the message names `scene` and its frame count.
    """
    if not -n <= index < n:
        raise InputError(f"frame index {index} out of range for {scene} ({n} frames)")
    return index % n


@dataclass
class PosedFrame:
    """One frame of a posed RGB-D(-instance) sequence.

    Attributes:
        rgb: ``(H, W, 3)`` uint8.
        depth: ``(H, W)`` float32 z-depth in metres (0 = invalid), or None when the dataset has none.
        K: ``(3, 3)`` float64 pinhole intrinsics for ``rgb``.
        cam_to_world: ``(4, 4)`` float64 camera-to-world transform, or None for frames without a pose.
        instance_ids: ``(H, W)`` int32 object id per pixel (0 = none), or None when unknown
            (e.g. a ScanNet++ frame without a pose cannot have its 3D labels projected).
        name: the frame's name in its dataset (file stem), for messages and outputs.
    """

    rgb: np.ndarray
    depth: np.ndarray | None
    K: np.ndarray
    cam_to_world: np.ndarray | None
    instance_ids: np.ndarray | None
    name: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


@dataclass
class SceneMesh:
    """A scene's geometry with per-vertex instance labels.

    Attributes:
        vertices: ``(V, 3)`` float32 world coordinates.
        faces: ``(F, 3)`` int64 vertex indices, or None for a point set.
        labels: ``(V,)`` int32 instance id per vertex (0 = none).
        colors: optional ``(V, 3)`` uint8 vertex colours.
    """

    vertices: np.ndarray
    faces: np.ndarray | None
    labels: np.ndarray
    colors: np.ndarray | None = None


@runtime_checkable
class Scene(Protocol):
    """What every reader (and the synthetic generator) provides.

    ``frame(i)`` loads everything; ``instance_ids(i)`` may be cheaper (no RGB decode) and is what
    the samplers and the evaluation builder use to scan visibility.
    """

    name: str

    def __len__(self) -> int: ...

    def frame(self, index: int) -> PosedFrame: ...

    def instance_ids(self, index: int) -> np.ndarray | None: ...

    def object_ids(self) -> list[int]: ...

    def mesh(self) -> SceneMesh | None: ...


def check_frame(frame: PosedFrame) -> PosedFrame:
    """Validate shapes/dtypes of a frame; raise :class:`InputError` naming the frame on mismatch."""
    name = frame.name or "<frame>"
    if frame.rgb.ndim != 3 or frame.rgb.shape[2] != 3 or frame.rgb.dtype != np.uint8:
        raise InputError(f"{name}: rgb must be (H, W, 3) uint8, got {frame.rgb.shape} {frame.rgb.dtype}")
    h, w = frame.size
    if frame.depth is not None and (frame.depth.shape != (h, w) or frame.depth.dtype != np.float32):
        raise InputError(f"{name}: depth must be ({h}, {w}) float32, got {frame.depth.shape} {frame.depth.dtype}")
    if frame.instance_ids is not None and (frame.instance_ids.shape != (h, w)
                                           or frame.instance_ids.dtype != np.int32):
        raise InputError(f"{name}: instance ids must be ({h}, {w}) int32, got "
                         f"{frame.instance_ids.shape} {frame.instance_ids.dtype}")
    if frame.K.shape != (3, 3):
        raise InputError(f"{name}: K must be (3, 3), got {frame.K.shape}")
    if frame.cam_to_world is not None and frame.cam_to_world.shape != (4, 4):
        raise InputError(f"{name}: cam_to_world must be (4, 4), got {frame.cam_to_world.shape}")
    return frame


@dataclass
class InMemoryScene:
    """A :class:`Scene` held in memory (synthetic scenes, tests).

    Attributes:
        name: scene name.
        frames: the frames, in capture order.
        scene_mesh: optional mesh/point set with per-vertex labels.
        meta: free-form metadata (e.g. the synthetic generator's object list).
    """

    name: str
    frames: Sequence[PosedFrame]
    scene_mesh: SceneMesh | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def _check_index(self, index: int) -> int:
        return frame_index(index, len(self.frames), f"scene {self.name!r}")

    def frame(self, index: int) -> PosedFrame:
        return self.frames[self._check_index(index)]

    def instance_ids(self, index: int) -> np.ndarray | None:
        return self.frames[self._check_index(index)].instance_ids

    def object_ids(self) -> list[int]:
        ids: set[int] = set()
        if self.scene_mesh is not None:
            ids.update(int(i) for i in np.unique(self.scene_mesh.labels))
        for f in self.frames:
            if f.instance_ids is not None:
                ids.update(int(i) for i in np.unique(f.instance_ids))
        ids.discard(0)
        return sorted(ids)

    def mesh(self) -> SceneMesh | None:
        return self.scene_mesh
