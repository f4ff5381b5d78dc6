"""The toy-ablation experiment: statistics, the table built from per-track results, and (slow) the
whole pipeline at smoke size, resumed."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from threeam.experiments.toy_ablation import (SIZES, ToyAblationConfig, build_table, mean_se, paired_ci,
                                              run_toy_ablation)


def test_mean_se_and_paired_ci():
    m, se = mean_se([0.2, 0.4, 0.6])
    assert m == pytest.approx(0.4) and se == pytest.approx(0.2 / math.sqrt(3))
    assert math.isnan(mean_se([0.5])[1]) and math.isnan(mean_se([])[0])
    d, lo, hi, n = paired_ci([1.0, 2.0, 3.0, float("nan")], [0.5, 1.0, 2.0, 1.0])
    diffs = np.array([0.5, 1.0, 1.0])
    assert n == 3 and d == pytest.approx(diffs.mean())
    half = 1.96 * diffs.std(ddof=1) / math.sqrt(3)
    assert lo == pytest.approx(d - half) and hi == pytest.approx(d + half)


def _tracks(found: list[bool], selected: list[bool]):
    # 4 frames per track: frames 0-1 object present, 2-3 absent; "found" tracks hit both present frames
    rows = []
    for i, (f, s) in enumerate(zip(found, selected)):
        rows.append({"scene": "eval_00000", "object": i + 1, "selected": s,
                     "frame_iou": [1.0 if f else 0.0, 1.0 if f else 0.0, 1.0, 1.0],
                     "present": [True, True, False, False], "predicted": [f, f, False, False]})
    return rows


def _two_seed_eval(tmp_path) -> ToyAblationConfig:
    """``OUT/eval`` of a 2-seed ``3am-fov`` experiment over 4 tracks (2 in the Selected Subset)."""
    sel = [True, False, True, False]
    docs = {"prompt-only": _tracks([False] * 4, sel), "sam2-pretrained": _tracks([True, True, False, False], sel),
            "3am-fov-s0": _tracks([True, True, True, False], sel), "3am-fov-s1": _tracks([True, True, True, True], sel)}
    (tmp_path / "eval").mkdir()
    for m, rows in docs.items():
        (tmp_path / "eval" / f"{m}.json").write_text(json.dumps({"method": m, "tracks": rows}))
    return ToyAblationConfig(seeds=(0, 1), arms=("3am-fov",))


def test_table_means_over_seeds_and_pairs_tracks(tmp_path):
    cfg = _two_seed_eval(tmp_path)
    table = build_table(tmp_path, cfg)
    assert table["tracks"] == {"whole": 4, "selected": 2}
    tr = table["rows"]["3am-fov"]["whole/Tracking Recall"]
    assert tr["per_seed"] == pytest.approx([0.75, 1.0]) and tr["mean"] == pytest.approx(0.875)
    assert tr["se"] == pytest.approx(np.std([0.75, 1.0], ddof=1) / math.sqrt(2))
    # paired over tracks: arm (seed mean) minus SAM 2 per track: [0, 0, 1, 0.5]
    assert tr["diff_vs_sam2"] == pytest.approx(0.375) and tr["n_tracks"] == 4
    s = table["rows"]["sam2-pretrained"]["selected/Tracking Recall"]
    assert s["mean"] == pytest.approx(0.5)  # tracks 1 and 3: found, not found
    md = (tmp_path / "table.md").read_text()
    assert "| 3am-fov | 2 | " in md and "87.5 ± 12.5" in md
    assert (tmp_path / "ablation.svg").read_text().startswith("<svg")


def test_table_adds_the_seeds_whose_merger_reads_the_geometry(tmp_path):
    cfg = _two_seed_eval(tmp_path)
    (tmp_path / "geometry").mkdir()
    for seed, value in ((0, 0.05), (1, 0.5)):
        (tmp_path / "geometry" / f"3am-fov-s{seed}.json").write_text(json.dumps({"geometry_dependence": value}))
    table = build_table(tmp_path, cfg)
    assert table["reads_geometry_seeds"] == {"3am-fov": [1]}
    row = table["rows"]["3am-fov (reads geometry)"]
    assert row["runs"] == 1 and row["whole/Tracking Recall"]["per_seed"] == pytest.approx([1.0])
    assert table["rows"]["3am-fov"]["runs"] == 2
    assert "3am-fov: the merger reads the geometry" in (tmp_path / "table.md").read_text()
    # the rule is the config's: a stricter threshold leaves no seed (and no extra row)
    strict = build_table(tmp_path, replace(cfg, geometry_threshold=0.9))
    assert strict["reads_geometry_seeds"] == {"3am-fov": []} and "3am-fov (reads geometry)" not in strict["rows"]


@pytest.mark.slow
def test_smoke_pipeline_runs_and_resumes(tmp_path):
    cfg = SIZES["smoke"]
    result = run_toy_ablation(tmp_path, cfg)
    rows = set(result["table"]["rows"])
    base = {"prompt-only", "sam2-pretrained", "sam2-ft", "3am-fov", "3am-continuous", "3am-random", "sam2-continuous"}
    assert base <= rows
    three_am = ("3am-fov", "3am-continuous", "3am-random")
    assert rows - base <= {f"{a} (reads geometry)" for a in three_am}
    for arm in three_am:  # the geometry stage checked every 3AM run on held-out training scenes
        for seed in cfg.seeds:
            check = json.loads((tmp_path / "geometry" / f"{arm}-s{seed}.json").read_text())
            assert check["frames"] > 0 and math.isfinite(check["geometry_dependence"])
    assert set(result["table"]["reads_geometry_seeds"]) == set(three_am)
    gates = json.loads((tmp_path / "gates.json").read_text())
    assert gates["gt_points_pick_rate"] in (1.0, None) or math.isnan(gates["gt_points_pick_rate"])
    before = (tmp_path / "eval" / "3am-fov-s0.json").stat().st_mtime_ns
    run_toy_ablation(tmp_path, cfg)  # everything is there: nothing is retrained or re-evaluated
    assert (tmp_path / "eval" / "3am-fov-s0.json").stat().st_mtime_ns == before


def test_given_pretrained_records_replace_the_pretrain_stages(tmp_path):
    """--sam2-weights / --must3r-weights: the arms start from committed records; no pretraining runs.
    Also: --merger-lr and --merger-transformer-lr reach the 3AM arms only, and the sam2-continuous control arm
    trains SAM 2 alone with continuous clips."""
    from dataclasses import replace

    from threeam.errors import InputError
    from threeam.experiments.artifacts import export_run
    from threeam.experiments.toy_ablation import config_from_args, parse_args, pretrained
    from threeam.train import checkpointing

    cfg = SIZES["smoke"]
    src = tmp_path / "src"
    run_toy_ablation(src, cfg, stages=("scenes", "pretrain-must3r", "pretrain-sam2"))
    rec = {part: tmp_path / "records" / part for part in ("sam2", "must3r")}
    for part, dest in rec.items():
        export_run(pretrained(src, part, cfg), dest)
    args = config_from_args(parse_args(["--out", "x", "--size", "smoke", "--arms", "sam2-continuous,3am-fov",
                                        "--seeds", "0", "--merger-lr", "1e-3", "--merger-transformer-lr", "2e-4",
                                        "--sam2-weights", str(rec["sam2"]), "--must3r-weights", str(rec["must3r"])]))
    assert args == replace(cfg, arms=("sam2-continuous", "3am-fov"), seeds=(0,), sam2_weights=str(rec["sam2"]),
                           must3r_weights=str(rec["must3r"]), merger_lr=1e-3, merger_transformer_lr=2e-4)
    out = tmp_path / "out"
    result = run_toy_ablation(out, args)
    assert not (out / "pretrain-sam2").exists() and not (out / "pretrain-must3r").exists()
    assert set(result["table"]["rows"]) == {"prompt-only", "sam2-pretrained", "sam2-continuous", "3am-fov"}
    gates = json.loads((out / "gates.json").read_text())  # the pick rate on the confirmation set beside the gate's
    confirm = gates["must3r_confirm"]  # smoke: the confirmation set is the evaluation set, so the same trials
    assert confirm["set"] == "lookalike-tiny" and confirm["trials"] == gates["trials"]
    assert confirm["pick_rate"] == gates["must3r_lookalike_pick_rate"] or confirm["pick_rate"] is None
    assert config_from_args(parse_args(["--out", "x", "--eval-set", "lookalike-confirm"])).eval_set == "lookalike-confirm"
    with pytest.raises(InputError, match="unknown --eval-set"):
        config_from_args(parse_args(["--out", "x", "--eval-set", "nope"]))
    run_cfg = checkpointing.read_state(checkpointing.find_latest(out / "arms" / "3am-fov-s0"))["config"]
    model_cfg = run_cfg["model"]
    assert model_cfg["sam2_checkpoint"] == str(rec["sam2"]) and model_cfg["must3r_checkpoint"] == str(rec["must3r"])
    lrs = {g["name"]: g["lr"] for g in run_cfg["optim"]["groups"]}
    assert lrs["merger"] == 1e-3 and lrs["merger_transformer"] == 2e-4
    control = checkpointing.read_state(checkpointing.find_latest(out / "arms" / "sam2-continuous-s0"))["config"]
    assert control["task"] == "sam2" and control["data"]["sources"][0]["fov_prob"] == 0
    assert not {"merger", "merger_transformer"} & {g["name"] for g in control["optim"]["groups"]}
    with pytest.raises(InputError, match="merger_lr"):
        replace(cfg, merger_lr=-1.0)
    with pytest.raises(InputError, match="merger_transformer_lr"):
        replace(cfg, merger_transformer_lr=0.0)
    run_toy_ablation(out, args, stages=("arms",))  # the same recipe again: the finished arms are skipped
    # the same --out with another recipe is refused, naming what differs, instead of skipping the finished arm
    with pytest.raises(InputError, match=r"another recipe.*optim\.groups\.merger\.lr: 0\.001 -> 0\.002"):
        run_toy_ablation(out, replace(args, merger_lr=2e-3), stages=("arms",))
    with pytest.raises(InputError, match="'sam2' training checkpoint"):
        run_toy_ablation(tmp_path / "bad", replace(cfg, sam2_weights=str(rec["must3r"])), stages=("pretrain-sam2",))


def test_timings_from_concurrent_processes_are_all_kept(tmp_path):
    """Two processes sharing one --out each add their stage times; no entry is lost and repeats add up."""
    import json
    import multiprocessing as mp

    from threeam.experiments.toy_ablation import _timing

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_timings, args=(str(tmp_path), name)) for name in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    doc = json.loads((tmp_path / "timings.json").read_text())
    assert set(doc) == {f"arm {n} s{i}" for n in ("a", "b") for i in range(20)}
    assert all(v["seconds"] == 2.0 for v in doc.values())
    _timing(tmp_path, "arm a s0", {"seconds": 1.5, "steps": 3})
    doc = json.loads((tmp_path / "timings.json").read_text())
    assert doc["arm a s0"] == {"seconds": 3.5, "steps": 3}


def _add_timings(out: str, name: str) -> None:
    from pathlib import Path

    from threeam.experiments.toy_ablation import _timing

    for rep in range(2):
        for i in range(20):
            _timing(Path(out), f"arm {name} s{i}", {"seconds": 1.0})


def test_geometry_oracle_arm_trains_and_evaluates_with_the_gt_pointmap(tmp_path, monkeypatch):
    """``3am-continuous-gt-points`` is not a default arm; run, it trains with ``model.geometry_input=gt_points``
    and its evaluation hands the merger each evaluation scene's GT (`use_gt_points`, one scene at a time)."""
    from dataclasses import replace

    import threeam.train.gt_geometry as gt_geometry
    from threeam.experiments.toy_ablation import ToyAblationConfig, config_from_args, parse_args, uses_gt_points
    from threeam.train import checkpointing

    assert "3am-continuous-gt-points" not in ToyAblationConfig().arms and uses_gt_points("3am-continuous-gt-points")
    assert not uses_gt_points("3am-continuous")
    scenes_seen = []
    real = gt_geometry.use_gt_points

    noises = []

    def spy(predictor, noise=None):
        noises.append(noise)
        set_scene = real(predictor, noise)
        return lambda scene: scenes_seen.append(scene.name) or set_scene(scene)

    monkeypatch.setattr(gt_geometry, "use_gt_points", spy)
    # --train-override reaches the arm; the evaluation uses the registration error the arm trained with
    args = config_from_args(parse_args(["--out", "x", "--size", "smoke", "--arms", "3am-continuous-gt-points",
                                        "--seeds", "0", "--train-override", "model.gt_points_trans_noise=0.25"]))
    cfg = replace(SIZES["smoke"], arms=("3am-continuous-gt-points",), seeds=(0,),
                  train_overrides=SIZES["smoke"].train_overrides + ("model.gt_points_trans_noise=0.25",))
    assert args == cfg
    result = run_toy_ablation(tmp_path, cfg)
    run_cfg = checkpointing.read_state(checkpointing.find_latest(tmp_path / "arms" / "3am-continuous-gt-points-s0"))
    assert run_cfg["config"]["model"]["geometry_input"] == "gt_points"
    assert run_cfg["config"]["model"]["gt_points_trans_noise"] == 0.25 and noises == [gt_geometry.PoseNoise(0.25)]
    rows = json.loads((tmp_path / "eval" / "3am-continuous-gt-points-s0.json").read_text())["tracks"]
    assert rows and sorted(set(scenes_seen)) == sorted({r["scene"] for r in rows})
    assert "3am-continuous-gt-points" in result["table"]["rows"]
    assert not (tmp_path / "geometry" / "3am-continuous-gt-points-s0.json").exists()


