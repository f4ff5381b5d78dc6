import numpy as np
import pytest

from threeam.data.davis import DavisSequence, list_davis_sequences, write_davis_sequence
from threeam.data.replica import ReplicaScene, write_replica_sequence
from threeam.data.scannetpp import ScanNetPPScene, list_scannetpp_scenes, vertex_instance_labels, write_scannetpp_scene
from threeam.data.synth import generate_scene, get_synth_config
from threeam.errors import InputError, VideoError


def _rgb_close(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean() < 4.0  # JPEG q95


def test_scannetpp_roundtrip_iphone(tmp_path, tiny_scene):
    s = tiny_scene
    write_scannetpp_scene(s, tmp_path, unposed={3}, depth_scale=1)
    assert list_scannetpp_scenes(tmp_path) == [s.name]
    r = ScanNetPPScene(tmp_path, s.name)
    assert len(r) == len(s) and r.object_ids() == s.object_ids()
    for i in (0, 3, 5):
        f, g = r.frame(i), s.frame(i)
        assert _rgb_close(f.rgb, g.rgb)
        np.testing.assert_allclose(f.K, g.K, atol=1e-9)
        np.testing.assert_allclose(f.depth, g.depth, atol=5.1e-4)  # millimetre PNG
        if i == 3:
            assert f.cam_to_world is None and f.instance_ids is None and r.instance_ids(i) is None
            continue
        np.testing.assert_allclose(f.cam_to_world, g.cam_to_world, atol=1e-9)
        # 2D masks projected from the 3D mesh labels match the ray-cast ids (tessellation edges aside)
        assert (f.instance_ids == g.instance_ids).mean() > 0.98
        assert (r.instance_ids(i) == f.instance_ids).all()


def test_scannetpp_dslr_and_lowres_depth(tmp_path, tiny_scene):
    s = tiny_scene
    write_scannetpp_scene(s, tmp_path, depth_scale=2, dslr_every=4)
    r = ScanNetPPScene(tmp_path / "data" / s.name, capture="dslr")
    assert len(r) == 4
    f, g = r.frame(1), s.frame(4)
    np.testing.assert_allclose(f.cam_to_world, g.cam_to_world, atol=1e-9)
    valid = f.depth > 0
    assert valid.mean() > 0.95
    assert np.median(np.abs(f.depth[valid] - g.depth[valid])) < 1e-3  # mesh-rasterised depth
    assert (f.instance_ids == g.instance_ids).mean() > 0.98
    ip = ScanNetPPScene(tmp_path, s.name).frame(4)
    assert ip.depth.shape == g.depth.shape  # half-resolution depth is resized to the RGB size
    assert np.median(np.abs(ip.depth - g.depth)) < 0.05  # nearest upsampling of 2x subsampled depth


def test_scannetpp_smallest_group_wins():
    seg = np.array([0, 1, 2, 3])
    groups = [{"objectId": 0, "segments": [0, 1, 2, 3]}, {"objectId": 5, "segments": [2]}]
    np.testing.assert_array_equal(vertex_instance_labels(seg, groups), [1, 1, 6, 1])


def test_scannetpp_missing_files_name_them(tmp_path, tiny_scene):
    with pytest.raises(InputError, match="not found"):
        ScanNetPPScene(tmp_path, "nope")
    sdir = write_scannetpp_scene(tiny_scene, tmp_path)
    (sdir / "iphone" / "rgb" / "frame_000002.jpg").write_bytes(b"not a jpeg")
    r = ScanNetPPScene(sdir)
    with pytest.raises(VideoError, match="frame_000002.jpg"):
        r.frame(2)
    (sdir / "scans" / "segments.json").write_text("{broken")
    with pytest.raises(InputError, match="segments.json"):
        r.mesh()


def test_replica_roundtrip_exact(tmp_path):
    s = generate_scene(get_synth_config("tiny", hfov_deg=90.0, n_frames=4), seed=2)
    seq = write_replica_sequence(s, tmp_path / "room_0" / "Sequence_1")
    r = ReplicaScene(seq)
    assert len(r) == 4 and r.object_ids() == sorted(set(np.concatenate([np.unique(f.instance_ids) for f in s.frames])) - {0})
    for i in range(4):
        f, g = r.frame(i), s.frame(i)
        assert f.rgb.tobytes() == g.rgb.tobytes()
        assert f.instance_ids.tobytes() == g.instance_ids.tobytes()
        np.testing.assert_allclose(f.depth, g.depth, atol=5.1e-4)
        np.testing.assert_allclose(f.cam_to_world, g.cam_to_world, atol=0)
        np.testing.assert_allclose(f.K, g.K, atol=1e-12)


def test_replica_rejects_other_fov_and_bad_traj(tmp_path, tiny_scene):
    with pytest.raises(InputError, match="90-degree"):
        write_replica_sequence(tiny_scene, tmp_path / "x")
    s = generate_scene(get_synth_config("tiny", hfov_deg=90.0, n_frames=2), seed=2)
    seq = write_replica_sequence(s, tmp_path / "y")
    (seq / "traj_w_c.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match="traj_w_c.txt"):
        ReplicaScene(seq)


@pytest.mark.parametrize("resolution", ["480p", None])
def test_davis_and_mose_roundtrip(tmp_path, tiny_scene, resolution):
    write_davis_sequence(tiny_scene, tmp_path, "seq_a", resolution=resolution,
                         annotate="all" if resolution else "first")
    assert list_davis_sequences(tmp_path) == ["seq_a"]
    r = DavisSequence(tmp_path, "seq_a")
    assert len(r) == len(tiny_scene)
    f = r.frame(0)
    assert f.cam_to_world is None and f.depth is None
    assert f.instance_ids.tobytes() == tiny_scene.frame(0).instance_ids.tobytes()
    assert _rgb_close(f.rgb, tiny_scene.frame(0).rgb)
    if resolution is None:
        assert r.instance_ids(1) is None  # MOSE valid: first frame annotated only
    else:
        assert r.instance_ids(5).tobytes() == tiny_scene.frame(5).instance_ids.tobytes()


def test_davis_void_maps_to_background(tmp_path, tiny_scene):
    from threeam.io.masks import write_palette_png

    write_davis_sequence(tiny_scene, tmp_path, "seq_b")
    ids = np.zeros((48, 64), np.uint8)
    ids[:4] = 255
    ids[10:20, 10:20] = 2
    write_palette_png(tmp_path / "Annotations" / "480p" / "seq_b" / "00000.png", ids)
    got = DavisSequence(tmp_path, "seq_b").instance_ids(0)
    assert (got[:4] == 0).all() and (got[10:20, 10:20] == 2).all()
    assert (DavisSequence(tmp_path, "seq_b", void_to_background=False).instance_ids(0)[:4] == 255).all()


def test_scannetpp_depth_bin_and_mask_cache(tmp_path, tiny_scene):
    import zlib

    from threeam.data.scannetpp import read_iphone_depth_bin

    s = tiny_scene
    write_scannetpp_scene(s, tmp_path / "ds", depth_format="bin", depth_scale=2)
    r = ScanNetPPScene(tmp_path / "ds", s.name, depth_bin_size=(24, 32), mask_cache=tmp_path / "cache")
    f, g = r.frame(6), s.frame(6)
    np.testing.assert_array_equal(f.depth[1::2, 1::2], g.depth[1::2, 1::2])  # float32 stored exactly
    cached = tmp_path / "cache" / s.name / "iphone" / "frame_000006.png"
    assert cached.is_file()
    assert (ScanNetPPScene(tmp_path / "ds", s.name, mask_cache=tmp_path / "cache").instance_ids(6)
            == f.instance_ids).all()
    # record encoding: [uint32 size][raw-deflate float32] per frame
    recs = b""
    for k in range(3):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(np.full((4, 5), k + 0.5, "<f4").tobytes()) + c.flush()
        recs += len(payload).to_bytes(4, "little") + payload
    (tmp_path / "rec.bin").write_bytes(recs)
    d = read_iphone_depth_bin(tmp_path / "rec.bin", 4, 5)
    assert d.shape == (3, 4, 5) and (d[2] == 2.5).all()
    (tmp_path / "bad.bin").write_bytes(b"\x05\x00\x00\x00ab")
    with pytest.raises(InputError, match="bad.bin"):
        read_iphone_depth_bin(tmp_path / "bad.bin", 4, 5)


def test_colmap_images_txt_with_points_line(tmp_path):
    from threeam.data.colmap import colmap_camera_to_K, read_cameras_txt, read_images_txt

    (tmp_path / "images.txt").write_text(
        "# comment\n"
        "1 1 0 0 0 0.5 -1 2 1 frame_000000.jpg\n"
        "10.5 20.5 -1 11.0 3.0 7\n"
        "2 0.7071067811865476 0 0.7071067811865476 0 0 0 0 1 frame_000010.jpg\n"
        "\n")
    (tmp_path / "cameras.txt").write_text("# c\n1 PINHOLE 640 480 500 501 320.5 240.5\n")
    imgs = read_images_txt(tmp_path / "images.txt")
    assert sorted(imgs) == ["frame_000000.jpg", "frame_000010.jpg"]
    np.testing.assert_allclose(imgs["frame_000000.jpg"].world_to_cam[:3, 3], [0.5, -1, 2])
    R = imgs["frame_000010.jpg"].world_to_cam[:3, :3]
    np.testing.assert_allclose(R, [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-12)  # 90 deg about y
    K = colmap_camera_to_K(read_cameras_txt(tmp_path / "cameras.txt")[1])
    np.testing.assert_allclose(K, [[500, 0, 320], [0, 501, 240], [0, 0, 1]])
    (tmp_path / "cameras.txt").write_text("1 OPENCV 640 480 500 501\n")
    with pytest.raises(InputError, match="cameras.txt"):
        read_cameras_txt(tmp_path / "cameras.txt")


def test_eval_sequences_on_scannetpp_reader_list_unposed_frames(tmp_path, tiny_scene):
    from threeam.data.eval_sequences import EvalSequenceConfig, build_eval_sequences

    write_scannetpp_scene(tiny_scene, tmp_path, unposed={2, 9})
    r = ScanNetPPScene(tmp_path, tiny_scene.name)
    cfg = EvalSequenceConfig(min_mask_pixels=20, l_min=1)
    seqs = build_eval_sequences(r, cfg)
    ref = {q.object_id: q for q in build_eval_sequences(tiny_scene, cfg)}
    assert seqs and all(q.unannotated == [2, 9] for q in seqs)
    for q in seqs:
        assert q.cond_frame not in (2, 9)
        assert q.object_id in ref
