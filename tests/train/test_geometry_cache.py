"""The MUSt3R feature cache (`threeam precompute`): values, resumability, use in the 3AM task."""
from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from threeam.cli import app
from threeam.data.discovery import open_scenes
from threeam.models.must3r.session import Must3rStreamingSession
from threeam.models.three_am import ThreeAM
from threeam.train.geometry_cache import GeometryCache, precompute

ARGS = ["--data", "synthetic:2", "--preset", "3am_tiny", "--random-weights", "--chunk", "3", "--synth-frames", "5",
        "--quiet"]


def test_cache_equals_streaming_and_resumes_only_incomplete_scenes(tmp_path):
    out = tmp_path / "cache"
    res = CliRunner().invoke(app, ["precompute", *ARGS, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "computed 2 scene(s)" in res.output
    scenes = open_scenes("synthetic:2", synth_frames=5)
    torch.manual_seed(0)
    model = ThreeAM("3am_tiny").eval()  # the same seed as the command: same MUSt3R weights
    cache = GeometryCache(out)
    session = Must3rStreamingSession(model.must3r, model.stream_config)
    for t in range(5):
        ref = session.add_frame(scenes[0].frame(t).rgb)
        got = cache.frame(scenes[0].name, t)
        assert got.grid_hw == ref.grid_hw and got.levels == ref.levels
        for a, b in zip(got.features, ref.features):
            assert torch.allclose(a, b, rtol=1e-2, atol=1e-2)
        assert torch.allclose(got.pts_ref, ref.pts_ref, rtol=1e-2, atol=1e-2)
        assert torch.allclose(got.rays, ref.rays, atol=1e-2)
    idx = json.loads((out / scenes[0].name / "index.json").read_text())
    assert idx["complete"] and idx["chunks"] == ["chunk_00000.safetensors", "chunk_00001.safetensors"]

    # an interrupted run: scene 1 incomplete -> only it is recomputed
    p = out / scenes[1].name / "index.json"
    idx1 = json.loads(p.read_text())
    idx1["complete"] = False
    p.write_text(json.dumps(idx1))
    stamp = (out / scenes[0].name / "chunk_00000.safetensors").stat().st_mtime_ns
    assert not GeometryCache(out).has(scenes[1].name)
    assert precompute(model, scenes, out, chunk_size=3, progress=False) == [scenes[1].name]
    assert (out / scenes[0].name / "chunk_00000.safetensors").stat().st_mtime_ns == stamp
    assert GeometryCache(out).has(scenes[1].name)


def test_a_cache_made_at_another_must3r_size_is_refused(tmp_path):
    import pytest

    from threeam.errors import InputError

    out = tmp_path / "cache"
    res = CliRunner().invoke(app, ["precompute", *ARGS, "--out", str(out)])
    assert res.exit_code == 0, res.output
    name = open_scenes("synthetic:2", synth_frames=5)[0].name
    made_at = json.loads((out / name / "index.json").read_text())["must3r_res"]
    model = ThreeAM("3am_tiny")
    assert made_at == model.stream_config.input_res(model.must3r)
    assert GeometryCache(out, made_at).frame(name, 0).grid_hw  # the same size reads
    with pytest.raises(InputError, match=f"computed at MUSt3R input size {made_at} px.*streams at {2 * made_at}"):
        GeometryCache(out, 2 * made_at).frame(name, 0)


def test_a_cache_made_by_other_must3r_weights_is_refused_by_readers_and_by_precompute(tmp_path):
    import pytest

    from threeam.errors import InputError
    from threeam.train.geometry_cache import must3r_fingerprint

    out = tmp_path / "cache"
    res = CliRunner().invoke(app, ["precompute", *ARGS, "--out", str(out)])
    assert res.exit_code == 0, res.output
    scenes = open_scenes("synthetic:2", synth_frames=5)
    torch.manual_seed(0)
    same = ThreeAM("3am_tiny").eval()  # the command's seed: the weights that made the cache
    torch.manual_seed(1)
    other = ThreeAM("3am_tiny").eval()
    fp_same, fp_other = must3r_fingerprint(same.must3r), must3r_fingerprint(other.must3r)
    copy = ThreeAM("3am_tiny")
    copy.must3r.load_state_dict(same.must3r.state_dict())
    assert fp_same != fp_other and must3r_fingerprint(copy.must3r) == fp_same  # a function of the weights only
    assert json.loads((out / scenes[0].name / "index.json").read_text())["must3r_weights"] == fp_same
    res_px = same.stream_config.input_res(same.must3r)
    assert GeometryCache(out, res_px, fp_same).frame(scenes[0].name, 0).grid_hw
    with pytest.raises(InputError, match="other MUSt3R weights"):
        GeometryCache(out, res_px, fp_other).frame(scenes[0].name, 0)
    # precompute with other weights into the same folder: refused, nothing overwritten or mixed in
    stamp = (out / scenes[0].name / "chunk_00000.safetensors").stat().st_mtime_ns
    with pytest.raises(InputError, match="precompute into a new folder"):
        precompute(other, scenes, out, chunk_size=3, progress=False)
    assert (out / scenes[0].name / "chunk_00000.safetensors").stat().st_mtime_ns == stamp
    assert precompute(same, scenes, out, chunk_size=3, progress=False) == []  # the same weights: all complete


def test_fov_clips_read_the_cache_in_the_3am_task(tmp_path):
    from threeam.train.config import apply_overrides
    from threeam.train.distributed import DistContext
    from threeam.train.recipes import build_task, get_train_config

    out = tmp_path / "cache"
    cfg = apply_overrides(get_train_config("tiny-synthetic"), [
        "run.progress=false", "data.frames_per_clip=2", "data.sources.synthetic-static.fov_prob=1",
        f"data.sources.synthetic-static.cache={out}"])
    task = build_task(cfg, DistContext())
    batch = next(task.sources["synthetic-static"](0, DistContext()))
    assert batch["mode"] == "fov" and batch["cache"] == str(out)
    # no cache yet: a clear error naming the command
    import pytest

    from threeam.errors import InputError

    with pytest.raises(InputError, match="threeam precompute"):
        task.step_fn(task.model, batch)
    from threeam.train.clips import open_source_scenes

    scenes = open_source_scenes(cfg.data.sources[0], cfg, 0)
    precompute(task.model, scenes, out, progress=False)
    losses = task.step_fn(task.model, batch)
    assert torch.isfinite(losses["loss"])
