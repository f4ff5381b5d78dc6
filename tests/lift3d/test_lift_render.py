"""Instance colours, the instance PLY and the rendered views."""
from __future__ import annotations

import numpy as np
from PIL import Image

from threeam.data.geometry import look_at
from threeam.data.mesh import read_ply
from threeam.lift3d.render import (instance_palette, instance_vertex_colors, render_mesh_view, view_cameras,
                                   write_instance_ply, write_views)


def _quad(z: float, flip: bool = False):
    v = np.array([[-1, -1, z], [1, -1, z], [1, 1, z], [-1, 1, z]], dtype=np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    return v, (f[:, ::-1] if flip else f)


def test_palette_colours_are_distinct_and_background_is_faded():
    pal = instance_palette(30)
    assert len({tuple(c) for c in pal[1:]}) == 30
    labels = np.array([0, 1, 2, 0])
    base = np.array([[255, 0, 0]] * 4, dtype=np.uint8)
    col = instance_vertex_colors(labels, base)
    np.testing.assert_array_equal(col[1], pal[1])
    assert col[0, 0] < 255 and col[0, 1] > 0  # faded towards grey


def test_render_shows_front_faces_and_culls_back_faces():
    K = np.array([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
    cam = look_at(np.array([0, 0, 5.0]), np.zeros(3), up=np.array([0.0, 1.0, 0.0]))  # looking down -z
    v, f = _quad(0.0)  # counter-clockwise seen from +z: faces the camera
    col = np.tile(np.array([[200, 50, 50]], dtype=np.uint8), (4, 1))
    img = render_mesh_view(v, f, col, K, cam, 48, 64)
    centre = img[24, 32].astype(int)
    assert centre[0] > centre[1] + 50  # reddish, shaded
    assert (img[0, 0] == 255).all()      # background
    v2, f2 = _quad(0.0, flip=True)
    back = render_mesh_view(v2, f2, col, K, cam, 48, 64)
    assert (back == 255).all()
    shown = render_mesh_view(v2, f2, col, K, cam, 48, 64, cull_backfaces=False)
    assert not (shown == 255).all()


def test_views_and_ply_files(tmp_path):
    v, f = _quad(0.0)
    v = np.concatenate([v, v + np.array([0, 0, 0.5], dtype=np.float32)])
    f = np.concatenate([f, f + 4])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    paths = write_views(tmp_path / "views", v, f, labels, height=40, width=60, n_oblique=2)
    assert [p.name for p in paths] == ["top.png", "view1.png", "view2.png"]
    im = np.asarray(Image.open(paths[0]))
    assert im.shape == (40, 60, 3) and (im != 255).any()
    assert len(view_cameras(v, n_oblique=3)) == 4
    ply = write_instance_ply(tmp_path / "x.ply", v, f, labels)
    data = read_ply(ply)
    np.testing.assert_array_equal(data["instance"], labels)
    np.testing.assert_array_equal(data["faces"], f)
    assert data["red"][0] != data["red"][4] or data["green"][0] != data["green"][4]