def test_pretraining_curriculum_chains_its_phases_and_resumes(tmp_path):
    """Each phase of a pretraining curriculum starts from the previous phase's weights; the last phase is the
    pretrained model the later stages use; a rerun skips finished phases. The default curricula's recipes
    all resolve (names, override keys and values)."""
    from dataclasses import replace

    from threeam.errors import InputError
    from threeam.experiments.toy_ablation import (MUST3R_PHASES, SAM2_PHASES, SINGLE_PHASE, TINY_WIDE_PHASES,
                                                  TINY_WIDER_PHASES,
                                                  PretrainPhase, ToyAblationConfig, config_from_args, parse_args,
                                                  pretrained)
    from threeam.train import checkpointing
    from threeam.train.config import apply_overrides
    from threeam.train.recipes import get_train_config

    for preset, phases in (("must3r-pretrain-synthetic", MUST3R_PHASES), ("sam2-pretrain-synthetic", SAM2_PHASES)):
        for ph in phases:
            apply_overrides(get_train_config(preset), list(ph.overrides))
    assert ToyAblationConfig().must3r_phases == MUST3R_PHASES
    single = config_from_args(parse_args(["--out", "x", "--pretrain", "single"]))
    assert single.must3r_phases == single.sam2_phases == SINGLE_PHASE
    wide = config_from_args(parse_args(["--out", "x", "--pretrain", "wide"]))
    assert wide.must3r_phases == TINY_WIDE_PHASES and wide.sam2_phases == SAM2_PHASES
    assert [ph.steps for ph in TINY_WIDE_PHASES] == [600] * len(MUST3R_PHASES) + [1500, 2000, 4000]
    for ph in TINY_WIDE_PHASES:
        assert apply_overrides(get_train_config("must3r-pretrain-synthetic"), list(ph.overrides)).model.must3r == "tiny-wide"
    wider = config_from_args(parse_args(["--out", "x", "--pretrain", "wider"]))
    assert wider.must3r_phases == TINY_WIDER_PHASES
    assert [ph.steps for ph in TINY_WIDER_PHASES] == [600] * len(MUST3R_PHASES) + [1500, 1000, 4500]
    assert TINY_WIDER_PHASES[-2].schedule_steps == 2000 and TINY_WIDER_PHASES[-1].average_last == 10
    for ph in TINY_WIDER_PHASES:
        tc = apply_overrides(get_train_config("must3r-pretrain-synthetic"), list(ph.overrides))
        assert tc.model.must3r == "tiny-wider"
    last = apply_overrides(get_train_config("must3r-pretrain-synthetic"), list(TINY_WIDER_PHASES[-1].overrides))
    assert last.data.sources[0].fov_prob == 0 and last.optim.schedule == "constant"
    cfg = replace(SIZES["smoke"], must3r_phases=(PretrainPhase("a", 2), PretrainPhase("b", 1, ("optim.warmup_steps=0",))),
                  sam2_phases=(PretrainPhase("only", 1),), arms=("sam2-ft",), seeds=(0,))
    run_toy_ablation(tmp_path, cfg, stages=("scenes", "pretrain-must3r", "pretrain-sam2"))
    first, last = tmp_path / "pretrain-must3r" / "0-a", tmp_path / "pretrain-must3r" / "1-b"
    assert pretrained(tmp_path, "must3r", cfg) == last and pretrained(tmp_path, "sam2", cfg).name == "0-only"
    state = checkpointing.read_state(checkpointing.find_latest(last))
    assert state["config"]["model"]["init_checkpoint"] == str(first) and state["step"] == 1
    assert state["config"]["optim"]["warmup_steps"] == 0
    before = checkpointing.find_latest(last).stat().st_mtime_ns
    run_toy_ablation(tmp_path, cfg, stages=("pretrain-must3r",))
    assert checkpointing.find_latest(last).stat().st_mtime_ns == before
    with pytest.raises(InputError, match="distinct names"):
        replace(cfg, sam2_phases=(PretrainPhase("x", 1), PretrainPhase("x", 1)))


