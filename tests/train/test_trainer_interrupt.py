"""SIGINT/SIGTERM during training: the step under way is finished and checkpointed, and a resumed
run continues bit-exactly (the exact-resume test, with the stop at an arbitrary step)."""
from __future__ import annotations

import os
import signal

import pytest
import torch
from typer.testing import CliRunner

from threeam.cli import app
from threeam.train import checkpointing
from threeam.train.config import apply_overrides
from threeam.train.distributed import DistContext
from threeam.train.recipes import build_task, get_train_config
from threeam.train.trainer import Trainer, TrainingInterrupted, seed_everything

BASE = ["run.progress=false", "toy.hidden=16", "toy.dataset_size=24", "data.batch_size=4", "run.max_steps=9",
        "run.grad_accum_steps=2", "toy.dropout=0.3", "optim.warmup_steps=3", "run.ckpt_every=4", "run.log_every=2"]


def _trainer(out, signal_at=None, signum=signal.SIGINT):
    cfg = apply_overrides(get_train_config("toy-engine"), BASE)
    seed_everything(cfg.seed)
    task = build_task(cfg, DistContext())
    step_fn = task.step_fn
    calls = {"n": 0}

    def interrupting(model, batch):  # the signal arrives in the middle of optimizer step `signal_at`
        calls["n"] += 1
        if signal_at is not None and calls["n"] == 2 * (signal_at - 1) + 1:
            os.kill(os.getpid(), signum)
        return step_fn(model, batch)

    return Trainer(task.model, interrupting, task.sources, cfg, out)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    t = _trainer(tmp_path_factory.mktemp("full"))
    hist = t.fit()
    return [r["loss"] for r in hist], t.bare_model.state_dict()


@pytest.mark.parametrize("step, signum", [(1, signal.SIGINT), (3, signal.SIGTERM), (6, signal.SIGINT)])
def test_an_interrupt_checkpoints_the_step_and_resume_is_exact(tmp_path, uninterrupted, step, signum):
    losses_full, weights_full = uninterrupted
    first = _trainer(tmp_path, signal_at=step, signum=signum)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(TrainingInterrupted) as info:
        first.fit()
    assert info.value.step == step and info.value.signum == signum
    assert info.value.checkpoint == checkpointing.find_latest(tmp_path)
    assert checkpointing.find_latest(tmp_path).name == f"step_{step:08d}"
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    seed_everything(4321)  # disturb the global RNGs: resume must restore them
    second = _trainer(tmp_path)
    assert second.resume() == step
    rest = second.fit()
    assert [r["loss"] for r in first.history + rest] == losses_full  # bit-exact
    sb = second.bare_model.state_dict()
    assert all(torch.equal(weights_full[k], sb[k]) for k in sb)


def test_threeam_train_interrupted_then_resumed(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = ["train", "--preset", "toy-engine", "--out", str(out), *BASE]
    real = Trainer.train_step

    def step_then_signal(self):
        rec = real(self)
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return rec

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 128 + signal.SIGTERM, res.output
    assert "SIGTERM at step 2" in res.output and "--resume" in res.output
    assert checkpointing.find_latest(out).name == "step_00000002"
    monkeypatch.setattr(Trainer, "train_step", real)
    res = CliRunner().invoke(app, ["train", "--out", str(out), "--resume", *BASE])
    assert res.exit_code == 0, res.output
    assert checkpointing.find_latest(out).name == "step_00000009"
