"""Training presets, config overrides and JSON round trip, the task registry and `threeam train`."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from threeam.cli import app
from threeam.errors import InputError
from threeam.train import checkpointing
from threeam.train.config import (TrainConfig, apply_overrides, config_from_dict, config_from_json,
                                  config_to_dict, config_to_json, override_keys)
from threeam.train.distributed import DistContext
from threeam.train.recipes import TRAIN_PRESETS, TRAIN_TASKS, build_task, get_train_config, register_task


def test_paper_preset_matches_the_paper():
    cfg = get_train_config("paper-scannetpp-ase-mose")
    assert cfg.task == "3am"
    assert cfg.model.sam2 == "sam2.1_hiera_l"
    lrs = {g.name: (g.prefixes, g.lr) for g in cfg.optim.groups}
    assert lrs == {"memory_attention": (("sam2.memory_attention",), 5e-6),
                   "mask_decoder": (("sam2.sam_mask_decoder",), 5e-6),
                   "merger": (("merger",), 1e-5)}
    assert set(cfg.optim.frozen_prefixes) == {"sam2.image_encoder", "must3r"}
    assert cfg.data.batch_size == 1 and cfg.run.max_steps == 1_000_000 and cfg.data.frames_per_clip == 8
    assert cfg.run.grad_accum_steps == 1
    src = {s.name: s for s in cfg.data.sources}
    assert list(src) == ["scannetpp", "ase", "mose"]
    assert (src["scannetpp"].fov_prob, src["ase"].fov_prob, src["mose"].fov_prob) == (0.8, 0.8, 0.0)
    assert src["scannetpp"].prompt_kinds == ("mask",) and src["ase"].prompt_kinds == ("mask",)
    assert set(src["mose"].prompt_kinds) == {"point", "box", "mask"}
    assert cfg.data.fov_tau == 0.25
    w = cfg.loss
    assert (w.mask, w.dice, w.iou, w.object_score) == (20.0, 1.0, 1.0, 1.0)


def test_presets_are_fresh_and_unknown_names_listed():
    assert set(TRAIN_PRESETS) == {"paper-scannetpp-ase-mose", "tiny-synthetic", "toy-engine", "sam2-pretrain-synthetic",
                            "must3r-pretrain-synthetic", "toy-ablation-3am", "toy-ablation-sam2"}
    assert get_train_config("toy-engine") == get_train_config("toy-engine")
    with pytest.raises(InputError, match="valid presets: paper-scannetpp-ase-mose, tiny-synthetic, toy-engine, "):
        get_train_config("paper")


def test_overrides_are_typed():
    cfg = apply_overrides(get_train_config("paper-scannetpp-ase-mose"), [
        "run.max_steps=2e3", "optim.groups.merger.lr=2e-5", "data.sources.mose.weight=0.5",
        "optim.betas=0.9,0.95", "run.find_unused_parameters=true", "optim.grad_clip_norm=none",
        "data.sources.ase.prompt_kinds=mask,box", "optim.schedule=constant", "model.sam2_checkpoint=/w/sam.pt",
        "loss.mask=10", "seed=3"])
    assert cfg.run.max_steps == 2000 and isinstance(cfg.run.max_steps, int)
    assert {g.name: g.lr for g in cfg.optim.groups}["merger"] == 2e-5
    assert {s.name: s.weight for s in cfg.data.sources}["mose"] == 0.5
    assert cfg.optim.betas == (0.9, 0.95)
    assert cfg.run.find_unused_parameters is True and cfg.optim.grad_clip_norm is None
    assert {s.name: s.prompt_kinds for s in cfg.data.sources}["ase"] == ("mask", "box")
    assert cfg.optim.schedule == "constant" and cfg.model.sam2_checkpoint == "/w/sam.pt"
    assert cfg.loss.mask == 10.0 and cfg.seed == 3
    # the preset itself is untouched
    assert get_train_config("paper-scannetpp-ase-mose").run.max_steps == 1_000_000


@pytest.mark.parametrize("override, message", [
    ("run.max_stepz=3", "(?s)unknown config key 'run.max_stepz'; valid keys:.*run.max_steps"),
    ("data.sources.sa_v.weight=1", "unknown config key 'data.sources.sa_v.weight'"),
    ("optim.groups=1", "unknown config key 'optim.groups'"),
    ("run=1", "unknown config key 'run'"),
    ("run.max_steps=ten", "expected an integer"),
    ("run.max_steps=2.5", "expected an integer"),
    ("run.max_steps=0", "run.max_steps must be >= 1"),
    ("run.progress=maybe", "expected true or false"),
    ("optim.schedule=linear", "expected one of constant, cosine"),
    ("optim.betas=0.9", "expected 2 comma-separated values"),
    ("optim.groups.merger.lr=-1", "lr must be > 0"),
    ("data.sources.mose.fov_prob=1.5", r"fov_prob must lie in \[0, 1\]"),
    ("data.sources.mose.prompt_kinds=scribble", "unknown kind 'scribble'"),
    ("loss.dice=-1", "must be >= 0"),
    ("run.max_steps", "not of the form key.sub=value"),
])
def test_bad_overrides_raise_clear_errors(override, message):
    with pytest.raises(InputError, match=message):
        apply_overrides(get_train_config("paper-scannetpp-ase-mose"), [override])


def test_override_keys_and_json_round_trip():
    cfg = get_train_config("paper-scannetpp-ase-mose")
    keys = override_keys(cfg)
    assert "optim.groups.merger.lr" in keys and "data.sources.mose.fov_prob" in keys
    assert "optim.groups.merger.name" not in keys and "run.max_steps" in keys and "loss.object_score" in keys
    for name in TRAIN_PRESETS:
        c = apply_overrides(get_train_config(name), ["optim.grad_clip_norm=none"])
        assert config_from_json(config_to_json(c)) == c
        assert config_from_dict(json.loads(json.dumps(config_to_dict(c)))) == c
    bad = config_to_dict(cfg)
    bad["run"]["epochs"] = 3
    with pytest.raises(InputError, match="unknown keys"):
        config_from_dict(bad)


def test_task_table_is_explicit():
    import subprocess
    import sys

    assert list(TRAIN_TASKS) == ["toy-regression", "sam2", "3am", "must3r"]
    # listed in the table, not registered by importing the task modules
    probe = subprocess.run([sys.executable, "-c", "import sys, threeam.train.recipes as r; "
                            "print(sorted(r.TRAIN_TASKS), 'threeam.train.three_am_task' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "['3am', 'must3r', 'sam2', 'toy-regression'] False"
    for name in ("sam2", "3am", "must3r"):
        assert get_train_config({"sam2": "toy-ablation-sam2", "3am": "toy-ablation-3am",
                           "must3r": "must3r-pretrain-synthetic"}[name]).task == name
    with pytest.raises(InputError, match="task 'nope' is not registered; registered tasks: 3am, must3r, sam2, "
                                         "toy-regression"):
        build_task(apply_overrides(get_train_config("toy-engine"), ["task=nope"]), DistContext())
    with pytest.raises(InputError, match="already registered"):
        register_task("toy-regression")(lambda cfg, ctx: None)
    task = build_task(get_train_config("toy-engine"), DistContext())
    assert set(task.sources) == {"synthetic-static", "synthetic-dynamic"}


# ------------------------------------------------------------------------------ CLI

FAST = ["run.progress=false", "toy.hidden=16", "toy.dataset_size=16", "data.batch_size=4", "run.ckpt_every=2"]


def test_cli_train_writes_checkpoint_and_events_then_resumes(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--preset", "toy-engine", "--out", str(out), "run.max_steps=3", *FAST])
    assert res.exit_code == 0, res.output
    assert "to step 3" in res.output
    assert [p.name for p in checkpointing.list_checkpoints(out)] == ["step_00000002", "step_00000003"]
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert json.loads((out / "config.json").read_text())["run"]["max_steps"] == 3

    again = runner.invoke(app, ["train", "--preset", "toy-engine", "--out", str(out), *FAST])
    assert again.exit_code == 2 and "already holds checkpoints" in again.output

    res = runner.invoke(app, ["train", "--out", str(out), "--resume", "run.max_steps=5"])
    assert res.exit_code == 0, res.output
    assert "to step 5" in res.output
    state = checkpointing.read_state(checkpointing.find_latest(out))
    assert state["step"] == 5
    assert state["config"]["toy"]["hidden"] == 16  # the checkpoint's config was continued
    assert sum(state["positions"].values()) == 5  # two more steps on top of the saved three
    assert json.loads((out / "config.json").read_text())["run"]["max_steps"] == 5


def test_cli_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--preset is required" in res.output
    res = runner.invoke(app, ["train", "--preset", "toy-engine", "--out", str(tmp_path), "run.nope=1"])
    assert res.exit_code == 2 and "unknown config key 'run.nope'" in res.output and "run.max_steps" in res.output
    res = runner.invoke(app, ["train", "--out", str(tmp_path), "--resume"])
    assert res.exit_code == 2 and "no checkpoint" in res.output
    res = runner.invoke(app, ["train", "--preset", "toy-engine", "--out", str(tmp_path), "task=nope"])
    assert res.exit_code == 2 and "'nope' is not registered" in res.output
    res = runner.invoke(app, ["train", "--preset", "paper-scannetpp-ase-mose", "--print-config", "run.max_steps=7"])
    assert res.exit_code == 0 and json.loads(res.output)["run"]["max_steps"] == 7
    res = runner.invoke(app, ["train", "--preset", "toy-engine", "--list-keys"])
    assert res.exit_code == 0 and "optim.groups.merger.lr" in res.output.split()


def test_paper_groups_fit_the_real_3am_model():
    """The paper preset's groups claim exactly memory attention, mask decoder and merger of SAM 2.1-L 3AM."""
    import torch

    from threeam.models.three_am import ThreeAM
    from threeam.train.optim import assign_parameters

    model = ThreeAM("3am_hiera_l", device=torch.device("meta"))
    assignment = assign_parameters(model, get_train_config("paper-scannetpp-ase-mose").optim)
    counts = {g: sum(p.numel() for _, p in params) for g, params in assignment.trainable.items()}
    assert counts == {"memory_attention": sum(p.numel() for p in model.sam2.memory_attention.parameters()),
                      "mask_decoder": sum(p.numel() for p in model.sam2.sam_mask_decoder.parameters()),
                      "merger": sum(p.numel() for p in model.merger.parameters())}
    frozen = {n for n, _ in assignment.frozen}
    assert {f"sam2.image_encoder.{n}" for n, _ in model.sam2.image_encoder.named_parameters()} <= frozen
    assert {f"must3r.{n}" for n, _ in model.must3r.named_parameters()} <= assignment.frozen_explicit