def test_phases_stop_mid_schedule_and_average_their_last_checkpoints(tmp_path):
    """A phase may stop before its schedule ends (``schedule_steps``: how some records were made) and may hand on
    the average of its newest checkpoints (``average_last``) as a run record, which the next stages use; a rerun
    keeps both. Scaling every phase to N steps keeps the averages within the steps run."""
    from threeam.errors import InputError
    from threeam.experiments.toy_ablation import PretrainPhase, _phases, pretrained
    from threeam.train import checkpointing
    from threeam.train.export import average_checkpoints, load_for_eval

    cfg = replace(SIZES["smoke"], must3r_phases=(PretrainPhase("cut", 2, schedule_steps=5),
                                                 PretrainPhase("avg", 3, average_last=2, average_every=1)),
                  sam2_phases=(PretrainPhase("only", 1),), arms=("sam2-ft",), seeds=(0,))
    run_toy_ablation(tmp_path, cfg, stages=("scenes", "pretrain-must3r"))
    cut, avg = tmp_path / "pretrain-must3r" / "0-cut", tmp_path / "pretrain-must3r" / "1-avg"
    state = checkpointing.read_state(checkpointing.find_latest(cut))
    assert state["step"] == 2 and state["config"]["run"]["max_steps"] == 5
    assert [c.name for c in checkpointing.list_checkpoints(avg)] == ["step_00000001", "step_00000002", "step_00000003"]
    record = pretrained(tmp_path, "must3r", cfg)
    assert record == avg / "average"
    doc = json.loads((record / "run.json").read_text())
    assert doc["averaged_steps"] == [2, 3] and doc["config"]["model"]["init_checkpoint"] == str(cut)
    weights, _, _ = average_checkpoints(avg, 2)
    loaded = load_for_eval(record, task="must3r").state_dict()
    assert all(torch.equal(loaded[k], v.half().float()) for k, v in weights.items() if v.is_floating_point())
    before = (record / "model.fp16.safetensors").stat().st_mtime_ns
    run_toy_ablation(tmp_path, cfg, stages=("pretrain-must3r",))
    assert (record / "model.fp16.safetensors").stat().st_mtime_ns == before
    scaled = _phases(replace(cfg, must3r_phases=(PretrainPhase("avg", 3000, average_last=10, schedule_steps=4000),),
                             pretrain_must3r_steps=250), "must3r")
    assert [(ph.steps, ph.schedule_steps, ph.average_last, ph.average_every) for ph in scaled] == [(250, None, 2, 100)]
    with pytest.raises(InputError, match="needs >= 30 steps"):
        PretrainPhase("x", 20, average_last=3, average_every=10)
    with pytest.raises(InputError, match="schedule_steps"):
        PretrainPhase("x", 20, schedule_steps=10)


