"""Deterministic synthetic wide-baseline indoor scenes (pure NumPy/PyTorch, no GL).

A scene is a textured room (floor, ceiling, four walls - instance id 0) filled with objects
(boxes, cylinders, spheres and composites such as tables with legs, lamps, snowmen), large
objects that span the view (beds, sofas, shelves), and look-alike distractors: exact copies
(same shape, size and solid texture) of some objects placed elsewhere. A camera trajectory with
wide baselines (an orbit looking outwards, a walk-through with 90-180 degree turns, or turning on
the spot) makes objects leave and re-enter the view. Every frame has RGB, z-depth, K,
camera-to-world and per-pixel instance ids; the scene also has a mesh with per-vertex labels.

Everything is driven by one ``numpy.random.Generator(seed)``: same config + seed gives
byte-identical frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from threeam.data.geometry import intrinsics_from_hfov, look_at
from threeam.data.mesh import primitives_to_mesh
from threeam.data.render import BOX, CYLINDER, SPHERE, TEXTURES, Primitives, render_pinhole
from threeam.data.types import InMemoryScene, PosedFrame, SceneMesh
from threeam.errors import InputError
from threeam.presets import preset_functions

__all__ = ["SynthConfig", "ROOM_STYLES", "SYNTH_PRESETS", "get_synth_config", "synth_presets", "SceneLayout", "make_layout",
           "make_trajectory", "generate_scene", "TRAJECTORIES"]

TRAJECTORIES = ("orbit", "walk", "turn")
ROOM_STYLES = ("fixed", "varied")
"""``fixed``: every room has the same floor / ceiling / wall textures and colours (checker floor,
plain ceiling, stripes / waves / stripes / rings walls); ``varied``: each of the six surfaces gets
its own texture (any patterned one or the aperiodic ``noise``), colours and period, drawn per scene
after the layout (the room and objects are those of the ``fixed`` scene of the same seed; the camera
path is drawn after them, so it differs)."""


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic scene parameters.

    Attributes:
        height, width: frame size in pixels.
        n_frames: frames per scene.
        hfov_deg: horizontal field of view of the pinhole camera.
        n_objects: number of distinct ordinary objects (before distractor copies).
        n_large: number of large objects (bed / sofa / shelf) that can fill the view.
        n_distractor_groups: how many objects get look-alike copies; each gets 1-2 copies.
        room_size: (min, max) of the room's side lengths in metres.
        room_height: (min, max) of the ceiling height.
        trajectory: one of ``orbit``, ``walk``, ``turn`` or ``mixed`` (picked per scene by seed).
        camera_height: (min, max) of camera height above the floor in metres.
        device: torch device for ray casting (``cpu`` or ``cuda``).
        room_style: ``fixed`` or ``varied`` room surfaces (:data:`ROOM_STYLES`).
    """

    height: int = 256
    width: int = 256
    n_frames: int = 100
    hfov_deg: float = 65.0
    n_objects: int = 10
    n_large: int = 2
    n_distractor_groups: int = 3
    room_size: tuple[float, float] = (5.5, 8.0)
    room_height: tuple[float, float] = (2.6, 3.2)
    trajectory: str = "mixed"
    camera_height: tuple[float, float] = (1.2, 1.6)
    device: str = "cpu"
    room_style: str = "fixed"

    def __post_init__(self) -> None:
        if self.room_style not in ROOM_STYLES:
            raise InputError(f"room_style must be one of {ROOM_STYLES}, got {self.room_style!r}")
        if self.height < 8 or self.width < 8:
            raise InputError(f"frame size must be at least 8x8, got {self.height}x{self.width}")
        if self.n_frames < 1:
            raise InputError(f"n_frames must be >= 1, got {self.n_frames}")
        if not 10.0 <= self.hfov_deg <= 150.0:
            raise InputError(f"hfov_deg must be in [10, 150], got {self.hfov_deg}")
        if self.trajectory not in TRAJECTORIES + ("mixed",):
            raise InputError(f"trajectory must be one of {TRAJECTORIES + ('mixed',)}, got {self.trajectory!r}")
        if self.n_objects < 1 or self.n_large < 0 or self.n_distractor_groups < 0:
            raise InputError("n_objects must be >= 1 and n_large, n_distractor_groups >= 0")
        if self.n_distractor_groups > self.n_objects:
            raise InputError(f"n_distractor_groups ({self.n_distractor_groups}) cannot exceed "
                             f"n_objects ({self.n_objects})")


