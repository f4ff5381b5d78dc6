"""The ScanNet-style mesh export of generated scenes: superpoints, GT ids, observed vertices, layout."""
from __future__ import annotations

import numpy as np
import pytest

from threeam.data.render import BOX, CYLINDER, SPHERE, Primitives
from threeam.data.synth_scannet import (SHAPE_LABELS, dense_primitive_mesh, observed_vertices, synth_scannet_mesh,
                                        synth_scene_id, write_synth_scannet)
from threeam.errors import InputError


@pytest.fixture(scope="module")
def mesh(tiny_scene):
    return synth_scannet_mesh(tiny_scene)


def test_superpoints_never_cross_instances(mesh):
    pairs = np.unique(np.stack([mesh.superpoints, mesh.instances], 1), axis=0)
    assert len(pairs) == len(np.unique(mesh.superpoints))
    assert len(np.unique(mesh.superpoints)) > 20  # objects are split into patches


def test_gt_ids_follow_the_benchmark_format(tiny_scene, mesh):
    shapes = {o["id"]: o["shape"] for o in tiny_scene.meta["objects"]}
    for g in np.unique(mesh.gt_ids):
        if g == 0:
            continue
        label, inst = divmod(int(g), 1000)
        m = mesh.gt_ids == g
        assert m.sum() >= 100
        if inst in shapes:
            assert label == SHAPE_LABELS[shapes[inst]][1]
            assert np.all(mesh.instances[m] == inst)
        else:
            assert label in (1, 3) and np.all(mesh.instances[m] == 0)  # walls and floor
    assert {o["label_id"] for o in mesh.objects} <= set(mesh.categories)
    # every annotated object's vertex set equals the union of its listed superpoints
    for o in mesh.objects:
        m = np.isin(mesh.superpoints, o["segments"])
        assert np.all(mesh.gt_ids[m] == o["label_id"] * 1000 + o["instance"])


def test_only_observed_vertices_are_kept(tiny_scene, mesh):
    frames = [tiny_scene.frame(i) for i in range(len(tiny_scene))]
    assert observed_vertices(mesh.vertices, frames).min() >= 1
    full = synth_scannet_mesh(tiny_scene, drop_unobserved=False)
    assert len(full.vertices) > len(mesh.vertices)
    assert mesh.faces.max() < len(mesh.vertices) and mesh.faces.min() >= 0


def test_small_objects_are_unannotated(tiny_scene):
    strict = synth_scannet_mesh(tiny_scene, min_gt_vertices=10 ** 6)
    assert np.all(strict.gt_ids == 0) and strict.objects == []


def test_primitive_meshes_have_outward_normals_and_spacing():
    prims = Primitives(kind=np.array([BOX, CYLINDER, SPHERE]), center=np.array([[0, 0, 0], [2, 0, 0], [4, 0, 0.0]]),
                       rotation=np.tile(np.eye(3), (3, 1, 1)), size=np.array([[0.3, 0.2, 0.1], [0.2, 0.2, 0.3],
                                                                              [0.25, 0.25, 0.25]]),
                       instance=np.array([1, 2, 3]), texture=np.zeros(3, dtype=np.int64),
                       color_a=np.ones((3, 3)) * 0.5, color_b=np.ones((3, 3)) * 0.5, tex_scale=np.ones(3))
    v, f, prim, seg, col = dense_primitive_mesh(prims, object_spacing=0.05, n_room=0)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    n = np.cross(b - a, c - a)
    area = np.linalg.norm(n, axis=1)
    out = ((a + b + c) / 3 - prims.center[prim[f[:, 0]]]) * n
    assert np.all(out.sum(1)[area > 1e-9] > 0)
    edges = np.linalg.norm(a - b, axis=1)
    assert np.median(edges) <= 0.06
    with pytest.raises(InputError):
        dense_primitive_mesh(prims, object_spacing=0.0)


def test_scannet_layout_round_trip(tiny_scene, mesh, tmp_path):
    from threeam.data.scannet import open_scannet

    folder = write_synth_scannet(tiny_scene, tmp_path, mesh=mesh)
    assert folder.name == synth_scene_id(7)
    scan = open_scannet(tmp_path)[0]
    np.testing.assert_array_equal(scan.gt_ids("scannet200"), mesh.gt_ids)
    np.testing.assert_allclose(scan.vertices, mesh.vertices)
    np.testing.assert_array_equal(scan.faces, mesh.faces)
    # same partition into superpoints
    pairs = np.unique(np.stack([scan.superpoints, mesh.superpoints], 1), axis=0)
    assert len(pairs) == len(np.unique(mesh.superpoints)) == len(np.unique(scan.superpoints))
    assert len(scan) == len(tiny_scene)
    f = scan.rgbd(3)
    src = tiny_scene.frame(3)
    np.testing.assert_allclose(f.depth, src.depth, atol=6e-4)  # millimetre PNGs
    np.testing.assert_allclose(f.cam_to_world, src.cam_to_world, atol=1e-5)
    np.testing.assert_allclose(f.K_depth, src.K, atol=1e-5)
    assert np.abs(f.rgb.astype(int) - src.rgb.astype(int)).mean() < 12  # JPEG
    with pytest.raises(InputError):
        synth_scene_id(1000)


def test_synth_command_writes_the_scannet_layout(tmp_path):
    from typer.testing import CliRunner

    from threeam.cli import app
    from threeam.data.scannet import open_scannet

    res = CliRunner().invoke(app, ["synth", str(tmp_path), "--scenes", "2", "--preset", "tiny", "--frames", "4",
                                   "--seed", "5", "--layout", "scannet"])
    assert res.exit_code == 0, res.output
    scans = open_scannet(tmp_path, split_file=tmp_path / "splits" / "synth.txt")
    assert [s.name for s in scans] == ["scene9005_00", "scene9006_00"]
    assert len(scans[0]) == 4 and scans[0].gt_ids().max() > 1000
    again = CliRunner().invoke(app, ["synth", str(tmp_path), "--scenes", "1", "--seed", "5", "--layout", "scannet"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = CliRunner().invoke(app, ["synth", str(tmp_path), "--layout", "obj"])
    assert bad.exit_code == 2 and "--layout" in bad.output
