"""ScanNet readers on fixtures written by hand in the real on-disk layouts."""
from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from threeam.data.scannet import (SCANNET198_IDS, SCANNET200_IDS, ExportedFrames, ScanNetScene, SensFile,
                                  export_sens, open_scannet, read_label_table, read_split, write_label_table,
                                  write_scannet_scene, write_sens)
from threeam.data.scannet.scene import depth_in_color, vertex_gt_ids
from threeam.data.types import Scene
from threeam.errors import InputError, VideoError

CH, CW, DH, DW = 24, 32, 12, 16
K_COLOR = np.array([[30.0, 0, 15.75], [0, 31.0, 11.75], [0, 0, 1]])
K_DEPTH = np.array([[15.0, 0, 7.5], [0, 15.5, 5.5], [0, 0, 1]])
INVALID = np.full((4, 4), -np.inf)


def _pose(t):
    T = np.eye(4)
    T[:3, 3] = t
    return T


def _frames():
    """3 frames: flat colours (JPEG-safe), distinct depth ramps, frame 1 with an invalid pose."""
    colors = [np.full((CH, CW, 3), c, dtype=np.uint8) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    depths = [(np.arange(DH * DW, dtype=np.uint16).reshape(DH, DW) * 7 + 500 * (i + 1)) for i in range(3)]
    poses = [_pose([0.1, 0.2, 0.3]), INVALID, _pose([1.0, -2.0, 0.5])]
    return colors, depths, poses


def _mat(K):
    M = np.eye(4, dtype=np.float32)
    M[:3, :3] = K
    return M


def pack_sens(colors, depths, poses, depth_shift=1000.0, version=4):
    """A .sens byte stream packed field by field (independent of the writer under test)."""
    name = b"StructureSensor"
    b = struct.pack("<I", version) + struct.pack("<Q", len(name)) + name
    for M in (_mat(K_COLOR), np.eye(4, dtype=np.float32), _mat(K_DEPTH), np.eye(4, dtype=np.float32)):
        b += struct.pack("<16f", *M.reshape(-1))
    b += struct.pack("<ii", 2, 1) + struct.pack("<IIII", CW, CH, DW, DH) + struct.pack("<f", depth_shift)
    b += struct.pack("<Q", len(colors))
    for c, d, T in zip(colors, depths, poses):
        jpg = io.BytesIO()
        Image.fromarray(c).save(jpg, format="JPEG", quality=95)
        jpg = jpg.getvalue()
        dz = zlib.compress(d.astype("<u2").tobytes())
        b += struct.pack("<16f", *np.asarray(T, dtype=np.float32).reshape(-1))
        b += struct.pack("<QQQQ", 111, 222, len(jpg), len(dz)) + jpg + dz
    b += struct.pack("<Q", 0)
    return b


# mesh: 5 superpoints of 10 vertices with sparse ids
SEG_IDS = [7, 19, 230, 4001, 5]
LABELS_TSV = ("id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\teigen13class\t"
              "ModelNet40\tModelNet10\tShapeNetCore55\tsynsetoffset\twnsynsetid\twnsynsetkey\tmpcat40\tmpcat40index\n"
              "2\tchair\tchair\t4000\t5\t4\tchair\tchair\tChair\tchair\tchair\tchair\t3001627\tn03001627\t"
              "chair.n.01\tchair\t3\n"
              "1\twall\twall\t8000\t1\t12\twall\twall\tWall\t\t\t\t\tn04546855\twall.n.01\twall\t1\n"
              "4\ttable\ttable\t1000\t7\t8\ttable\ttable\tTable\ttable\ttable\ttable\t4379243\tn04379243\t"
              "table.n.02\ttable\t5\n"
              "12\tkitchen counter\tcounter\t10\t12\t6\tcounter\tcounter\tCounter\t\t\t\t\t\t\tcounter\t26\n"
              "40\tpillow\tpillow\t900\t18\t7\tpillow\tpillow\tObjects\t\t\t\t\t\t\tcushion\t8\n")
GROUPS = [
    {"id": 0, "objectId": 0, "segments": [7, 19], "label": "chair"},
    {"id": 1, "objectId": 1, "segments": [230], "label": "wall"},
    {"id": 2, "objectId": 2, "segments": [4001], "label": "kitchen counter"},  # 12: not a ScanNet200 id
    {"id": 3, "objectId": 3, "segments": [19], "label": "table"},              # later group wins on seg 19
    {"id": 4, "objectId": 4, "segments": [5], "label": "not in the table"},
]


def write_mesh_files(d, sid, n=50, rng=None):
    rng = rng or np.random.default_rng(0)
    verts = rng.random((n, 3)).astype(np.float32)
    cols = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    faces = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], 1)
    head = ("ply\nformat binary_little_endian 1.0\ncomment VCGLIB generated\n"
            f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
            f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    body = b"".join(struct.pack("<fffBBBB", *v, *c, 255) for v, c in zip(verts, cols))
    body += b"".join(struct.pack("<Biii", 3, *f) for f in faces)
    (d / f"{sid}_vh_clean_2.ply").write_bytes(head + body)
    seg = np.repeat(SEG_IDS, n // len(SEG_IDS))
    (d / f"{sid}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(
        {"params": {"kThresh": "0.0001", "segMinVerts": "20"}, "sceneId": sid, "segIndices": seg.tolist()}))
    (d / f"{sid}.aggregation.json").write_text(json.dumps(
        {"sceneId": f"scannet.{sid}", "appId": "Aggregator.v2", "segGroups": GROUPS,
         "segmentsFile": f"scannet.{sid}_vh_clean_2.0.010000.segs"}))
    (d / f"{sid}.txt").write_text(
        "axisAlignment = 0 1 0 -1 -1 0 0 2 0 0 1 0.5 0 0 0 1\ncolorHeight = 24\ncolorWidth = 32\n"
        "fx_color = 30.000000\nfy_color = 31.000000\nmx_color = 15.750000\nmy_color = 11.750000\n"
        "fx_depth = 15.000000\nfy_depth = 15.500000\nmx_depth = 7.500000\nmy_depth = 5.500000\nsceneType = Office\n")
    return verts, cols, faces, seg


def write_exported_by_hand(folder, ids, colors, depths, poses, with_intrinsics=True):
    for sub in ("color", "depth", "pose", "intrinsic"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, c, d, T in zip(ids, colors, depths, poses):
        Image.fromarray(c).save(folder / "color" / f"{i}.jpg", quality=95)
        Image.fromarray(d.astype(np.uint16)).save(folder / "depth" / f"{i}.png")
        (folder / "pose" / f"{i}.txt").write_text("\n".join(" ".join(f"{v:f}" for v in row) for row in T) + "\n")
    if with_intrinsics:
        for name, K in (("intrinsic_color", K_COLOR), ("intrinsic_depth", K_DEPTH)):
            (folder / "intrinsic" / f"{name}.txt").write_text(
                "\n".join(" ".join(f"{v:f}" for v in row) for row in _mat(K)) + "\n")


@pytest.fixture()
def root(tmp_path):
    """``root/scans/{scene0000_00 (.sens), scene0001_00 (exported)}`` plus the label table."""
    colors, depths, poses = _frames()
    scans = tmp_path / "scans"
    s0 = scans / "scene0000_00"
    s0.mkdir(parents=True)
    write_mesh_files(s0, "scene0000_00")
    (s0 / "scene0000_00.sens").write_bytes(pack_sens(colors, depths, poses))
    s1 = scans / "scene0001_00"
    s1.mkdir()
    write_mesh_files(s1, "scene0001_00", rng=np.random.default_rng(1))
    write_exported_by_hand(s1, [0, 20, 40], colors, depths, poses)
    (tmp_path / "scannetv2-labels.combined.tsv").write_text(LABELS_TSV)
    return tmp_path


# ----------------------------------------------------------------------------- .sens
def test_sens_header_index_and_frames(tmp_path):
    colors, depths, poses = _frames()
    p = tmp_path / "scene0000_00.sens"
    p.write_bytes(pack_sens(colors, depths, poses, depth_shift=1000.0))
    s = SensFile(p)
    h = s.header
    assert (h.version, h.sensor_name, h.color_compression, h.depth_compression) == (4, "StructureSensor", "jpeg",
                                                                                      "zlib_ushort")
    assert (h.color_width, h.color_height, h.depth_width, h.depth_height, h.num_frames) == (CW, CH, DW, DH, 3)
    assert h.depth_shift == 1000.0
    assert np.allclose(s.K_color, K_COLOR) and np.allclose(s.K_depth, K_DEPTH)
    assert len(s) == 3 and s.valid.tolist() == [True, False, True] and s.valid_indices() == [0, 2]
    assert s.timestamps[2].tolist() == [111, 222]
    for i in (0, 2):
        rgb, depth, T = s.read(i)
        assert rgb.shape == (CH, CW, 3) and rgb.dtype == np.uint8
        assert np.abs(rgb.astype(int) - colors[i]).max() <= 3  # JPEG
        assert np.array_equal(s.depth_raw(i), depths[i])
        assert depth.dtype == np.float32 and np.allclose(depth, depths[i] / 1000.0)
        assert np.allclose(T, poses[i])
        assert np.array_equal(s.color(i), rgb)
    assert not np.isfinite(s.pose(1)).any()
    with pytest.raises(InputError, match="out of range"):
        s.color(3)


def test_sens_writer_round_trip_matches_hand_packed(tmp_path):
    colors, depths, poses = _frames()
    write_sens(tmp_path / "w.sens", colors, depths, poses, K_COLOR, K_DEPTH, timestamps=[(111, 222)] * 3)
    (tmp_path / "h.sens").write_bytes(pack_sens(colors, depths, poses))
    a, b = SensFile(tmp_path / "w.sens"), SensFile(tmp_path / "h.sens")
    assert a.header.num_frames == b.header.num_frames and a.valid.tolist() == b.valid.tolist()
    assert np.allclose(a.header.intrinsic_depth, b.header.intrinsic_depth)
    for i in range(3):
        assert np.array_equal(a.depth_raw(i), b.depth_raw(i))
        assert np.array_equal(a.poses[i], b.poses[i], equal_nan=True)


def test_sens_bad_files(tmp_path):
    colors, depths, poses = _frames()
    data = pack_sens(colors, depths, poses)
    (tmp_path / "trunc.sens").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        SensFile(tmp_path / "trunc.sens")
    (tmp_path / "v3.sens").write_bytes(pack_sens(colors, depths, poses, version=3))
    with pytest.raises(InputError, match="version 3"):
        SensFile(tmp_path / "v3.sens")
    with pytest.raises(InputError, match="not found"):
        SensFile(tmp_path / "none.sens")


# ----------------------------------------------------------------------------- exported frames
def test_export_sens_writes_the_reader_py_layout(tmp_path):
    colors, depths, poses = _frames()
    (tmp_path / "a.sens").write_bytes(pack_sens(colors, depths, poses))
    ids = export_sens(SensFile(tmp_path / "a.sens"), tmp_path / "out", frame_skip=1)
    assert ids == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "out" / "color").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    assert "-inf" in (tmp_path / "out" / "pose" / "1.txt").read_text()
    for name in ("intrinsic_color", "extrinsic_color", "intrinsic_depth", "extrinsic_depth"):
        assert (tmp_path / "out" / "intrinsic" / f"{name}.txt").is_file()
    with Image.open(tmp_path / "out" / "depth" / "2.png") as im:
        assert im.size == (DW, DH) and np.array_equal(np.asarray(im), depths[2])
    ex = ExportedFrames(tmp_path / "out")
    assert ex.frame_ids == [0, 2] and ex.skipped == [1]
    assert np.allclose(ex.K_depth, K_DEPTH) and np.allclose(ex.pose(2), poses[2], atol=1e-6)
    assert np.allclose(ex.depth(2), depths[2] / 1000.0)
    skip = export_sens(SensFile(tmp_path / "a.sens"), tmp_path / "skip2", frame_skip=2)
    assert skip == [0, 2] and sorted(p.name for p in (tmp_path / "skip2" / "pose").iterdir()) == ["0.txt", "2.txt"]


def test_exported_frames_hand_written_with_gaps(tmp_path):
    colors, depths, poses = _frames()
    write_exported_by_hand(tmp_path, [0, 20, 40], colors, depths, poses)
    (tmp_path / "color" / "60.jpg").write_bytes((tmp_path / "color" / "0.jpg").read_bytes())  # no depth/pose
    ex = ExportedFrames(tmp_path)
    assert ex.frame_ids == [0, 40] and ex.skipped == [20, 60]
    assert ex.color(40).shape == (CH, CW, 3) and ex.depth(40).shape == (DH, DW)
    assert np.allclose(ex.K_color, K_COLOR)
    with pytest.raises(InputError, match="not a usable frame"):
        ex.color(20)
    with pytest.raises(VideoError):
        ExportedFrames(tmp_path / "color")


# ----------------------------------------------------------------------------- labels, GT
def test_label_table_and_class_lists(tmp_path):
    (tmp_path / "t.tsv").write_text(LABELS_TSV)
    t = read_label_table(tmp_path / "t.tsv")
    assert t.label_id("chair", "scannet200") == 2 and t.label_id("chair", "nyu40") == 5
    assert t.label_id("kitchen counter", "scannet200") == 0  # 12 is not one of the 200
    assert t.label_id("kitchen counter", "nyu40") == 12
    assert t.label_id("unknown", "scannet200") == 0
    with pytest.raises(InputError, match="label space"):
        t.label_id("chair", "nyu41")
    assert len(SCANNET200_IDS) == 200 and 12 not in SCANNET200_IDS and len(SCANNET198_IDS) == 198
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(InputError, match="raw_category"):
        read_label_table(tmp_path / "bad.tsv")
    write_label_table(tmp_path / "w.tsv", {"ball": (168, 40), "wall": (1, 1)})
    w = read_label_table(tmp_path / "w.tsv")
    assert w.label_id("ball") == 168 and w.label_id("ball", "nyu40") == 40
    assert (tmp_path / "w.tsv").read_text().split("\n")[0].split("\t")[:5] == ["id", "raw_category", "category",
                                                                               "count", "nyu40id"]


def test_scene_mesh_superpoints_and_gt(root):
    s = ScanNetScene(root / "scans" / "scene0000_00")
    assert s.vertices.shape == (50, 3) and s.vertices.dtype == np.float32
    assert s.faces.shape == (48, 3) and s.vertex_colors.dtype == np.uint8
    assert s.superpoints.tolist() == np.repeat(SEG_IDS, 10).tolist()
    # per superpoint (10 vertices each): 7 chair(obj 0), 19 table(obj 3, later group), 230 wall,
    # 4001 kitchen counter (id 12: not ScanNet200 -> 0), 5 unknown label (0)
    want200 = np.repeat([2001, 4004, 1002, 3, 5], 10)
    want40 = np.repeat([5001, 7004, 1002, 12003, 5], 10)
    assert s.gt_ids("scannet200").tolist() == want200.tolist()
    assert s.gt_ids("nyu40").tolist() == want40.tolist()
    assert s.vertex_instance_ids.tolist() == np.repeat([1, 4, 2, 3, 5], 10).tolist()
    assert s.object_ids() == [1, 2, 3, 4, 5]
    assert s.mesh().labels.shape == (50,)
    A = s.axis_alignment
    assert A.shape == (4, 4) and A[0, 1] == 1 and A[1, 3] == 2 and A[3, 3] == 1
    assert s.meta["sceneType"] == "Office"


def test_vertex_gt_ids_function_matches_definition(root):
    t = read_label_table(root / "scannetv2-labels.combined.tsv")
    seg = np.array([1, 1, 2, 3, 3, 9])
    groups = [{"objectId": 10, "label": "chair", "segments": [1, 3]}, {"objectId": 11, "label": "wall",
                                                                        "segments": [3]}]
    assert vertex_gt_ids(seg, groups, t).tolist() == [2011, 2011, 0, 1012, 1012, 0]


def test_scene_frames_from_sens_and_exported(root):
    s0 = ScanNetScene(root / "scans" / "scene0000_00")
    s1 = ScanNetScene(root / "scans" / "scene0001_00")
    assert isinstance(s0.source, SensFile) and isinstance(s1.source, ExportedFrames)
    assert s0.frame_ids == [0, 2] and s1.frame_ids == [0, 40] and len(s0) == 2
    for s in (s0, s1):
        f = s.rgbd(1)
        assert f.rgb.shape == (CH, CW, 3) and f.rgb.dtype == np.uint8
        assert f.depth.shape == (DH, DW) and f.depth.dtype == np.float32
        assert np.allclose(f.depth, _frames()[1][2] / 1000.0)
        assert np.allclose(f.K_color, K_COLOR) and np.allclose(f.K_depth, K_DEPTH)
        assert np.allclose(f.cam_to_world, _frames()[2][2], atol=1e-6)
    assert s0.rgbd(1).frame_id == 2 and s1.rgbd(1).frame_id == 40
    assert isinstance(s0, Scene)
    pf = s0.frame(0)
    assert pf.rgb.shape == (CH, CW, 3) and pf.depth.shape == (CH, CW) and np.allclose(pf.K, K_COLOR)
    pd = ScanNetScene(root / "scans" / "scene0000_00", align="depth").frame(0)
    assert pd.rgb.shape == (DH, DW, 3) and pd.depth.shape == (DH, DW) and np.allclose(pd.K, K_DEPTH)
    assert s0.instance_ids(0) is None
    with pytest.raises(InputError, match="out of range"):
        s0.rgbd(2)
    assert ScanNetScene(root / "scans" / "scene0001_00", frame_stride=20).frame_ids == [0, 40]
    assert ScanNetScene(root / "scans" / "scene0001_00", frame_stride=40).frame_ids == [0, 40]
    assert ScanNetScene(root / "scans" / "scene0000_00", frame_stride=2).frame_ids == [0, 2]
    with pytest.raises(VideoError):
        ScanNetScene(root / "scans" / "scene0000_00", frames="exported").frame_ids


def test_exported_frames_elsewhere_and_intrinsics_from_scene_txt(root, tmp_path):
    colors, depths, poses = _frames()
    frames_root = tmp_path / "processed"
    write_exported_by_hand(frames_root / "scene0000_00", [0, 10, 20], colors, depths, poses, with_intrinsics=False)
    s = ScanNetScene(root / "scans" / "scene0000_00", frames_dir=frames_root)
    assert isinstance(s.source, ExportedFrames) and s.frame_ids == [0, 20]
    assert np.allclose(s.K_color, K_COLOR) and np.allclose(s.K_depth, K_DEPTH)  # from scene0000_00.txt


def test_depth_in_color_is_the_ray_lookup():
    d = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    Kd = np.array([[2.0, 0, 1.5], [0, 2.0, 1.0], [0, 0, 1]])
    Kc = np.array([[4.0, 0, 3.5], [0, 4.0, 2.5], [0, 0, 1]])  # twice the resolution, same rays
    out = depth_in_color(d, Kd, Kc, 6, 8)
    assert np.array_equal(out, np.repeat(np.repeat(d, 2, 0), 2, 1))
    shifted = depth_in_color(d, Kd, np.array([[4.0, 0, 5.5], [0, 4.0, 2.5], [0, 0, 1]]), 6, 8)
    assert (shifted[:, :2] == 0).all() and shifted[0, 2] == d[0, 0]


# ----------------------------------------------------------------------------- dataset, splits
def test_open_scannet_with_split_file(root, tmp_path):
    split = tmp_path / "scannetv2_val.txt"
    split.write_text("# val\nscene0001_00\n\nscene0000_00\nscene0001_00\n")
    assert read_split(split) == ["scene0001_00", "scene0000_00"]
    scenes = open_scannet(root, split_file=split)
    assert [s.name for s in scenes] == ["scene0001_00", "scene0000_00"]
    assert scenes[1].gt_ids().tolist()[:10] == [2001] * 10  # label table found at the root
    assert [s.name for s in open_scannet(root)] == ["scene0000_00", "scene0001_00"]
    assert [s.name for s in open_scannet(root / "scans", scenes=["scene0000_00"])] == ["scene0000_00"]
    split.write_text("scene0000_00\nscene0707_00\n")
    with pytest.raises(InputError, match="scene0707_00"):
        open_scannet(root, split_file=split)
    split.write_text("scene0000_00 scene0001_00\n")
    with pytest.raises(InputError, match="one scene id"):
        read_split(split)


def test_missing_pieces_raise_input_errors(root, tmp_path):
    d = root / "scans" / "scene0000_00"
    s = ScanNetScene(d, label_table=root / "nope.tsv")
    with pytest.raises(InputError, match="label table not found"):
        s.gt_ids()
    (root / "scannetv2-labels.combined.tsv").unlink()
    with pytest.raises(InputError, match="label_table"):
        ScanNetScene(d).gt_ids()
    (d / "scene0000_00.aggregation.json").unlink()
    assert not ScanNetScene(d).has_gt
    with pytest.raises(InputError, match="no ground truth"):
        ScanNetScene(d, label_table=tmp_path / "x.tsv").gt_ids()
    (d / "scene0000_00_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": [1, 2, 3]}))
    with pytest.raises(InputError, match="segIndices"):
        ScanNetScene(d).superpoints
    with pytest.raises(InputError, match="not found"):
        ScanNetScene(tmp_path / "scene9999_00")
    with pytest.raises(InputError, match="frames"):
        ScanNetScene(d, frames="video")