SYNTH_PRESETS: dict[str, SynthConfig] = {
    "default": SynthConfig(),
    "small": SynthConfig(height=128, width=128, n_frames=48),
    "tiny": SynthConfig(height=48, width=64, n_frames=16, n_objects=6, n_large=1, n_distractor_groups=2),
    # look-alike scenes for the toy ablation (docs/evidence.md): 4 of 6 objects get 1-2 exact copies
    # elsewhere in the room, 48 wide-baseline frames so objects leave the view and come back
    "lookalike": SynthConfig(height=96, width=128, n_frames=48, n_objects=6, n_large=1, n_distractor_groups=4),
}


get_synth_config, synth_presets = preset_functions(SYNTH_PRESETS, "synth", "synthetic", default="default")




# --------------------------------------------------------------------------------------------
# object library (local frame: origin at the floor centre of the object, z up)

@dataclass
class _Part:
    kind: int
    center: np.ndarray
    size: np.ndarray


@dataclass
class ObjectSpec:
    """An object template: parts in its local frame, a texture, a footprint radius."""

    shape: str
    parts: list
    footprint: float
    height: float
    texture: int
    color_a: np.ndarray
    color_b: np.ndarray
    tex_scale: float
    large: bool = False


def _color(rng: np.random.Generator) -> np.ndarray:
    h = rng.uniform(0, 1)
    s = rng.uniform(0.45, 0.95)
    v = rng.uniform(0.55, 1.0)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _obj_box(rng):
    h = rng.uniform([0.12, 0.12, 0.1], [0.4, 0.4, 0.45])
    return "box", [_Part(BOX, np.array([0, 0, h[2]]), h)], float(np.hypot(h[0], h[1])), 2 * h[2]


def _obj_cylinder(rng):
    r, hh = rng.uniform(0.08, 0.3), rng.uniform(0.1, 0.6)
    return "cylinder", [_Part(CYLINDER, np.array([0, 0, hh]), np.array([r, r, hh]))], r, 2 * hh


def _obj_sphere(rng):
    r = rng.uniform(0.1, 0.35)
    return "sphere", [_Part(SPHERE, np.array([0, 0, r]), np.array([r, r, r]))], r, 2 * r


def _obj_table(rng):
    a, b, H = rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.45), rng.uniform(0.6, 0.85)
    parts = [_Part(BOX, np.array([0, 0, H - 0.025]), np.array([a, b, 0.025]))]
    lr = 0.03
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_Part(CYLINDER, np.array([sx * (a - 0.06), sy * (b - 0.06), (H - 0.05) / 2]),
                               np.array([lr, lr, (H - 0.05) / 2])))
    return "table", parts, float(np.hypot(a, b)), H


def _obj_lamp(rng):
    H = rng.uniform(1.0, 1.6)
    rs = rng.uniform(0.12, 0.2)
    parts = [_Part(CYLINDER, np.array([0, 0, 0.02]), np.array([0.15, 0.15, 0.02])),
             _Part(CYLINDER, np.array([0, 0, H / 2]), np.array([0.025, 0.025, H / 2])),
             _Part(SPHERE, np.array([0, 0, H + rs * 0.8]), np.array([rs, rs, rs]))]
    return "lamp", parts, 0.2, H + 2 * rs


