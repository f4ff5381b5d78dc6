"""The tiny weights shipped in the package (`threeam.weights`): they load by name, offline, only when no
other weights are asked for, and the shipped 3AM keeps the target better than the shipped SAM 2 on a
generated look-alike scene (the protocol of `threeam experiment toy-ablation`)."""
from __future__ import annotations

import functools
import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from threeam.cli import app
from threeam.errors import InputError
from threeam.models.three_am_weights import CONFIG_NAME, WEIGHTS_NAME
from threeam.predictor.build import build_predictor, build_sam2_model, build_three_am_model
from threeam.weights import DEBUG_SAM2_NAME, SHIPPED, shipped_names, shipped_weights

# From docs/evidence.md ("Is the gain the geometry's?", part 4): on evaluation scene 0 the shipped pair measured
# 3AM / SAM 2 IoU 0.752 / 0.702 and false-positive rate 0.117 / 0.179 (over all 20 scenes: IoU +4.0 points,
# FPR -4.8 points). The test asks for at least half of scene 0's measured gaps.
MIN_IOU_GAIN = 0.025
MIN_FPR_DROP = 0.03
# 3am_tiny_wide (docs/evidence.md, "A tiny-wide MUSt3R at 84.8%": Tracking Recall +3.42 over the 236 tracks, all of it
# gone with another room's geometry). On evaluation scenes 0 and 1 (24 tracks) the shipped 3am_tiny_wide / SAM 2
# measured Tracking Recall 0.2717 / 0.2509, IoU 0.7188 / 0.6549, false-positive rate 0.1622 / 0.2361; the test asks
# for at least half of each gap.
WIDE_MIN_TR_GAIN = 0.010
WIDE_MIN_IOU_GAIN = 0.03
WIDE_MIN_FPR_DROP = 0.035


def test_every_registered_file_is_installed_and_named():
    assert sorted(shipped_names("3am")) == ["3am_tiny", "3am_tiny_wide"] and shipped_names("sam2") == [DEBUG_SAM2_NAME]
    folders = [shipped_weights("3am", name) for name in shipped_names("3am")]
    assert all((f / CONFIG_NAME).is_file() and (f / WEIGHTS_NAME).is_file() for f in folders)
    assert shipped_weights("sam2", DEBUG_SAM2_NAME).is_file()
    assert shipped_weights("sam2", "debug") == shipped_weights("sam2", DEBUG_SAM2_NAME)
    assert shipped_weights("3am", "3am_hiera_l") is None and shipped_weights("sam2", "sam2.1_hiera_t") is None
    assert len(SHIPPED) == 3
    sizes = [sum(p.stat().st_size for p in folder.iterdir()) for folder in folders]
    control = shipped_weights("sam2", DEBUG_SAM2_NAME).stat().st_size
    assert all(size + control < 12 * 2 ** 20 for size in sizes)  # "a few MB" per model and its control
    assert sum(sizes) + control < 16 * 2 ** 20  # and all of them together
    provenance = json.loads((folders[0].parent / "provenance.json").read_text())
    assert provenance[DEBUG_SAM2_NAME]["task"] == "sam2"
    for name in shipped_names("3am"):
        assert provenance[name]["task"] == "3am" and provenance["notes"][name]
        assert provenance[name]["sha256"] == hashlib.sha256((shipped_weights("3am", name) / WEIGHTS_NAME).read_bytes()).hexdigest()


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k].float(), b[k].float()) for k in a)


@pytest.mark.parametrize("name", ["3am_tiny", "3am_tiny_wide"])
def test_a_name_with_shipped_weights_loads_them_and_random_weights_only_by_request(name):
    net = build_three_am_model(name)
    stored = load_file(str(shipped_weights("3am", name) / WEIGHTS_NAME))
    own = net.state_dict()
    assert set(stored) == set(own)
    assert all(torch.equal(own[k], stored[k].to(own[k].dtype)) for k in stored)
    assert all(v.dtype == torch.float32 for v in own.values() if v.is_floating_point())
    assert net.merger.last_conv.weight.abs().sum() > 0  # trained, not the identity merger
    random = build_three_am_model(name, random_weights=True).state_dict()
    assert not _same(random, own)

    sam2 = build_sam2_model(DEBUG_SAM2_NAME).state_dict()
    stored = load_file(str(shipped_weights("sam2", DEBUG_SAM2_NAME)))
    assert _same(sam2, {k: v.float() for k, v in stored.items()})
    assert not _same(build_sam2_model("debug", random_weights=True).state_dict(), sam2)
    # the two are different models: 3AM's SAM 2 part was trained with the merger
    assert not _same({k[5:]: v for k, v in own.items() if k.startswith("sam2.")}, sam2)


