"""`threeam lift3d`: outputs, resumability, ScanNet-layout input, RGB-only mode, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from threeam.cli import app
from threeam.data.synth_scannet import write_synth_scannet
from threeam.eval.instance_ap import evaluate_submission, read_submission

from lift_scenes import make_scene

DEBUG = str(Path(__file__).resolve().parents[2] / "examples" / "sam2.1_debug_256.json")
SYNTH = ["--synth-frames", "16", "--synth-size", "64x80", "--view-size", "96x128", "--quiet"]
TINY = ["--lift-preset", "synthetic", "--set", 'keyframe_mode="stride"', "--set", "keyframe_stride=4",
        "--set", "track_horizon=3", "--set", "max_proposals=3", "--set", "min_proposal_depth=0.0",
        "--set", 'amg={"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}',
        "--views", "1", "--view-size", "96x128", "--quiet"]


def run(*args):
    return CliRunner().invoke(app, ["lift3d", *map(str, args)])


@pytest.fixture(scope="module")
def gt_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lift") / "out"
    res = run("synthetic:2", "--out", out, "--gt-masks", "--views", "2", *SYNTH)
    return out, res


def test_outputs_of_a_gt_mask_run(gt_run):
    out, res = gt_run
    assert res.exit_code == 0, res.output
    assert "2 scene(s) lifted, 0 finished earlier" in res.output
    for name in ("synth_00000", "synth_00001"):
        sdir = out / "scenes" / name
        assert (sdir / "instances.ply").is_file() and (sdir / "instances.json").is_file()
        assert sorted(p.name for p in (sdir / "views").iterdir()) == ["top.png", "view1.png"]
        rec = json.loads((sdir / "result.json").read_text())
        assert rec["instances"] > 0 and rec["ap50"] is not None
        assert set(rec["seconds"]) >= {"load", "proposals", "tracking", "lifting", "merging", "superpoints", "render"}
        assert (out / "submission" / f"{name}.txt").is_file() and (out / "gt" / f"{name}.txt").is_file()
    lines = (out / "submission" / "synth_00000.txt").read_text().split("\n")[0].split()
    assert lines[0].startswith("pred_mask/synth_00000_") and float(lines[2]) <= 1.0
    summary = json.loads((out / "results.json").read_text())
    again = evaluate_submission(out / "submission", out / "gt")  # the benchmark's own reading of the files
    assert summary["overall"]["ap50"] == pytest.approx(again.ap50) and again.ap50 >= 0.9
    md = (out / "results.md").read_text()
    assert md.startswith("| scene | AP | AP50 | AP25 |") and "| overall |" in md
    assert (out / "results.csv").read_text().count("\n") == 4  # header, 2 scenes, overall


def test_a_second_run_skips_finished_scenes(gt_run, tmp_path):
    out, _ = gt_run
    done = out / "scenes" / "synth_00000" / "result.json"
    stamp = done.stat().st_mtime_ns
    res = run("synthetic:2", "--out", out, "--gt-masks", "--views", "2", *SYNTH)
    assert res.exit_code == 0, res.output
    assert "0 scene(s) lifted, 2 finished earlier" in res.output
    assert done.stat().st_mtime_ns == stamp
    # an unfinished scene (no result.json) is lifted again, the other is kept
    (out / "scenes" / "synth_00001" / "result.json").unlink()
    res = run("synthetic:2", "--out", out, "--gt-masks", "--views", "2", *SYNTH)
    assert "1 scene(s) lifted, 1 finished earlier" in res.output and done.stat().st_mtime_ns == stamp
    # other options into the same folder: refused in one line
    res = run("synthetic:2", "--out", out, "--gt-masks", "--views", "2", "--set", "merge_iou=0.6", *SYNTH)
    assert res.exit_code == 2 and "--overwrite" in res.output and res.output.count("\n") == 1
    # a folder lift3d did not write is refused even with --overwrite, and left as it was
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = run("synthetic:1", "--out", foreign, "--gt-masks", "--overwrite", *SYNTH)
    assert res.exit_code == 2 and "not written by threeam lift3d" in res.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("args, message", [
    (["synthetic:1", "--depth", "lidar", "--gt-masks"], "--depth must be sensor or must3r"),
    (["synthetic:1", "--model", "sam3", "--random-weights"], "--model must be sam2 or 3am"),
    (["synthetic:1"], "no weights"),
    (["synthetic:0", "--gt-masks"], "synthetic:N"),
    (["/no/such/folder", "--gt-masks"], "no such folder"),
    (["synthetic:1", "--gt-masks", "--set", "nope=1"], "unknown lift option"),
    (["synthetic:1", "--gt-masks", "--set", "merge_iou=2"], "merge_iou"),
    (["synthetic:1", "--gt-masks", "--lift-preset", "huge"], "unknown lift preset"),
    (["synthetic:1", "--gt-masks", "--benchmark", "nyu"], "--benchmark"),
    (["synthetic:1", "--gt-masks", "--view-size", "big"], "--view-size"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    res = run(*args, "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.startswith("error: ") and res.output.count("\n") == 1


@pytest.fixture(scope="module")
def scannet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scannet")
    write_synth_scannet(make_scene(3, height=48, width=64, frames=8), root)
    return root


def test_scannet_layout_with_the_tiny_sam2(scannet_root, tmp_path):
    out = tmp_path / "o"
    res = run(scannet_root, "--out", out, "--model", "sam2", "--model-config", DEBUG, "--random-weights",
              "--set", "frame_skip=1", *TINY)
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "scenes" / "scene9003_00" / "result.json").read_text())
    assert rec["frames"] == 8 and rec["keyframes"] == 2 and rec["proposals"] > 0
    assert rec["seconds"]["tracking"] > 0
    pred = read_submission(out / "submission")["scene9003_00"]
    assert pred.masks.shape[1] == rec["vertices"]
    # GT masks on ScanNet are rendered from the annotated mesh: the oracle run through the reader
    res = run(scannet_root, "--out", tmp_path / "o2", "--gt-masks", "--views", "0", "--lift-preset", "synthetic",
              "--quiet")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "o2" / "scenes" / "scene9003_00" / "result.json").read_text())
    assert rec["ap50"] >= 0.8 and rec["instances"] > 0


def test_rgb_only_mode_with_the_tiny_3am(tmp_path):
    out = tmp_path / "o"
    res = run("synthetic:1", "--out", out, "--model", "3am", "--preset", "3am_tiny", "--random-weights",
              "--depth", "must3r", "--synth-frames", "8", "--synth-size", "48x64", *TINY)
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "scenes" / "synth_00000" / "result.json").read_text())
    assert rec["seconds"]["geometry"] > 0 and rec["geometry"]["scale"] > 0
    assert 0 < rec["geometry"]["valid_depth"] <= 1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run"]["depth"] == "must3r" and cfg["models"]["model"] == "3am"
    assert np.isfinite(rec["total_seconds"])