def _obj_snowman(rng):
    r1, r2 = rng.uniform(0.18, 0.28), rng.uniform(0.1, 0.16)
    parts = [_Part(SPHERE, np.array([0, 0, r1]), np.array([r1] * 3)),
             _Part(SPHERE, np.array([0, 0, 2 * r1 + r2 * 0.9]), np.array([r2] * 3))]
    return "snowman", parts, r1, 2 * r1 + 2 * r2


def _obj_bed(rng):
    a, b, hh = rng.uniform(0.9, 1.1), rng.uniform(0.7, 0.9), rng.uniform(0.22, 0.3)
    parts = [_Part(BOX, np.array([0, 0, hh]), np.array([a, b, hh])),
             _Part(BOX, np.array([-a - 0.04, 0, 0.5]), np.array([0.04, b, 0.5]))]
    return "bed", parts, float(np.hypot(a + 0.08, b)), 1.0


def _obj_sofa(rng):
    a, b = rng.uniform(0.8, 1.1), rng.uniform(0.4, 0.5)
    parts = [_Part(BOX, np.array([0, 0, 0.22]), np.array([a, b, 0.22])),
             _Part(BOX, np.array([0, -b + 0.1, 0.55]), np.array([a, 0.1, 0.33])),
             _Part(BOX, np.array([-a + 0.08, 0, 0.35]), np.array([0.08, b, 0.35])),
             _Part(BOX, np.array([a - 0.08, 0, 0.35]), np.array([0.08, b, 0.35]))]
    return "sofa", parts, float(np.hypot(a, b)), 0.88


def _obj_shelf(rng):
    a, b, hh = rng.uniform(0.5, 0.9), rng.uniform(0.2, 0.3), rng.uniform(0.9, 1.1)
    return "shelf", [_Part(BOX, np.array([0, 0, hh]), np.array([a, b, hh]))], float(np.hypot(a, b)), 2 * hh


_SMALL: list[Callable] = [_obj_box, _obj_cylinder, _obj_sphere, _obj_table, _obj_lamp, _obj_snowman]
_LARGE: list[Callable] = [_obj_bed, _obj_sofa, _obj_shelf]


def _make_spec(rng: np.random.Generator, large: bool) -> ObjectSpec:
    lib = _LARGE if large else _SMALL
    shape, parts, foot, height = lib[int(rng.integers(len(lib)))](rng)
    tex = int(rng.integers(TEXTURES.index("plain")))  # the periodic textures: never "plain" (objects need cues)
    return ObjectSpec(shape, parts, foot, height, tex, _color(rng), _color(rng),
                      float(rng.uniform(0.04, 0.15)), large)


@dataclass
class PlacedObject:
    """An object instance in the scene."""

    instance_id: int
    spec: ObjectSpec
    position: np.ndarray  # (3,) floor point (x, y, z_base)
    yaw: float
    distractor_of: int | None = None  # instance id of the original for look-alike copies