def test_write_scannet_scene_is_read_back(tmp_path):
    colors, depths, poses = _frames()
    rng = np.random.default_rng(3)
    verts = rng.random((30, 3)).astype(np.float32)
    cols = rng.integers(0, 256, (30, 3)).astype(np.uint8)
    faces = np.stack([np.arange(28), np.arange(1, 29), np.arange(2, 30)], 1)
    seg = np.repeat([3, 8, 100], 10)
    groups = [{"objectId": 0, "label": "chair", "segments": [3]}, {"objectId": 5, "label": "table", "segments": [100]}]
    frames = {"colors": colors, "depths_mm": depths, "poses": poses, "K_color": K_COLOR, "K_depth": K_DEPTH}
    for layout in ("sens", "exported"):
        d = write_scannet_scene(tmp_path / layout / "scene0002_00", verts, faces, cols, seg, groups, frames,
                                frames_layout=layout, axis_alignment=np.diag([1.0, 2.0, 3.0, 1.0]))
        assert (d / "scene0002_00_vh_clean_2.ply").read_bytes().startswith(
            b"ply\nformat binary_little_endian 1.0\n")
        s = ScanNetScene(d, label_table=read_label_table_from_text(tmp_path))
        assert np.array_equal(s.vertices, verts) and np.array_equal(s.faces, faces)
        assert np.array_equal(s.vertex_colors, cols) and s.superpoints.tolist() == seg.tolist()
        assert s.gt_ids().tolist() == [2001] * 10 + [0] * 10 + [4006] * 10
        assert s.frame_ids == [0, 2] and np.allclose(s.axis_alignment, np.diag([1.0, 2.0, 3.0, 1.0]))
        assert np.allclose(s.rgbd(1).depth, depths[2] / 1000.0)


def read_label_table_from_text(tmp_path):
    p = tmp_path / "labels.tsv"
    p.write_text(LABELS_TSV)
    return read_label_table(p)
