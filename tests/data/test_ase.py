import numpy as np
import pytest

from threeam.data.ase import AseScene, ase_rgb_calibration, read_ase_trajectory, write_ase_scene
from threeam.data.render import render_pinhole
from threeam.errors import InputError, VideoError


def test_fisheye_project_unproject_roundtrip_and_scaling():
    cal = ase_rgb_calibration(704)
    uv = np.random.default_rng(0).uniform(60, 640, (2000, 2))
    rays, ok = cal.unproject(uv)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)
    back, ok2 = cal.project(rays)
    np.testing.assert_allclose(back[ok], uv[ok], atol=1e-8)
    assert ok.mean() > 0.8
    # the principal point looks straight ahead; scaling keeps rays (half-pixel convention)
    r0, _ = cal.unproject(np.array([[cal.p[1], cal.p[2]]]))
    np.testing.assert_allclose(r0[0], [0, 0, 1], atol=1e-12)
    half = ase_rgb_calibration(352)
    rh, _ = half.unproject((uv + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(rh, rays, atol=1e-9)
    with pytest.raises(InputError):
        ase_rgb_calibration(4)


def test_ase_roundtrip_raw_and_rectified(tmp_path, tiny_scene):
    s = tiny_scene
    write_ase_scene(s, tmp_path / "0", size=176)
    a = AseScene(tmp_path / "0", rectified_size=64)
    assert len(a) == len(s)
    assert a.object_ids() == sorted(o["id"] for o in s.meta["objects"])
    T = read_ase_trajectory(tmp_path / "0" / "trajectory.csv")
    assert T.shape == (len(s), 4, 4)
    for i in (0, 7):
        raw = a.raw_frame(i)
        np.testing.assert_allclose(raw["cam_to_world"], s.frame(i).cam_to_world, atol=1e-9)
        assert raw["ids"].shape == (176, 176) and raw["ids"][0, 0] == 0  # corner outside the valid circle
        f = a.frame(i)
        assert f.rgb.shape == (64, 64, 3) and f.depth.dtype == np.float32
        # the rectified view matches a pinhole render of the same scene from the same camera
        ref = render_pinhole(s.meta["primitives"], f.K, f.cam_to_world, 64, 64)
        valid = f.depth > 0
        assert valid.mean() > 0.99
        assert (f.instance_ids == ref.ids)[valid].mean() > 0.97
        assert np.median(np.abs(f.depth - ref.depth)[valid]) < 0.01
        assert np.abs(f.rgb.astype(int) - ref.rgb.astype(int))[valid].mean() < 12


def test_ase_errors_name_files(tmp_path, tiny_scene):
    with pytest.raises(VideoError, match="rgb"):
        AseScene(tmp_path / "missing")
    d = write_ase_scene(tiny_scene, tmp_path / "1", size=88)
    (d / "instances" / "instance0000002.png").unlink()
    with pytest.raises(InputError, match="instance0000002.png"):
        AseScene(d).frame(2)
    (d / "trajectory.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="trajectory.csv"):
        AseScene(d)