@dataclass
class SceneLayout:
    """Room and objects of one synthetic scene."""

    room: np.ndarray  # (3,) full extents (x, y, height), room centred at origin, floor at z=0
    free_radius: float  # cameras stay within this radius of the origin
    objects: list[PlacedObject] = field(default_factory=list)
    surfaces: dict | None = None  # room_style "varied": per-surface texture (6,), colours (6, 3) x 2, period (6,)

    def primitives(self) -> Primitives:
        """All primitives (room structure with id 0, then objects)."""
        return Primitives.concat([self._room_prims()] + [self._object_prims(o) for o in self.objects])

    def _room_prims(self) -> Primitives:
        X, Y, H = self.room
        t = 0.1
        centers = np.array([[0, 0, -t], [0, 0, H + t], [-X / 2 - t, 0, H / 2], [X / 2 + t, 0, H / 2],
                            [0, -Y / 2 - t, H / 2], [0, Y / 2 + t, H / 2]])
        sizes = np.array([[X / 2 + 2 * t, Y / 2 + 2 * t, t], [X / 2 + 2 * t, Y / 2 + 2 * t, t],
                          [t, Y / 2 + 2 * t, H / 2 + 2 * t], [t, Y / 2 + 2 * t, H / 2 + 2 * t],
                          [X / 2 + 2 * t, t, H / 2 + 2 * t], [X / 2 + 2 * t, t, H / 2 + 2 * t]])
        n = 6
        ca = np.array([[0.55, 0.42, 0.3], [0.92, 0.92, 0.9], [0.8, 0.78, 0.7], [0.72, 0.8, 0.78],
                       [0.78, 0.72, 0.8], [0.82, 0.8, 0.66]])
        cb = ca * np.array([[0.75], [0.97], [0.88], [0.88], [0.88], [0.88]])
        tex = np.array([0, 4, 1, 2, 1, 3])
        scale = np.array([0.5, 1.0, 0.35, 0.3, 0.45, 0.4])
        if self.surfaces is not None:
            tex, ca, cb, scale = (self.surfaces[k] for k in ("texture", "color_a", "color_b", "scale"))
        return Primitives(np.full(n, BOX), centers, np.tile(np.eye(3), (n, 1, 1)), sizes,
                          np.zeros(n, dtype=np.int64), tex, ca, cb, scale)

    @staticmethod
    def _object_prims(o: PlacedObject) -> Primitives:
        c, s = math.cos(o.yaw), math.sin(o.yaw)
        R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        parts = o.spec.parts
        n = len(parts)
        return Primitives(
            kind=np.array([p.kind for p in parts], dtype=np.int64),
            center=np.stack([R @ p.center + o.position for p in parts]),
            rotation=np.tile(R, (n, 1, 1)),
            size=np.stack([p.size for p in parts]),
            instance=np.full(n, o.instance_id, dtype=np.int64),
            texture=np.full(n, o.spec.texture, dtype=np.int64),
            color_a=np.tile(o.spec.color_a, (n, 1)),
            color_b=np.tile(o.spec.color_b, (n, 1)),
            tex_scale=np.full(n, o.spec.tex_scale),
        )

    def describe(self) -> list[dict]:
        """JSON-friendly object list."""
        return [{"id": o.instance_id, "shape": o.spec.shape, "large": o.spec.large,
                 "position": [round(float(x), 4) for x in o.position], "yaw": round(float(o.yaw), 4),
                 "distractor_of": o.distractor_of, "texture": TEXTURES[o.spec.texture]}
                for o in self.objects]


def _place(rng, layout: SceneLayout, spec: ObjectSpec, placed: list, near_wall: bool,
           tries: int = 200) -> tuple[np.ndarray, float] | None:
    X, Y, _ = layout.room
    for _ in range(tries):
        yaw = float(rng.uniform(-math.pi, math.pi))
        margin = spec.footprint + 0.05
        if margin * 2 >= min(X, Y):
            return None
        if near_wall:
            side = int(rng.integers(4))
            u = rng.uniform(-0.5, 0.5)
            if side < 2:
                p = np.array([(X / 2 - margin) * (1 if side == 0 else -1), u * (Y - 2 * margin)])
            else:
                p = np.array([u * (X - 2 * margin), (Y / 2 - margin) * (1 if side == 2 else -1)])
        else:
            p = rng.uniform([-X / 2 + margin, -Y / 2 + margin], [X / 2 - margin, Y / 2 - margin])
        if np.linalg.norm(p) < layout.free_radius + spec.footprint + 0.15:
            continue
        if all(np.linalg.norm(p - q) > spec.footprint + r + 0.08 for q, r in placed):
            placed.append((p, spec.footprint))
            return np.array([p[0], p[1], 0.0]), yaw
    return None


