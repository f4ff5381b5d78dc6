"""`threeam eval` end to end on generated scenes, the method registry and the output rules."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from threeam.cli import app
from threeam.data.eval_sequences import EvalSequenceConfig, build_eval_sequences
from threeam.errors import InputError
from threeam.eval.metrics import aggregate
from threeam.eval.protocol import load_sequence, score_object
from threeam.data.discovery import open_scenes
from threeam.eval import (METHODS, TABLE_COLUMNS, EvalConfig, EvalContext, PeakMemory, register_method,
                          resolve_methods, run_evaluation)
from threeam.io.masks import read_rle_json

METHOD_NAMES = ["sam2", "sam2long", "dam4sam"]
FRAMES = 10


def _args(golden_dir, out, *extra):
    return ["eval", "--data", "synthetic:2", "--methods", ",".join(METHOD_NAMES), "--out", str(out),
            "--model-config", str(golden_dir / "sam2" / "case_small_v21.json"), "--random-weights",
            "--synth-frames", str(FRAMES), "--l-min", "0", "--worst", "2", "--quiet", *extra]


@pytest.fixture(scope="module")
def eval_run(golden_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    res = CliRunner().invoke(app, _args(golden_dir, out))
    assert res.exit_code == 0, res.output
    return out, res.output


def test_eval_cli_writes_the_paper_table(eval_run):
    out, output = eval_run
    for name in ("results.md", "results.csv", "results.json", "per_sequence.csv", "per_sequence.json", "config.json"):
        assert (out / name).is_file(), name
    assert "Whole Set IoU" in output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["method"] for r in rows] == METHOD_NAMES
    assert list(rows[0]) == TABLE_COLUMNS
    md = (out / "results.md").read_text().splitlines()
    assert md[0] == ("| Method | FPS | Mem (MiB, peak RSS delta, CPU) | Whole Set IoU | Whole Set Tracking Recall | "
                     "Whole Set Accuracy | Whole Set False-positive rate | Selected Subset IoU | "
                     "Selected Subset Tracking Recall | Selected Subset Accuracy | Selected Subset False-positive rate |")
    assert all(len(line.split("|")) == len(md[0].split("|")) for line in md[1:5])
    assert [line.split("|")[1].strip() for line in md[2:5]] == METHOD_NAMES
    doc = json.loads((out / "results.json").read_text())
    for r in doc["rows"]:
        assert r["fps"] > 0 and r["mem_kind"] == "rss_delta"
    # overlays of the 2 worst tracks per method, predictions for every scene
    for m in METHOD_NAMES:
        assert len(list((out / "overlays" / m).glob("*.mp4"))) == 2
        assert sorted(p.name for p in (out / "predictions" / m).glob("*.json")) == ["synth_00000.json",
                                                                                   "synth_00001.json"]


def test_eval_numbers_equal_aggregate_of_saved_predictions(eval_run):
    out, _ = eval_run
    doc = json.loads((out / "results.json").read_text())
    per = json.loads((out / "per_sequence.json").read_text())
    scenes = open_scenes("synthetic:2", synth_frames=FRAMES)
    seqs = {sc.name: build_eval_sequences(sc, EvalSequenceConfig(l_min=0)) for sc in scenes}
    n_tracks = sum(len(v) for v in seqs.values())
    assert len(per) == n_tracks * len(METHOD_NAMES)
    for m in METHOD_NAMES:
        tracks, selected = [], []
        for sc in scenes:
            _, ids, unknown = load_sequence(sc)
            pred = read_rle_json(out / "predictions" / m / f"{sc.name}.json")
            for s in seqs[sc.name]:
                p = np.stack([pred[t][s.object_id].mask for t in range(FRAMES)])
                tracks.append(score_object(p, ids == s.object_id, name=f"{sc.name}/{s.object_id}", unannotated=unknown))
                selected.append(s.selected)
        whole = aggregate(tracks)
        subset = aggregate([t for t, s in zip(tracks, selected) if s])
        assert 0 < subset.n_tracks < whole.n_tracks
        row = next(r for r in doc["rows"] if r["method"] == m)
        for key, val in (("whole_iou", whole.iou), ("whole_tracking_recall", whole.tracking_recall),
                         ("whole_accuracy", whole.accuracy), ("whole_false_positive_rate", whole.false_positive_rate),
                         ("selected_iou", subset.iou), ("selected_tracking_recall", subset.tracking_recall),
                         ("selected_accuracy", subset.accuracy),
                         ("selected_false_positive_rate", subset.false_positive_rate)):
            if math.isnan(val):
                assert row[key] is None, (m, key)
            else:
                assert row[key] == pytest.approx(val, abs=1e-12), (m, key)
        assert row["whole_tracks"] == whole.n_tracks and row["selected_tracks"] == subset.n_tracks
        mine = [r for r in per if r["method"] == m]
        assert [r["iou"] for r in mine] == pytest.approx([t.iou for t in tracks])


def test_eval_refuses_existing_output_and_overwrites_on_request(golden_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    args = _args(golden_dir, out, "--max-sequences", "2", "--worst", "0")
    args[args.index("--methods") + 1] = "sam2"
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert (out / "keep.txt").read_text() == "user data"
    # --overwrite replaces only a folder threeam wrote (threeam.io.atomic): user data stays
    res = CliRunner().invoke(app, args + ["--overwrite"])
    assert res.exit_code == 2 and "not written by threeam" in res.output
    assert (out / "keep.txt").read_text() == "user data"
    (out / "keep.txt").unlink()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(json.loads((out / "per_sequence.json").read_text())) == 2
    one = list(args)
    one[one.index("--max-sequences") + 1] = "1"
    res = CliRunner().invoke(app, one)
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = CliRunner().invoke(app, one + ["--overwrite"])
    assert res.exit_code == 0, res.output
    assert (out / "results.csv").is_file()
    assert len(json.loads((out / "per_sequence.json").read_text())) == 1
    assert not list(tmp_path.glob(".run.*"))  # no temporary folders left behind


def test_eval_fresh_3am_equals_sam2_and_needs_weights(golden_dir, tmp_path):
    """A fresh 3AM (zero-initialised merger, SAM 2 weights shared) scores exactly like SAM 2."""
    args = _args(golden_dir, tmp_path / "a", "--max-sequences", "2", "--worst", "0")
    args[args.index("--methods") + 1] = "sam2,3am,3am+dam4sam"
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = {r["method"]: r for r in json.loads((tmp_path / "a" / "results.json").read_text())["rows"]}
    for key in ("whole_iou", "whole_tracking_recall", "whole_accuracy"):
        assert rows["3am"][key] == rows["sam2"][key], key
    no_weights = [a for a in _args(golden_dir, tmp_path / "b") if a != "--random-weights"]
    no_weights[no_weights.index("--methods") + 1] = "3am"
    res = CliRunner().invoke(app, no_weights)
    assert res.exit_code == 2 and "checkpoint" in res.output
    assert not (tmp_path / "b").exists()


def test_eval_unknown_methods_give_clear_errors(golden_dir, tmp_path):
    args = _args(golden_dir, tmp_path / "a")
    args[args.index("--methods") + 1] = "sam2,nope"
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "unknown method" in res.output and "sam2long" in res.output
    res = CliRunner().invoke(app, ["eval", "--data", "synthetic:x", "--out", str(tmp_path / "b"), "--random-weights"])
    assert res.exit_code == 2 and "synthetic:N" in res.output
    res = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "c"),
                                   "--random-weights", "--methods", "sam2"])
    assert res.exit_code == 2 and "no such file" in res.output


def test_registry_and_custom_method(golden_dir, tmp_path):
    assert {"sam2", "sam2long", "dam4sam", "3am", "3am+sam2long", "3am+dam4sam"} <= set(METHODS)
    assert resolve_methods(" SAM2, dam4sam ") == ["sam2", "dam4sam"]
    with pytest.raises(InputError):
        resolve_methods("sam2,sam2")
    with pytest.raises(InputError):
        register_method("sam2", lambda ctx: None)

    calls = []

    def build(ctx):
        calls.append(ctx)
        return ctx.sam2_predictor()

    register_method("test-custom", build, "test", replace=True)
    try:
        from threeam.models.sam2.config import SAM2Config

        cfg = SAM2Config.from_official_dict(json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())["config"])
        ctx = EvalContext(model_preset=cfg, random_weights=True)
        scenes = open_scenes("synthetic:1", synth_frames=4)
        res = run_evaluation(scenes, ["test-custom"], tmp_path / "o", ctx,
                             EvalConfig(max_sequences=2, worst_overlays=0, save_predictions=False, progress=False))
        assert len(calls) == 1 and res.methods["test-custom"].whole.n_tracks == 2
        assert not (tmp_path / "o" / "predictions").exists()
        assert res.methods["test-custom"].whole.n_frames == 2 * 4
        res2 = run_evaluation(scenes, ["test-custom"], tmp_path / "o2", ctx,
                              EvalConfig(max_sequences=2, worst_overlays=0, save_predictions=False, progress=False,
                                         exclude_cond_frame=True))
        assert res2.methods["test-custom"].whole.n_frames == 2 * 3
    finally:
        del METHODS["test-custom"]


def test_context_needs_a_checkpoint_unless_random():
    with pytest.raises(InputError, match="checkpoint"):
        EvalContext().sam2_model()


def test_peak_memory_cpu_sees_an_allocation():
    with PeakMemory("cpu") as pm:
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        a += 1
        import time
        time.sleep(0.05)
    assert pm.kind == "rss_delta"
    assert pm.mib > 32


def test_open_scenes_reads_each_dataset_layout(tmp_path):
    """Scenes written in the DAVIS, Replica and ScanNet++ layouts are found (format guessed)."""
    from threeam.data.davis import write_davis_sequence
    from threeam.data.replica import write_replica_sequence
    from threeam.data.scannetpp import write_scannetpp_scene

    from threeam.data.synth import generate_scene, get_synth_config

    scene = generate_scene(get_synth_config("tiny", n_frames=3, hfov_deg=90.0), seed=4)  # Replica needs 90 degrees
    write_davis_sequence(scene, tmp_path / "davis", "seq_a")
    write_replica_sequence(scene, tmp_path / "replica" / "room0" / "Sequence_1")
    write_scannetpp_scene(scene, tmp_path / "spp", "s0", unposed={1})
    for root, fmt in (("davis", "davis"), ("replica", "replica"), ("spp", "scannetpp")):
        for given in (None, fmt):
            scenes = open_scenes(str(tmp_path / root), given)
            assert len(scenes) == 1 and len(scenes[0]) == 3, (root, given)
            _, ids, unknown = load_sequence(scenes[0])
            assert ids.shape[0] == 3 and ids.max() > 0
            assert unknown == ([1] if fmt == "scannetpp" else []), fmt
    assert len(open_scenes(str(tmp_path / "replica"), stride=2)[0]) == 2
    assert len(open_scenes(str(tmp_path / "spp"), stride=2)[0]) == 2
    with pytest.raises(InputError, match="--format"):
        open_scenes(str(tmp_path / "davis"), "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="cannot tell"):
        open_scenes(str(tmp_path / "empty"))


def test_3am_combinations_use_the_3am_predictor(golden_dir, tmp_path, monkeypatch):
    """With a 3AM predictor available, 3am+sam2long / 3am+dam4sam put the policy on it (Table 7)."""
    import threeam.predictor as predictor_pkg
    from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig
    from threeam.predictor.video_predictor import VideoPredictor

    seen = []

    class Fake3AM(VideoPredictor):
        def compute_backbone_features(self, inference_state, frame_idx, image):
            seen.append((type(self).__name__, type(self.memory_policy).__name__ if self.memory_policy else None))
            return super().compute_backbone_features(inference_state, frame_idx, image)

    monkeypatch.setattr(predictor_pkg, "build_3am_predictor",
                        lambda ctx: Fake3AM(ctx.sam2_model(), VideoPredictorConfig(), progress=False), raising=False)
    cfg = SAM2Config.from_official_dict(json.loads((golden_dir / "sam2" / "case_small_v21.json").read_text())["config"])
    ctx = EvalContext(model_preset=cfg, random_weights=True)
    res = run_evaluation(open_scenes("synthetic:1", synth_frames=4), ["3am", "3am+sam2long", "3am+dam4sam"],
                         tmp_path / "o", ctx, EvalConfig(max_sequences=1, worst_overlays=0, progress=False))
    assert set(res.methods) == {"3am", "3am+sam2long", "3am+dam4sam"}
    assert {("Fake3AM", None), ("Fake3AM", "SAM2LongPolicy"), ("Fake3AM", "DAM4SAMPolicy")} == set(seen)
