"""Training engine: optimizer groups and freezing, schedules, mixture sampler, sharded sources,
checkpoints, exact resume and a toy overfitting run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from threeam.errors import CheckpointError, InputError
from threeam.train import checkpointing
from threeam.train.config import OptimConfig, ParamGroupConfig, apply_overrides
from threeam.train.distributed import DistContext
from threeam.train.optim import (assign_parameters, build_optimizer, build_scheduler, clip_gradients,
                                 format_summary, lr_factor, summary_rows)
from threeam.train.recipes import OVERFIT_CHECKS, ToyRegressor, build_task, get_train_config, run_training
from threeam.train.trainer import IndexedSource, MixtureSampler, Trainer, seed_everything


def toy_config(*overrides: str):
    base = ["run.progress=false", "toy.hidden=16", "toy.dataset_size=24", "data.batch_size=4"]
    return apply_overrides(get_train_config("toy-engine"), base + list(overrides))


def make_trainer(cfg, out: Path) -> Trainer:
    seed_everything(cfg.seed)
    task = build_task(cfg, DistContext())
    return Trainer(task.model, task.step_fn, task.sources, cfg, out)


# ------------------------------------------------------------------------------ optim


def test_groups_freeze_longest_prefix_and_summary():
    model = ToyRegressor(4, 8, 2)
    cfg = OptimConfig(groups=(ParamGroupConfig("dec", ("sam_mask_decoder",), lr=1e-3),
                              ParamGroupConfig("enc_bias", ("image_encoder.bias",), lr=2e-3)),
                      frozen_prefixes=("image_encoder",), weight_decay=0.05)
    asg = assign_parameters(model, cfg)
    opt = build_optimizer(model, cfg, asg)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert grads["image_encoder.weight"] is False            # explicit frozen prefix
    assert grads["image_encoder.bias"] is True               # longer trainable prefix wins
    assert grads["merger.0.weight"] is False                 # unclaimed -> frozen
    assert all(v for n, v in grads.items() if n.startswith("sam_mask_decoder"))
    by_name = {g["name"]: g for g in opt.param_groups}
    # biases and LayerNorm parameters go to the no-decay group
    assert by_name["dec"]["weight_decay"] == 0.05 and len(by_name["dec"]["params"]) == 1
    assert by_name["dec/no_decay"]["weight_decay"] == 0.0 and len(by_name["dec/no_decay"]["params"]) == 3
    assert by_name["enc_bias/no_decay"]["lr"] == 2e-3
    rows = {r[0]: r for r in summary_rows(asg, cfg)}
    assert rows["dec"][3] == 8 * 2 + 2 + 8 + 8
    assert rows["enc_bias"][3] == 8
    total = sum(p.numel() for p in model.parameters())
    assert rows["total"][3] == total
    assert rows["frozen"][3] == total - rows["dec"][3] - 8
    assert "sam_mask_decoder" in format_summary(asg, cfg)


def test_unmatched_prefixes_are_errors():
    model = ToyRegressor(4, 8, 2)
    with pytest.raises(InputError, match="matches no parameter.*top-level modules: image_encoder"):
        assign_parameters(model, OptimConfig(groups=(ParamGroupConfig("m", ("mask_decoder",), lr=1e-3),)))
    with pytest.raises(InputError, match="frozen prefix 'must3r'"):
        assign_parameters(model, OptimConfig(groups=(ParamGroupConfig("m", ("merger",), lr=1e-3),),
                                             frozen_prefixes=("must3r",)))
    with pytest.raises(InputError, match="no trainable parameters"):
        assign_parameters(model, OptimConfig())
    with pytest.raises(InputError, match="both frozen and trainable"):
        OptimConfig(groups=(ParamGroupConfig("m", ("merger",), lr=1e-3),), frozen_prefixes=("merger",))


def test_lr_schedules_and_clipping():
    cos = OptimConfig(groups=(ParamGroupConfig("m", ("merger",), lr=1.0),), schedule="cosine",
                      warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_factor(s, 20, cos) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 20, cos) == pytest.approx(1.0)
    assert lr_factor(19, 20, cos) == pytest.approx(0.1)
    mid = 4 + (19 - 4) / 2
    assert lr_factor(int(mid), 20, cos) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 15)))
    const = OptimConfig(groups=cos.groups, schedule="constant", warmup_steps=2)
    assert [lr_factor(s, 10, const) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]

    model = ToyRegressor(4, 8, 2)
    opt = build_optimizer(model, const)
    sched = build_scheduler(opt, 10, const)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)

    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    norm = clip_gradients([p], 1.0)
    assert float(norm) == pytest.approx(5.0)
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8, 0.0, 0.0]), atol=1e-6)
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    assert float(clip_gradients([p], None)) == pytest.approx(5.0)
    assert torch.equal(p.grad, torch.tensor([3.0, 4.0, 0.0, 0.0]))


# ------------------------------------------------------------------------------ data


def test_mixture_sampler_frequencies_and_state():
    s = MixtureSampler({"a": 0.6, "b": 0.3, "c": 0.1, "never": 0.0}, seed=3)
    draws = [s.next() for _ in range(5000)]
    freq = {k: draws.count(k) / len(draws) for k in ("a", "b", "c", "never")}
    assert abs(freq["a"] - 0.6) < 0.03 and abs(freq["b"] - 0.3) < 0.03 and abs(freq["c"] - 0.1) < 0.02
    assert freq["never"] == 0.0
    state = json.loads(json.dumps(s.state_dict()))  # must survive JSON
    expect = [s.next() for _ in range(50)]
    t = MixtureSampler({"a": 0.6, "b": 0.3, "c": 0.1, "never": 0.0}, seed=99)
    t.load_state_dict(state)
    assert [t.next() for _ in range(50)] == expect
    assert t.counts == s.counts
    with pytest.raises(InputError):
        MixtureSampler({"a": 0.0}, seed=0)


def test_indexed_source_sharding_epochs_and_resume():
    src = IndexedSource(lambda k: k, length=10, batch_size=None, seed=5)
    one = DistContext()
    stream = [next(it) for it in [src(0, one)] for _ in range(30)]
    for epoch in range(3):  # each epoch is a permutation of all items, epochs differ
        assert sorted(stream[10 * epoch:10 * epoch + 10]) == list(range(10))
    assert stream[:10] != stream[10:20]
    r0, r1 = DistContext(rank=0, world_size=2), DistContext(rank=1, world_size=2)
    it0, it1 = src(0, r0), src(0, r1)
    a = [next(it0) for _ in range(5)]
    b = [next(it1) for _ in range(5)]
    assert a == stream[0:10:2] and b == stream[1:10:2]  # disjoint shards covering the stream
    it = src(7, one)
    assert [next(it) for _ in range(5)] == stream[7:12]  # resumable position
    batched = IndexedSource(lambda k: torch.tensor([k]), length=10, batch_size=4, seed=5)
    first = next(batched(0, one))
    assert first.shape == (4, 1) and first[:, 0].tolist() == stream[:4]


# ------------------------------------------------------------------------------ trainer


def test_exact_resume_matches_uninterrupted_run(tmp_path):
    # dropout (torch RNG), gradient accumulation, two mixed sources, warm-up + cosine schedule
    cfg = toy_config("run.max_steps=10", "run.grad_accum_steps=2", "toy.dropout=0.3",
                     "optim.warmup_steps=3", "run.ckpt_every=100", "run.log_every=2")
    full = make_trainer(cfg, tmp_path / "full")
    full_hist = full.fit()
    assert len(full_hist) == 10

    first = make_trainer(cfg, tmp_path / "split")
    first_hist = first.fit(until=5)
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path / "split")] == ["step_00000005"]
    seed_everything(12345)  # disturb every global RNG: resume must restore them
    np.random.rand(7)
    second = make_trainer(cfg, tmp_path / "split")
    assert second.resume() == 5
    second_hist = second.fit()
    assert len(second_hist) == 5

    losses_full = [r["loss"] for r in full_hist]
    losses_split = [r["loss"] for r in first_hist + second_hist]
    assert losses_split == losses_full  # bit-exact
    assert [r["lr/merger"] for r in first_hist + second_hist] == [r["lr/merger"] for r in full_hist]
    sa, sb = full.bare_model.state_dict(), second.bare_model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert full.positions == second.positions and full.sampler.counts == second.sampler.counts
    # losses change across steps, so the comparison is not trivially satisfied
    assert len(set(losses_full)) == 10
    # the saved final weights equal the in-memory ones
    saved = load_file(str(tmp_path / "split" / "checkpoints" / "step_00000010" / "model.safetensors"))
    assert all(torch.equal(saved[k], sb[k]) for k in sb)


def test_resume_without_restoring_rng_differs(tmp_path):
    """Control for the exact-resume test: dropout makes the run depend on the torch RNG."""
    cfg = toy_config("run.max_steps=6", "toy.dropout=0.3", "run.ckpt_every=100")
    full = make_trainer(cfg, tmp_path / "a").fit()
    first = make_trainer(cfg, tmp_path / "b")
    first.fit(until=3)
    second = make_trainer(cfg, tmp_path / "b")
    second.resume()
    seed_everything(777)  # clobber the restored RNG
    rest = second.fit()
    assert [r["loss"] for r in rest] != [r["loss"] for r in full[3:]]


@pytest.mark.parametrize("task", sorted(OVERFIT_CHECKS))
def test_registered_tasks_overfit(task, tmp_path):
    """Every task with an overfit check drives its loss down (toy-regression: by more than 90%)."""
    check = OVERFIT_CHECKS[task]
    cfg = apply_overrides(get_train_config(check.preset), list(check.overrides))
    assert cfg.task == task
    trainer = make_trainer(cfg, tmp_path)
    hist = trainer.fit()
    start = np.mean([r["loss"] for r in hist[:check.window]])
    end = np.mean([r["loss"] for r in hist[-check.window:]])
    assert end < check.max_ratio * start, (start, end)


def test_init_checkpoint_is_loaded(tmp_path):
    from safetensors.torch import save_file

    cfg = toy_config("run.max_steps=1", "run.ckpt_every=100")
    src = make_trainer(cfg, tmp_path / "src")
    init = {k: v + 1.0 for k, v in src.bare_model.state_dict().items()}
    save_file(init, str(tmp_path / "init.safetensors"))
    cfg2 = apply_overrides(cfg, [f"model.init_checkpoint={tmp_path / 'init.safetensors'}"])
    trainer = run_training(cfg2, tmp_path / "run")
    # the frozen part keeps the loaded values exactly
    assert torch.equal(trainer.bare_model.image_encoder.weight, init["image_encoder.weight"])
    save_file({"x": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="does not (fit|match) the model"):
        run_training(apply_overrides(cfg, [f"model.init_checkpoint={tmp_path / 'bad.safetensors'}"]),
                     tmp_path / "run2")
    # a run folder (its latest checkpoint) and a run record work too; anything else is a clear error
    from threeam.experiments.artifacts import export_run
    from threeam.train.export import training_state_dict

    export_run(tmp_path / "run", tmp_path / "record")
    for source in (tmp_path / "run", tmp_path / "record"):
        expected, _ = training_state_dict(source)
        t = run_training(apply_overrides(cfg, [f"model.init_checkpoint={source}"]),
                         tmp_path / f"from-{source.name}")
        assert torch.equal(t.bare_model.image_encoder.weight, expected["image_encoder.weight"])
        assert t.bare_model.image_encoder.weight.dtype == torch.float32
    # a record of a run started from another names that run's step and preset, while it can still be read
    import json

    lineage = export_run(tmp_path / "from-record", tmp_path / "record2")["init_lineage"]
    raw = {"init_checkpoint": str(tmp_path / "init.safetensors"), "found": True, "step": None, "task": None,
           "preset": None}  # the record's run started from bare weights: the chain ends there
    assert lineage == [{"init_checkpoint": str(tmp_path / "record"), "found": True, "step": 1, "task": cfg.task,
                        "preset": cfg.name}, raw]
    assert json.loads((tmp_path / "record2" / "run.json").read_text())["init_lineage"] == lineage
    import shutil

    shutil.rmtree(tmp_path / "record")
    assert export_run(tmp_path / "from-record", tmp_path / "record3")["init_lineage"] == [
        {"init_checkpoint": str(tmp_path / "record"), "found": False}]
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(CheckpointError, match="model.init_checkpoint"):
            run_training(apply_overrides(cfg, [f"model.init_checkpoint={bad}"]), tmp_path / "run3")


def test_frozen_parameters_do_not_change(tmp_path):
    cfg = toy_config("run.max_steps=5", "run.ckpt_every=100")
    trainer = make_trainer(cfg, tmp_path)
    before = {k: v.clone() for k, v in trainer.bare_model.state_dict().items()}
    trainer.fit()
    after = trainer.bare_model.state_dict()
    assert torch.equal(before["image_encoder.weight"], after["image_encoder.weight"])
    assert not torch.equal(before["merger.0.weight"], after["merger.0.weight"])
    assert not torch.equal(before["sam_mask_decoder.1.weight"], after["sam_mask_decoder.1.weight"])


def test_grad_accumulation_and_mixing_counts(tmp_path):
    cfg = toy_config("run.max_steps=8", "run.grad_accum_steps=3", "run.ckpt_every=100")
    trainer = make_trainer(cfg, tmp_path)
    hist = trainer.fit()
    assert sum(trainer.positions.values()) == 24
    assert trainer.positions == trainer.sampler.counts
    assert all(sum(v for k, v in r.items() if k.startswith("samples/")) == 3 for r in hist)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\(\)` has been overridden")
def test_grad_accumulation_equals_large_batch():
    """Two accumulated micro-batches of 4 give the gradient of one batch of 8 (mean losses)."""
    cfg = toy_config("run.max_steps=1", "toy.dropout=0.0", "optim.grad_clip_norm=none")
    cfg_a = apply_overrides(cfg, ["data.sources.synthetic-dynamic.weight=0", "run.grad_accum_steps=2"])
    cfg_b = apply_overrides(cfg, ["data.sources.synthetic-dynamic.weight=0", "data.batch_size=8",
                                  "toy.dataset_size=24"])

    def grads(c, tmp):
        tr = make_trainer(c, tmp)
        tr.optimizer.step = lambda *a, **k: None  # keep the gradients, skip the update
        tr.train_step()
        return {n: p.grad.clone() for n, p in tr.bare_model.named_parameters() if p.grad is not None}

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        ga = grads(cfg_a, Path(d) / "a")
        gb = grads(cfg_b, Path(d) / "b")
    assert ga.keys() == gb.keys() and len(ga) > 0
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-5, atol=1e-7)


def test_cpu_runs_without_autocast(tmp_path):
    seen = []
    cfg = toy_config("run.max_steps=2", "run.amp=bf16", "run.ckpt_every=100")
    seed_everything(0)
    task = build_task(cfg, DistContext())

    def step(model, batch):
        seen.append(torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda"))
        out = task.step_fn(model, batch)
        seen.append(model(batch["x"]).dtype)
        return out

    Trainer(task.model, step, task.sources, cfg, tmp_path).fit()
    assert seen == [False, torch.float32] * 2


def test_checkpoint_files_pruning_and_errors(tmp_path):
    cfg = toy_config("run.max_steps=7", "run.ckpt_every=2", "run.keep_last=2")
    trainer = make_trainer(cfg, tmp_path)
    trainer.fit()
    root = tmp_path / "checkpoints"
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path)] == ["step_00000006", "step_00000007"]
    assert (root / "latest").read_text().strip() == "step_00000007"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary folders left
    ck = root / "step_00000007"
    assert sorted(p.name for p in ck.iterdir()) == [".threeam-output.json", "model.safetensors", "optim.pt",
                                                    "state.json"]
    extra = torch.load(ck / "optim.pt", weights_only=True)
    assert set(extra) == {"optimizer", "scheduler"} and extra["scheduler"]["last_epoch"] == 7
    state = json.loads((ck / "state.json").read_text())
    assert state["step"] == 7 and state["config"]["name"] == "toy-engine"
    assert sum(state["positions"].values()) == 7 and len(state["rng"]) == 1
    assert (tmp_path / "tb").is_dir() and any((tmp_path / "tb").iterdir())

    other = ToyRegressor(3, 5, 2)
    with pytest.raises(CheckpointError, match="shape mismatches|does not match"):
        checkpointing.load_checkpoint(ck, other)
    (ck / "optim.pt").unlink()
    with pytest.raises(CheckpointError, match="optim.pt is missing"):
        checkpointing.load_checkpoint(ck, trainer.bare_model, trainer.optimizer)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        make_trainer(cfg, tmp_path / "empty").resume()


def test_step_fn_contract_errors(tmp_path):
    cfg = toy_config("run.max_steps=2", "run.ckpt_every=100")
    seed_everything(0)
    task = build_task(cfg, DistContext())
    bad = Trainer(task.model, lambda m, b: {"mse": m(b["x"]).sum()}, task.sources, cfg, tmp_path / "a")
    with pytest.raises(InputError, match="'loss'"):
        bad.train_step()
    nan = Trainer(task.model, lambda m, b: {"loss": m(b["x"]).sum() * float("nan")}, task.sources, cfg,
                  tmp_path / "b")
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        nan.train_step()
    const = Trainer(task.model, lambda m, b: {"loss": m(b["x"]).sum().detach()}, task.sources, cfg, tmp_path / "d")
    with pytest.raises(InputError, match="depends on no trainable parameter"):
        const.train_step()
    with pytest.raises(InputError, match="differ from data.sources"):
        Trainer(task.model, task.step_fn, {"other": task.sources["synthetic-static"]}, cfg, tmp_path / "c")


def test_run_training_resume_continues(tmp_path):
    cfg = toy_config("run.max_steps=6", "run.ckpt_every=3")
    run_training(cfg, tmp_path, until=3)
    trainer = run_training(cfg, tmp_path, resume=True)
    assert trainer.step == 6 and len(trainer.history) == 3
    assert [p.name for p in checkpointing.list_checkpoints(tmp_path)] == ["step_00000003", "step_00000006"]