def make_layout(config: SynthConfig, rng: np.random.Generator) -> SceneLayout:
    """Sample a room with objects, large objects and look-alike distractor copies."""
    X = rng.uniform(*config.room_size)
    Y = rng.uniform(*config.room_size)
    H = rng.uniform(*config.room_height)
    layout = SceneLayout(room=np.array([X, Y, H]), free_radius=0.18 * min(X, Y))
    placed: list = []
    next_id = 1
    specs = [(_make_spec(rng, True), True) for _ in range(config.n_large)]
    specs += [(_make_spec(rng, False), False) for _ in range(config.n_objects)]
    originals: list[PlacedObject] = []
    for spec, large in specs:
        pos = _place(rng, layout, spec, placed, near_wall=large)
        if pos is None:
            continue
        obj = PlacedObject(next_id, spec, pos[0], pos[1])
        next_id += 1
        layout.objects.append(obj)
        if not large:
            originals.append(obj)
    # look-alike distractors: exact copies of some ordinary objects, elsewhere
    order = rng.permutation(len(originals))[:config.n_distractor_groups]
    for i in order:
        src = originals[int(i)]
        for _ in range(int(rng.integers(1, 3))):
            pos = _place(rng, layout, src.spec, placed, near_wall=False)
            if pos is None:
                break
            layout.objects.append(PlacedObject(next_id, src.spec, pos[0], pos[1], distractor_of=src.instance_id))
            next_id += 1
    # small objects on table tops (occluders / composites seen from above)
    for o in list(layout.objects):
        if o.spec.shape == "table" and o.distractor_of is None:
            spec = _make_spec(rng, False)
            if spec.shape in ("box", "cylinder", "sphere") and spec.footprint < 0.3:
                top = o.spec.height
                layout.objects.append(PlacedObject(next_id, spec, o.position + np.array([0, 0, top]),
                                                   float(rng.uniform(-math.pi, math.pi))))
                next_id += 1
    if config.room_style == "varied":
        layout.surfaces = _varied_surfaces(np.random.default_rng(rng.integers(2 ** 63)))
    return layout


def _varied_surfaces(rng: np.random.Generator) -> dict:
    """Random textures, colours and periods for the room's six surfaces (floor, ceiling, 4 walls)."""
    choices = [i for i, t in enumerate(TEXTURES) if t != "plain"]
    tex = np.array([choices[int(i)] for i in rng.integers(len(choices), size=6)])
    ca = rng.uniform(0.25, 0.95, size=(6, 3))
    cb = ca * rng.uniform(0.45, 0.85, size=(6, 1))
    return {"texture": tex, "color_a": ca, "color_b": cb, "scale": rng.uniform(0.15, 0.6, size=6)}


def _smooth_interp(keys: np.ndarray, n: int) -> np.ndarray:
    """Interpolate K keyframes ``(K, D)`` to ``(n, D)`` with smoothstep easing between keys."""
    if len(keys) == 1:
        return np.repeat(keys, n, axis=0)
    s = np.linspace(0, len(keys) - 1, n)
    i = np.minimum(np.floor(s).astype(int), len(keys) - 2)
    f = s - i
    f = f * f * (3 - 2 * f)
    return keys[i] * (1 - f)[:, None] + keys[i + 1] * f[:, None]


