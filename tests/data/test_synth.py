import numpy as np
import pytest

from threeam.data.geometry import backproject, intrinsics_from_hfov, invert_rigid, look_at, transform_points
from threeam.data.render import BOX, SPHERE, Primitives, render_pinhole
from threeam.data.synth import SynthConfig, generate_scene, get_synth_config
from threeam.data.types import check_frame
from threeam.errors import InputError


def _one(kind, size, center=(0, 0, 0), inst=3):
    return Primitives(np.array([kind]), np.array([center], float), np.eye(3)[None], np.array([size], float),
                      np.array([inst]), np.array([4]), np.array([[1.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([1.0]))


def test_render_box_depth_and_ids_are_exact():
    # camera at z=-5 looking at +z onto a box face at z=-1 (half extent 1): depth 4 where hit
    K = intrinsics_from_hfov(32, 32, 60.0)
    c2w = look_at(np.array([0.0, 0.0, -5.0]), np.array([0.0, 0.0, 0.0]), up=np.array([0.0, -1.0, 0.0]))
    out = render_pinhole(_one(BOX, (1, 1, 1)), K, c2w, 32, 32)
    hit = out.ids == 3
    assert hit.sum() > 100 and (~hit).sum() > 100
    np.testing.assert_allclose(out.depth[hit], 4.0, atol=1e-5)
    assert (out.depth[~hit] == 0).all()
    # the projected square is 2/4 = 0.5 of the focal length wide: check the silhouette extent
    f = K[0, 0]
    cols = np.nonzero(hit.any(0))[0]
    assert abs((cols.max() - cols.min() + 1) - 2 * f / 4) <= 2


def test_render_sphere_backprojects_onto_surface():
    K = intrinsics_from_hfov(40, 40, 60.0)
    c2w = look_at(np.array([3.0, 0.5, 0.2]), np.zeros(3))
    out = render_pinhole(_one(SPHERE, (1, 1, 1)), K, c2w, 40, 40)
    rows, cols = np.nonzero(out.ids == 3)
    pts = backproject(out.depth, K, c2w, (rows, cols))
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0, atol=1e-4)


def test_scene_frames_are_consistent(tiny_scene):
    s = tiny_scene
    assert len(s) == 16
    assert len(s.object_ids()) >= 6
    for i in range(len(s)):
        check_frame(s.frame(i))
    f = s.frame(0)
    assert f.rgb.shape == (48, 64, 3) and f.depth.dtype == np.float32 and f.instance_ids.dtype == np.int32
    assert (f.depth > 0).all()  # closed room: every ray hits something
    # geometry: back-projected pixels of frame 0 reproject into frame 1 onto the same instance where visible
    g = s.frame(1)
    pts = backproject(f.depth, f.K, f.cam_to_world)
    pc = transform_points(invert_rigid(g.cam_to_world), pts)
    uv = pc[:, :2] / pc[:, 2:3] * np.array([g.K[0, 0], g.K[1, 1]]) + g.K[:2, 2]
    u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    ok = (pc[:, 2] > 0) & (u >= 0) & (u < 64) & (v >= 0) & (v < 48)
    visible = ok & (np.abs(g.depth[v.clip(0, 47), u.clip(0, 63)] - pc[:, 2]) < 0.02)
    assert visible.sum() > 500
    same = g.instance_ids[v[visible], u[visible]] == f.instance_ids.reshape(-1)[visible]
    assert same.mean() > 0.97


def test_distractors_are_exact_copies(tiny_scene):
    objs = {o["id"]: o for o in tiny_scene.meta["objects"]}
    copies = [o for o in objs.values() if o["distractor_of"] is not None]
    assert copies, "the tiny preset asks for distractor groups"
    for c in copies:
        src = objs[c["distractor_of"]]
        assert c["shape"] == src["shape"] and c["texture"] == src["texture"]
        assert np.linalg.norm(np.array(c["position"]) - np.array(src["position"])) > 0.2


def test_same_seed_is_byte_identical_and_different_seed_differs():
    cfg = get_synth_config("tiny", n_frames=3)
    a, b, c = generate_scene(cfg, seed=4), generate_scene(cfg, seed=4), generate_scene(cfg, seed=5)
    for i in range(3):
        assert a.frame(i).rgb.tobytes() == b.frame(i).rgb.tobytes()
        assert a.frame(i).depth.tobytes() == b.frame(i).depth.tobytes()
        assert a.frame(i).instance_ids.tobytes() == b.frame(i).instance_ids.tobytes()
    assert a.frame(0).rgb.tobytes() != c.frame(0).rgb.tobytes()


def test_orbit_makes_objects_leave_and_reenter(small_scene):
    s = small_scene
    reappear = 0
    for oid in s.object_ids():
        vis = np.array([(s.instance_ids(i) == oid).sum() > 0 for i in range(len(s))])
        runs = np.diff(np.concatenate([[0], vis.astype(int), [0]]))
        if (runs == 1).sum() >= 2:
            reappear += 1
    assert reappear >= 1


def test_mesh_labels_cover_objects(tiny_scene):
    m = tiny_scene.mesh()
    assert m.vertices.shape[1] == 3 and m.faces.max() < len(m.vertices)
    assert set(np.unique(m.labels).tolist()) - {0} == set(tiny_scene.object_ids())


def test_bad_config_raises():
    with pytest.raises(InputError):
        SynthConfig(height=2)
    with pytest.raises(InputError):
        get_synth_config("nope")
    with pytest.raises(InputError):
        SynthConfig(trajectory="spiral")


def test_culled_rendering_matches_brute_force(tiny_scene):
    prims = tiny_scene.meta["primitives"]
    for i in (0, 5, 11):
        f = tiny_scene.frame(i)
        full = render_pinhole(prims, f.K, f.cam_to_world, 48, 64, cull=False)
        assert (full.ids == f.instance_ids).mean() > 0.998  # only grazing silhouette rays may differ
        same = full.ids == f.instance_ids
        np.testing.assert_allclose(full.depth[same], f.depth[same], rtol=1e-5, atol=1e-5)


def test_varied_rooms_keep_the_objects_and_change_only_the_room_surfaces():
    import dataclasses

    import torch

    from threeam.data.render import TEXTURES, _texture
    from threeam.data.scene_store import config_key
    from threeam.data.synth import get_synth_config, make_layout

    fixed = get_synth_config("tiny")
    varied = dataclasses.replace(fixed, room_style="varied")
    a = make_layout(fixed, np.random.default_rng(5))
    b = make_layout(varied, np.random.default_rng(5))
    assert a.surfaces is None and b.surfaces is not None
    assert np.array_equal(a.room, b.room) and len(a.objects) == len(b.objects)
    assert all(np.array_equal(x.position, y.position) and x.spec.texture == y.spec.texture
               for x, y in zip(a.objects, b.objects))
    pa, pb = a.primitives(), b.primitives()
    room = pa.instance == 0
    assert np.array_equal(pa.texture[~room], pb.texture[~room])
    assert not np.allclose(pa.color_a[room], pb.color_a[room])
    assert TEXTURES.index("plain") not in set(pb.texture[room].tolist())
    # a default-valued new field leaves the cache key of existing scenes unchanged, the other value does not
    assert config_key(fixed) != config_key(varied)
    plain = {k: v for k, v in dataclasses.asdict(fixed).items() if k != "room_style"}
    import hashlib
    import json
    assert config_key(fixed) == hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:12]
    with pytest.raises(InputError, match="room_style"):
        dataclasses.replace(fixed, room_style="wild")
    # "noise" is aperiodic: cells one texture period apart differ, where "checker" repeats every 2
    q = torch.tensor([[0.5 + 2 * k, 0.5, 0.5] for k in range(16)], dtype=torch.float64)
    noise = _texture(torch.full((16,), TEXTURES.index("noise")), q, torch.ones(16, dtype=torch.float64))
    checker = _texture(torch.zeros(16, dtype=torch.long), q, torch.ones(16, dtype=torch.float64))
    assert checker.unique().numel() == 1 and noise.unique().numel() > 8
    assert ((noise >= 0) & (noise <= 1)).all()