def test_merger_transformer_group_takes_the_transformer_and_leaves_the_output_convs():
    """Beside a ``merger`` group, ``merger_transformer`` claims exactly the merger's TRANSFORMER_PARTS (the
    longest prefix wins) and the ``merger`` group keeps the output convs; the two together hold every merger
    parameter, and the optimizer gives each its own rate."""
    from torch import nn

    from threeam.models.merger import OUTPUT_PARTS, TRANSFORMER_PARTS, FeatureMerger
    from threeam.train.config import OptimConfig, ParamGroupConfig
    from threeam.train.optim import assign_parameters, build_optimizer
    from threeam.train.recipes import merger_transformer_group

    model = nn.Module()
    model.merger = FeatureMerger("tiny")
    model.other = nn.Linear(2, 2)
    assert {name for name, _ in model.merger.named_children()} == set(TRANSFORMER_PARTS) | set(OUTPUT_PARTS)
    config = OptimConfig(groups=(ParamGroupConfig("merger", ("merger",), lr=5e-3), merger_transformer_group(5e-4)))
    got = assign_parameters(model, config)
    part = {name: name.split(".")[1] for name, _ in model.merger.named_parameters(prefix="merger")}
    assert {part[n] for n, _ in got.trainable["merger_transformer"]} == set(TRANSFORMER_PARTS)
    assert {part[n] for n, _ in got.trainable["merger"]} == set(OUTPUT_PARTS)
    assert len(got.trainable["merger"]) + len(got.trainable["merger_transformer"]) == len(part)
    assert [n for n, _ in got.frozen] == ["other.weight", "other.bias"]
    lrs = {g["name"].split("/")[0]: g["lr"] for g in build_optimizer(model, config).param_groups}
    assert lrs == {"merger": 5e-3, "merger_transformer": 5e-4}
