"""Training checkpoints used directly: `load_for_eval` (sam2 / 3am / must3r), `load_part_weights`, and
the evaluation runner's 3AM factory reading a 3am training run without conversion."""
from __future__ import annotations

import pytest
import torch

from threeam.errors import CheckpointError
from threeam.train.config import apply_overrides
from threeam.train.export import is_training_checkpoint, load_for_eval, load_part_weights
from threeam.train.recipes import get_train_config, run_training

SMALL = ["data.scenes_per_source=1", "data.scene_frames=6", "data.scene_height=48", "data.scene_width=64",
         "data.frames_per_clip=2", "run.progress=false", "optim.warmup_steps=0", "run.max_steps=1",
         "data.correction_clicks=0", "run.eval_every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for preset in ("toy-ablation-sam2", "toy-ablation-3am", "must3r-pretrain-synthetic"):
        trainer = run_training(apply_overrides(get_train_config(preset), SMALL), root / preset)
        out[preset] = (root / preset, trainer.bare_model.state_dict())
    return out


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_load_for_eval_rebuilds_each_task_from_its_checkpoint(runs):
    from threeam.models.must3r.model import Must3r
    from threeam.models.sam2.sam2_base import SAM2Base
    from threeam.models.three_am import ThreeAM

    for preset, cls in (("toy-ablation-sam2", SAM2Base), ("toy-ablation-3am", ThreeAM),
                        ("must3r-pretrain-synthetic", Must3r)):
        run_dir, weights = runs[preset]
        assert is_training_checkpoint(run_dir)
        model = load_for_eval(run_dir)
        assert isinstance(model, cls) and not model.training
        assert _same(model.state_dict(), weights)
        step = run_dir / "checkpoints" / "step_00000001"
        assert _same(load_for_eval(step).state_dict(), weights)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_for_eval(runs["toy-ablation-3am"][0] / "tb")


def test_part_weights_move_between_tasks(runs):
    from threeam.train.sam2_task import build_sam2_for_training

    cfg = get_train_config("toy-ablation-sam2")
    sam2 = build_sam2_for_training(cfg)
    run_dir, weights = runs["toy-ablation-3am"]
    load_part_weights(sam2, run_dir, part="sam2")  # the SAM 2 part of a 3AM run
    assert _same(sam2.state_dict(), {k[5:]: v for k, v in weights.items() if k.startswith("sam2.")})
    with pytest.raises(CheckpointError, match="does not (fit|match)"):
        load_part_weights(sam2, runs["must3r-pretrain-synthetic"][0], part="sam2")


def test_eval_3am_factory_reads_a_training_run(runs):
    from threeam.eval import EvalContext
    from threeam.predictor.build import build_eval_predictor

    run_dir, weights = runs["toy-ablation-3am"]
    ctx = EvalContext(model_preset="sam2.1_hiera_t", extra={"3am_checkpoint": str(run_dir)})
    predictor = build_eval_predictor(ctx, "3am")
    assert _same(predictor.three_am.state_dict(), weights)
    ctx = EvalContext(model_preset="sam2.1_hiera_t", extra={"3am_checkpoint": str(runs["toy-ablation-sam2"][0])})
    with pytest.raises(CheckpointError, match="checkpoint of the 'sam2' training task; a '3am' checkpoint"):
        build_eval_predictor(ctx, "3am")


def test_eval_sam2_method_reads_a_sam2_training_run_directly(runs):
    from threeam.eval.methods import EvalContext

    run_dir, weights = runs["toy-ablation-sam2"]
    model = EvalContext(model_preset="unused", checkpoint=str(run_dir)).sam2_model()
    assert _same(model.state_dict(), weights)
    with pytest.raises(CheckpointError, match="'sam2'"):
        EvalContext(checkpoint=str(runs["toy-ablation-3am"][0])).sam2_model()


def test_a_run_record_is_a_checkpoint_in_float32(runs, tmp_path):
    """A committed run record (float16 weights + run.json) loads wherever a checkpoint does."""
    from threeam.experiments.artifacts import export_run
    from threeam.train.export import resolve_checkpoint
    from threeam.train.must3r_task import build_must3r_for_training

    for preset in ("toy-ablation-3am", "must3r-pretrain-synthetic"):
        run_dir, weights = runs[preset]
        record = tmp_path / preset
        export_run(run_dir, record)
        path, state = resolve_checkpoint(record)
        assert path.name == "model.fp16.safetensors" and state["step"] == 1
        assert state["config"]["task"] == get_train_config(preset).task
        assert is_training_checkpoint(record)
        loaded = load_for_eval(record).state_dict()
        assert all(loaded[k].dtype == weights[k].dtype for k in weights)
        assert _same(loaded, {k: (v.half().to(v.dtype) if v.is_floating_point() else v) for k, v in weights.items()})
    must3r = build_must3r_for_training(get_train_config("must3r-pretrain-synthetic"))
    load_part_weights(must3r, tmp_path / "toy-ablation-3am", part="must3r")  # the MUSt3R part of a 3AM record
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.fp16.safetensors").write_bytes(b"")
    (tmp_path / "broken" / "run.json").write_text("{}")
    with pytest.raises(CheckpointError, match="run record"):
        load_for_eval(tmp_path / "broken")


def test_average_checkpoints_is_the_mean_of_the_newest_k(tmp_path):
    """Weight averaging over one run's checkpoints (the toy MUSt3R's plateau): the mean of exactly the newest
    ``last`` checkpoints, recorded in a run record that loads like any other; clear errors otherwise."""
    from safetensors.torch import load_file

    from threeam.experiments.artifacts import export_run
    from threeam.train import checkpointing
    from threeam.train.export import average_checkpoints

    cfg = apply_overrides(get_train_config("must3r-pretrain-synthetic"),
                          SMALL + ["run.max_steps=3", "run.ckpt_every=1", "run.keep_last=0"])
    run_training(cfg, tmp_path / "run")
    ckpts = checkpointing.list_checkpoints(tmp_path / "run")
    assert [c.name for c in ckpts] == ["step_00000001", "step_00000002", "step_00000003"]
    w2, w3 = (load_file(str(c / checkpointing.MODEL_FILE)) for c in ckpts[1:])
    weights, state, steps = average_checkpoints(tmp_path / "run", 2)
    assert steps == [2, 3] and state["step"] == 3
    moved = [k for k in w2 if w2[k].is_floating_point() and not torch.equal(w2[k], w3[k])]
    assert moved, "the run's weights did not change between steps 2 and 3: nothing is tested"
    for k in w2:
        assert weights[k].dtype == w3[k].dtype
        if w2[k].is_floating_point():
            torch.testing.assert_close(weights[k], (w2[k].double() + w3[k].double()).div(2).to(w3[k].dtype))
        else:
            assert torch.equal(weights[k], w3[k])
    doc = export_run(tmp_path / "run", tmp_path / "record", average_last=2)
    assert doc["averaged_steps"] == [2, 3] and doc["step"] == 3
    loaded = load_for_eval(tmp_path / "record").state_dict()
    assert _same(loaded, {k: (v.half().to(v.dtype) if v.is_floating_point() else v) for k, v in weights.items()})
    with pytest.raises(CheckpointError, match="3 complete checkpoint"):
        average_checkpoints(tmp_path / "run", 4)
    with pytest.raises(CheckpointError, match=">= 1"):
        average_checkpoints(tmp_path / "run", 0)