def test_presets_without_shipped_weights_still_need_weights():
    with pytest.raises(InputError, match="shipped weights.*3am_tiny"):
        build_three_am_model("3am_hiera_t")
    with pytest.raises(InputError, match="no weights"):
        build_sam2_model("sam2.1_hiera_t")


def test_track_command_uses_the_shipped_weights_by_name(tmp_path):
    import numpy as np
    from PIL import Image

    from threeam.data.synth import generate_scene, get_synth_config

    scene = generate_scene(get_synth_config("tiny", n_frames=3, height=64, width=96), seed=4)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(scene.frame(i).rgb).save(frames / f"{i:05d}.png")
    ids = scene.frame(0).instance_ids
    ys, xs = np.nonzero(ids == np.bincount(ids[ids > 0]).argmax())
    res = CliRunner().invoke(app, ["track", str(frames), "--out", str(tmp_path / "out"), "--model", "3am",
                                   "--preset", "3am_tiny", "--point", f"{int(xs.mean())},{int(ys.mean())}",
                                   "--no-overlay"])
    assert res.exit_code == 0, res.output
    assert "shipped weights 3am_tiny" in res.output
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 3
    res = CliRunner().invoke(app, ["track", str(frames), "--out", str(tmp_path / "out2"), "--model", "3am",
                                   "--preset", "3am_hiera_t", "--point", "5,5"])
    assert res.exit_code == 2 and "no weights" in res.output


def test_info_describes_the_shipped_models_by_name():
    res = CliRunner().invoke(app, ["info", "--model", "sam2", "--preset", DEBUG_SAM2_NAME])
    assert res.exit_code == 0, res.output
    total = sum(p.numel() for p in build_sam2_model(DEBUG_SAM2_NAME).parameters())
    assert f"{total:,}" in res.output


def test_the_web_app_takes_a_preset_with_shipped_weights():
    from threeam.commands.serve import build_serve_predictor

    predictor, label = build_serve_predictor("sam2", DEBUG_SAM2_NAME, None, None, False, 0, "cpu")
    assert label == f"sam2 {DEBUG_SAM2_NAME}, shipped weights"
    stored = load_file(str(shipped_weights("sam2", DEBUG_SAM2_NAME)))
    own = predictor.model.state_dict()
    assert all(torch.equal(own[k], v.float()) for k, v in stored.items())
    with pytest.raises(InputError, match="no weights"):
        build_serve_predictor("3am", "3am_hiera_t", None, None, False, 0, "cpu")


@functools.lru_cache(maxsize=None)
def _eval_scenes() -> tuple:
    """The first two held-out evaluation scenes (never training scenes), built once for every test here."""
    from threeam.data.eval_scenes import make_eval_scenes

    return tuple(make_eval_scenes("lookalike", 2))


@functools.lru_cache(maxsize=None)
def _scene_rows(model: str, preset: str, scene_index: int) -> tuple:
    """The toy ablation's per-track rows of a shipped model on one held-out evaluation scene."""
    from threeam.experiments.toy_ablation import evaluate_method

    scene = _eval_scenes()[scene_index]
    return tuple(evaluate_method([scene], build_predictor(model, preset=preset, progress=False), model))


def _whole(model: str, preset: str, n_scenes: int) -> dict:
    from threeam.experiments.toy_ablation import _summary

    rows = [r for i in range(n_scenes) for r in _scene_rows(model, preset, i)]
    assert len(rows) >= 10 * n_scenes
    return _summary(rows)["whole"]


def test_shipped_3am_keeps_the_target_better_than_shipped_sam2():
    three_am, sam2 = _whole("3am", "3am_tiny", 1), _whole("sam2", DEBUG_SAM2_NAME, 1)
    assert three_am["IoU"] >= sam2["IoU"] + MIN_IOU_GAIN, (three_am, sam2)
    assert three_am["False-positive rate"] <= sam2["False-positive rate"] - MIN_FPR_DROP, (three_am, sam2)


def test_shipped_wide_3am_keeps_the_target_better_than_shipped_sam2():
    three_am, sam2 = _whole("3am", "3am_tiny_wide", 2), _whole("sam2", DEBUG_SAM2_NAME, 2)
    assert three_am["Tracking Recall"] >= sam2["Tracking Recall"] + WIDE_MIN_TR_GAIN, (three_am, sam2)
    assert three_am["IoU"] >= sam2["IoU"] + WIDE_MIN_IOU_GAIN, (three_am, sam2)
    assert three_am["False-positive rate"] <= sam2["False-positive rate"] - WIDE_MIN_FPR_DROP, (three_am, sam2)