def make_trajectory(kind: str, n_frames: int, layout: SceneLayout, config: SynthConfig,
                    rng: np.random.Generator) -> np.ndarray:
    """Camera-to-world poses ``(n_frames, 4, 4)`` for a wide-baseline trajectory.

    * ``orbit``: the camera circles the room centre on radius ~free_radius looking outwards, turning
      1-1.5 full revolutions: every object leaves and re-enters the view.
    * ``walk``: waypoints inside the free zone with heading changes of 90-180 degrees per segment.
    * ``turn``: nearly stationary, turning back and forth by 90-180 degrees.
    """
    rc = layout.free_radius
    if kind == "orbit":
        phi0 = rng.uniform(-math.pi, math.pi)
        total = 2 * math.pi * rng.uniform(1.0, 1.5) * (1 if rng.random() < 0.5 else -1)
        phi = phi0 + total * np.linspace(0, 1, n_frames)
        r = rc * rng.uniform(0.5, 0.9)
        pos = np.stack([r * np.cos(phi), r * np.sin(phi)], -1)
        yaw = phi + rng.uniform(-0.3, 0.3)
        pitch = np.full(n_frames, -math.radians(rng.uniform(12, 25)))
        height = np.full(n_frames, rng.uniform(*config.camera_height))
    else:
        nk = max(2, min(7, n_frames // 12 + 2))
        yaws = [rng.uniform(-math.pi, math.pi)]
        for _ in range(nk - 1):
            yaws.append(yaws[-1] + math.radians(rng.uniform(90, 180)) * (1 if rng.random() < 0.6 else -1))
        if kind == "walk":
            ang = rng.uniform(-math.pi, math.pi, nk)
            rad = rc * np.sqrt(rng.uniform(0, 0.8, nk))
            pk = np.stack([rad * np.cos(ang), rad * np.sin(ang)], -1)
        else:
            c = rng.uniform(-0.3, 0.3, 2) * rc
            pk = c[None] + rng.normal(0, 0.05 * rc, (nk, 2))
        pitches = -np.radians(rng.uniform(5, 30, nk))
        heights = rng.uniform(*config.camera_height, nk)
        keys = np.concatenate([pk, np.array(yaws)[:, None], pitches[:, None], heights[:, None]], 1)
        traj = _smooth_interp(keys, n_frames)
        pos, yaw, pitch, height = traj[:, :2], traj[:, 2], traj[:, 3], traj[:, 4]
    poses = np.empty((n_frames, 4, 4))
    for t in range(n_frames):
        eye = np.array([pos[t, 0], pos[t, 1], height[t]])
        fwd = np.array([math.cos(pitch[t]) * math.cos(yaw[t]), math.cos(pitch[t]) * math.sin(yaw[t]),
                        math.sin(pitch[t])])
        poses[t] = look_at(eye, eye + fwd)
    return poses


def generate_scene(config: SynthConfig | str = "default", seed: int = 0, name: str | None = None,
                   progress: Callable[[int], None] | None = None) -> InMemoryScene:
    """Generate and render one synthetic scene.

    Args:
        config: a :class:`SynthConfig` or preset name.
        seed: RNG seed; the same (config, seed) gives byte-identical frames.
        name: scene name (default ``synth_{seed:05d}``).
        progress: optional callback called with each rendered frame index.
    Returns:
        :class:`InMemoryScene` with ``n_frames`` :class:`PosedFrame` (rgb uint8, z-depth float32,
        K, cam_to_world, instance ids int32), a :class:`SceneMesh` with per-vertex labels, and
        ``meta`` = {"seed", "trajectory", "room", "objects": [...]}.
    """
    if isinstance(config, str):
        config = get_synth_config(config)
    rng = np.random.default_rng(seed)
    layout = make_layout(config, rng)
    kind = config.trajectory if config.trajectory != "mixed" else TRAJECTORIES[int(rng.integers(3))]
    poses = make_trajectory(kind, config.n_frames, layout, config, rng)
    prims = layout.primitives()
    K = intrinsics_from_hfov(config.width, config.height, config.hfov_deg)
    frames = []
    for t in range(config.n_frames):
        out = render_pinhole(prims, K, poses[t], config.height, config.width, device=config.device)
        frames.append(PosedFrame(rgb=out.rgb, depth=out.depth, K=K.copy(), cam_to_world=poses[t].copy(),
                                 instance_ids=out.ids, name=f"frame_{t:06d}"))
        if progress is not None:
            progress(t)
    v, f, lab, col = primitives_to_mesh(prims)
    meta = {"seed": seed, "trajectory": kind, "room": [float(x) for x in layout.room],
            "objects": layout.describe()}
    scene = InMemoryScene(name=name or f"synth_{seed:05d}", frames=frames,
                          scene_mesh=SceneMesh(vertices=v, faces=f, labels=lab, colors=col), meta=meta)
    scene.meta["primitives"] = prims
    return scene