def test_3am_arms_build_the_must3r_it_was_pretrained_as(tmp_path):
    """A MUSt3R pretrained with ``model.must3r_res`` and ``model.must3r=tiny-wide`` gives every 3AM arm the same
    size and architecture (the SAM 2 arms have no MUSt3R); the evaluated arm model streams at that size."""
    from dataclasses import replace

    from threeam.experiments.toy_ablation import PretrainPhase
    from threeam.train import checkpointing
    from threeam.train.export import load_for_eval

    cfg = replace(SIZES["smoke"], must3r_phases=(PretrainPhase("r48", 1, ("model.must3r_res=48", "model.must3r=tiny-wide")),),
                  sam2_phases=(PretrainPhase("only", 1),), arms=("3am-continuous", "sam2-continuous"), seeds=(0,),
                  arm_steps=1)
    run_toy_ablation(tmp_path, cfg, stages=("scenes", "pretrain-must3r", "pretrain-sam2", "arms"))
    arm = tmp_path / "arms" / "3am-continuous-s0"
    assert checkpointing.read_state(checkpointing.find_latest(arm))["config"]["model"]["must3r_res"] == 48
    assert checkpointing.read_state(checkpointing.find_latest(arm))["config"]["model"]["must3r"] == "tiny-wide"
    model = load_for_eval(arm, task="3am")
    assert model.stream_config.res == 48 and model.must3r.encoder.patch_embed.proj.weight.shape[0] == 96
    control = checkpointing.read_state(checkpointing.find_latest(tmp_path / "arms" / "sam2-continuous-s0"))
    assert control["config"]["model"]["must3r_res"] is None
