"""Dataset discovery: each format found from a small folder in its real layout, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from threeam.data.ase import AseScene, write_ase_scene
from threeam.data.davis import DavisSequence, write_davis_sequence
from threeam.data.discovery import DATA_FORMATS, detect_format, open_scenes
from threeam.data.replica import ReplicaScene, write_replica_sequence
from threeam.data.scannetpp import ScanNetPPScene, write_scannetpp_scene
from threeam.data.synth import generate_scene, get_synth_config
from threeam.errors import InputError

N = 3  # frames per scene


@pytest.fixture(scope="module")
def scene():
    return generate_scene(get_synth_config("tiny", n_frames=N, hfov_deg=90.0), seed=4)  # Replica needs 90 degrees


@pytest.fixture(scope="module")
def roots(scene, tmp_path_factory):
    """One folder per layout, as the datasets ship them."""
    base = tmp_path_factory.mktemp("datasets")
    write_davis_sequence(scene, base / "davis", "seq_a")                       # JPEGImages/480p/seq_a
    write_davis_sequence(scene, base / "mose" / "train", "v1", resolution=None)  # MOSE download: train/...
    write_davis_sequence(scene, base / "mose" / "train", "v2", resolution=None)
    write_davis_sequence(scene, base / "mose" / "valid", "v3", resolution=None, annotate="first")
    write_replica_sequence(scene, base / "replica" / "room0" / "Sequence_1")
    write_replica_sequence(scene, base / "replica" / "room1" / "Sequence_1")
    for sid in ("10", "2"):                                                   # ASE download: <root>/<scene_id>/
        write_ase_scene(scene, base / "ase" / sid, size=48)
    write_scannetpp_scene(scene, base / "spp", "s0", unposed={1})
    return base


@pytest.mark.parametrize("root, fmt, cls, names", [
    ("davis", "davis", DavisSequence, ["seq_a"]),
    ("mose", "mose", DavisSequence, ["v1", "v2"]),                # default split: train
    ("mose/train", "davis", DavisSequence, ["v1", "v2"]),         # one MOSE split is a DAVIS-style root
    ("replica", "replica", ReplicaScene, ["room0/Sequence_1", "room1/Sequence_1"]),
    ("replica/room0/Sequence_1", "replica", ReplicaScene, ["room0/Sequence_1"]),
    ("ase", "ase", AseScene, ["2", "10"]),                        # scene ids in numeric order
    ("ase/10", "ase", AseScene, ["10"]),
    ("spp", "scannetpp", ScanNetPPScene, ["s0"]),
    ("spp/data/s0", "scannetpp", ScanNetPPScene, ["s0"]),
])
def test_each_layout_is_detected_and_opened(roots, root, fmt, cls, names):
    path = roots / root
    assert detect_format(path) == fmt
    for given in (None, fmt):
        scenes = open_scenes(str(path), given)
        assert [type(s) for s in scenes] == [cls] * len(names)
        assert [s.name for s in scenes] == names
        assert all(len(s) == N for s in scenes)


def test_ase_scenes_are_rectified_posed_frames(roots, scene):
    a = open_scenes(roots / "ase", stride=2)[0]
    assert len(a) == 2
    f = a.frame(1)  # stored frame 2
    assert f.rgb.shape == (48, 48, 3) and f.depth.shape == (48, 48) and f.name == "vignette0000002"
    np.testing.assert_allclose(f.cam_to_world, scene.frame(2).cam_to_world, atol=1e-9)
    assert f.K[0, 0] == pytest.approx(24.0)  # 90 degree pinhole: f = S / 2
    assert set(np.unique(f.instance_ids)) - {0} <= set(a.object_ids())


def test_ase_root_feeds_fov_clip_sampling(roots):
    """ASE scenes have depth and poses, so the training sampler can draw FoV-aware clips from them."""
    from threeam.data.sampling import ClipSampler, SamplerConfig, load_clip

    scenes = open_scenes(roots / "ase")
    sampler = ClipSampler(scenes, SamplerConfig(n_frames=2, fov_prob=1.0, tau=0.0, min_ref_pixels=10), seed=0)
    clip = sampler.sample()
    assert clip.mode == "fov" and clip.scene_name in ("2", "10") and len(clip.frames) == 2
    data = load_clip(scenes[clip.scene_index], clip)
    assert data.masks[0].any()


def test_mose_split_option(roots):
    assert [s.name for s in open_scenes(roots / "mose", split="valid")] == ["v3"]
    with pytest.raises(InputError, match="MOSE split 'test'.*train, valid"):
        open_scenes(roots / "mose", split="test")


def test_scannetpp_frames_without_pose_have_no_gt(roots):
    s = open_scenes(roots / "spp")[0]
    assert s.instance_ids(1) is None and s.instance_ids(0) is not None


def test_unknown_layouts_and_formats_are_clear_errors(roots, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "x.jpg").write_bytes(b"")
    for p in (tmp_path / "empty", tmp_path / "photos"):
        with pytest.raises(InputError, match="cannot tell the dataset format") as e:
            open_scenes(str(p))
        msg = str(e.value)
        assert "\n" not in msg and "--format" in msg
        assert all(n in msg for n in DATA_FORMATS if n != "synthetic")
    with pytest.raises(InputError, match="--format must be one of .*ase"):
        open_scenes(str(roots / "davis"), "nope")
    with pytest.raises(InputError, match="no ASE scene"):
        open_scenes(str(roots / "davis"), "ase")
    with pytest.raises(InputError, match="no such file"):
        open_scenes(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="synthetic:N"):
        open_scenes(str(roots / "davis"), "synthetic")
    with pytest.raises(InputError, match="stride"):
        open_scenes(str(roots / "ase"), stride=0)


def test_synthetic_spec(scene):
    scenes = open_scenes("synthetic:2", synth_frames=2, seed=5)
    assert [s.name for s in scenes] == ["synth_00005", "synth_00006"] and len(scenes[0]) == 2
    with pytest.raises(InputError, match="synthetic:N"):
        open_scenes("synthetic:x")
    with pytest.raises(InputError, match="does not apply"):
        open_scenes("synthetic:1", "ase")
