"""Named training presets and the table of training tasks.

Presets (:data:`TRAIN_PRESETS`, :func:`get_train_config`, :func:`train_presets`; the idiom of
`threeam.presets`), each built by the function of the same name, which documents it:

* ``paper-scannetpp-ase-mose``: the 3AM paper's recipe (arXiv 2601.08831 v5, Sec. 4 and
  appendix C); field by field, what the paper states and what is our choice is in
  :func:`paper_scannetpp_ase_mose` and docs/training.md. Task ``3am``.
* ``tiny-synthetic``: 3AM with tiny models on generated scenes, one GPU in under an hour.
* ``toy-engine``: the engine's own test recipe (task ``toy-regression``).
* ``sam2-pretrain-synthetic``, ``must3r-pretrain-synthetic``, ``toy-ablation-3am``,
  ``toy-ablation-sam2``: the toy experiment's pretraining and ablation arms (docs/evidence.md).

Tasks (:data:`TRAIN_TASKS`, one explicit table): ``name -> factory(config, ctx) -> TrainTask``. A
task builds the model (whose parameter names the preset's optimizer groups refer to), the
``step_fn`` and the data sources named in ``config.data.sources``: ``toy-regression``, ``sam2``,
``3am``, ``must3r``. Extensions add entries with :func:`register_task`.
"""
from __future__ import annotations


import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from threeam.errors import InputError
from threeam.presets import preset_functions
from threeam.train.config import (DataConfig, DataSourceConfig, ModelConfig, Must3rLossConfig, OptimConfig,
                                  ParamGroupConfig, RunConfig, ToyTaskConfig, TrainConfig)
from threeam.train.distributed import DistContext
from threeam.train.losses import LossWeights
from threeam.train.trainer import IndexedSource, SourceFactory, StepFn, Trainer, seed_everything

__all__ = [
    "TRAIN_PRESETS",
    "get_train_config",
    "train_presets",
    "paper_scannetpp_ase_mose",
    "tiny_synthetic",
    "TrainTask",
    "TRAIN_TASKS",
    "register_task",
    "build_task",
    "ToyRegressor",
    "toy_regression_task",
    "OverfitCheck",
    "OVERFIT_CHECKS",
    "load_init_checkpoint",
    "merger_transformer_group",
    "run_training",
]

log = logging.getLogger("threeam.train")

# ------------------------------------------------------------------------------------ presets


def _paper_parts(lr: float, merger_lr: float | None, prefix: str = "sam2.") -> tuple[ParamGroupConfig, ...]:
    """The parts the 3AM paper trains: memory attention and mask decoder at ``lr``, the Feature Merger
    at ``merger_lr`` (None: no merger). ``prefix`` is where SAM 2 sits in the task's model
    (``sam2.`` in `ThreeAM`, empty for a bare SAM 2 or the toy model)."""
    groups = (ParamGroupConfig("memory_attention", (f"{prefix}memory_attention",), lr=lr),
              ParamGroupConfig("mask_decoder", (f"{prefix}sam_mask_decoder",), lr=lr))
    return groups if merger_lr is None else groups + (ParamGroupConfig("merger", ("merger",), lr=merger_lr),)


def merger_transformer_group(lr: float, prefix: str = "merger.") -> ParamGroupConfig:
    """A parameter group ``merger_transformer`` for the Feature Merger's transformer (its `TRANSFORMER_PARTS`:
    encoder projection, PE3D, self- and cross-attention blocks, output norm) at its own ``lr``; added beside
    a ``merger`` group it leaves that group the output convs (the longest matching prefix wins)."""
    from threeam.models.merger import TRANSFORMER_PARTS

    return ParamGroupConfig("merger_transformer", tuple(prefix + part for part in TRANSFORMER_PARTS), lr=lr)


def _paper_optim(lr: float, merger_lr: float | None, prefix: str = "sam2.", **options) -> OptimConfig:
    """AdamW on :func:`_paper_parts`, the image encoder (and MUSt3R, when SAM 2 sits under ``prefix``)
    frozen; ``options`` are the other `OptimConfig` fields."""
    frozen = (f"{prefix}image_encoder", "must3r") if prefix else ("image_encoder",)
    return OptimConfig(groups=_paper_parts(lr, merger_lr, prefix), frozen_prefixes=frozen, **options)


_TINY_MODELS = ModelConfig(sam2="sam2.1_debug_256", must3r="tiny", merger="tiny")
"""The debug SAM 2 (image 256), the tiny MUSt3R and the tiny merger."""


def paper_scannetpp_ase_mose() -> TrainConfig:
    """The 3AM paper's training recipe.

    Stated by the paper:
      * optimizer AdamW; batch size 1; 1M iterations;
      * trainable: memory attention (lr 5e-6), mask decoder (5e-6), Feature Merger (1e-5);
        everything else frozen (the SAM 2 image encoder explicitly; MUSt3R, whose features are
        precomputed, by inference);
      * SAM 2's loss unchanged: focal 20, dice 1, IoU L1 1, object score (occlusion) 1;
      * data ScanNet++ (FoV-aware sampling p = 0.8), ASE (0.8), MOSE (0.0, continuous only);
        FoV threshold tau = 0.25; mask prompts on ScanNet++/ASE, points/boxes/masks on MOSE;
      * 8 memory frames (we take 8 frames per clip, SAM 2's default);
      * SAM 2.1-Large.

    Our choices (the paper does not say): mixing weights 0.4 / 0.4 / 0.2 (ScanNet++ / ASE /
    MOSE); weight decay 0.1 without decay on biases and norms, cosine schedule to 1/10 of the peak,
    no warm-up, gradient clipping at norm 0.1 and bf16 autocast (all as SAM 2.1's fine-tuning
    configs); MUSt3R checkpoint ``MUSt3R_512``; input size 1024; checkpoint every 10k steps.
    Parameter prefixes follow the `ThreeAM` module's layout (``sam2.<official SAM 2 names>``,
    ``must3r``, ``merger``); a prefix that matches nothing is an error, so a mismatch cannot pass
    silently. Parameters no group claims (memory encoder, prompt encoder, object-pointer heads)
    stay frozen, as in the paper.
    """
    return TrainConfig(
        name="paper-scannetpp-ase-mose",
        task="3am",
        model=ModelConfig(sam2="sam2.1_hiera_l", must3r="MUSt3R_512", merger="paper"),
        optim=_paper_optim(5e-6, 1e-5, weight_decay=0.1, warmup_steps=0, grad_clip_norm=0.1),
        loss=LossWeights(mask=20.0, dice=1.0, iou=1.0, object_score=1.0),
        data=DataConfig(
            sources=(
                DataSourceConfig("scannetpp", weight=0.4, fov_prob=0.8, prompt_kinds=("mask",)),
                DataSourceConfig("ase", weight=0.4, fov_prob=0.8, prompt_kinds=("mask",)),
                DataSourceConfig("mose", weight=0.2, fov_prob=0.0, prompt_kinds=("point", "box", "mask")),
            ),
            frames_per_clip=8, batch_size=1, fov_tau=0.25, image_size=1024,
        ),
        run=RunConfig(max_steps=1_000_000, amp="bf16", log_every=50, ckpt_every=10_000, keep_last=3),
    )


def tiny_synthetic() -> TrainConfig:
    """Small and fast 3AM training on generated scenes (all our choices): the debug SAM 2
    (image 256), a tiny MUSt3R and the tiny merger, 4-frame clips from two generated wide-baseline
    scenes per source (FoV-aware p = 0.8 on the static source, continuous on the other), mask
    prompts on the static source and points/boxes/masks on the other. Sized for one GPU in well
    under an hour; it also runs on a CPU. The learning rates are far above the paper's because a
    tiny model trained from random weights needs them (with official weights, start from the
    paper's rates).
    """
    return TrainConfig(
        name="tiny-synthetic",
        task="3am",
        model=_TINY_MODELS,
        optim=_paper_optim(1e-3, 2e-3, weight_decay=0.0, warmup_steps=20, grad_clip_norm=1.0),
        data=DataConfig(
            sources=(
                DataSourceConfig("synthetic-static", weight=0.8, fov_prob=0.8, prompt_kinds=("mask",)),
                DataSourceConfig("synthetic-dynamic", weight=0.2, fov_prob=0.0, prompt_kinds=("point", "box", "mask")),
            ),
            frames_per_clip=4, batch_size=1, image_size=256, correction_clicks=2,
        ),
        run=RunConfig(max_steps=2000, amp="bf16", log_every=10, ckpt_every=500, keep_last=2),
    )


def toy_engine() -> TrainConfig:
    """The training engine's own test recipe: the ``toy-regression`` task (a small MLP whose parts
    carry SAM 2's top-level module names, not a segmentation model) with ``tiny-synthetic``'s
    sources and schedule. Used by the engine's tests (resume, DDP, CLI); it trains nothing useful."""
    base = tiny_synthetic()
    optim = replace(base.optim, groups=_paper_parts(3e-3, 6e-3, prefix=""), frozen_prefixes=("image_encoder",))
    return replace(base, name="toy-engine", task="toy-regression", optim=optim,
                   data=replace(base.data, batch_size=8), toy=ToyTaskConfig())


SAM2_TOP_LEVEL = ("image_encoder", "mask_downsample", "maskmem_tpos_enc", "memory_attention", "memory_encoder",
                  "no_mem_embed", "no_obj_embed_spatial", "no_obj_ptr", "obj_ptr_proj",
                  "obj_ptr_tpos_proj", "sam_mask_decoder", "sam_prompt_encoder")
"""Top-level parameter names of a SAM 2.1 model that pretraining trains: all but ``no_mem_pos_enc``,
which SAM 2.1 (``directly_add_no_mem_embed``) never reads, so it would get no gradient."""

TOY_SCENES = dict(scene_preset="lookalike", scene_frames=48, scene_height=96, scene_width=128)
"""Generated training scenes of the toy experiment: the distribution of the ``lookalike`` evaluation
scenes (`threeam.data.eval_scenes`), from the disjoint training seed space."""

_TOY_DATA = DataConfig(frames_per_clip=8, batch_size=1, image_size=256, scenes_per_source=32, **TOY_SCENES)
"""What the toy experiment's recipes share: 8-frame clips at 256 from 32 ``lookalike`` scenes per source."""

_TOY_RUN = RunConfig(max_steps=20_000, amp="bf16", log_every=20, ckpt_every=250, keep_last=2, eval_every=500)
"""The pretraining recipes' loop: 20k steps, held-out evaluation every 500."""


def sam2_pretrain_synthetic() -> TrainConfig:
    """Pretraining a tiny SAM 2 (the debug SAM 2.1, image 256, 1.8 M parameters) from random weights
    on generated clips, every module trainable, SAM 2's losses and prompt simulation: per clip a
    SAM 2's training prompt plan (``data.prompt_plan=sam2``: 1-2 conditioning frames, a GT mask on
    half the clips, else a noisy box or a click, 7 corrective clicks on 1-2 frames that then join the
    conditioning frames); 8-frame clips, FoV-aware (p = 0.5) or continuous, redrawn while the
    object is present in under half the frames. Our choices: AdamW lr 1e-3 (image encoder 5e-4),
    weight decay 0.01, 200 warm-up steps, cosine to 1/10, clip norm 1.0, 32 scenes of 48 frames at
    96 x 128 (the ``lookalike`` generator, training seeds). Held-out VOS metrics every 500 steps.
    """
    groups = (ParamGroupConfig("image_encoder", ("image_encoder",), lr=5e-4),
              ParamGroupConfig("rest", tuple(n for n in SAM2_TOP_LEVEL if n != "image_encoder"), lr=1e-3))
    return TrainConfig(
        name="sam2-pretrain-synthetic",
        task="sam2",
        model=_TINY_MODELS,
        optim=OptimConfig(groups=groups, weight_decay=0.01, warmup_steps=200, grad_clip_norm=1.0),
        data=replace(_TOY_DATA, correction_clicks=7, min_present_frac=0.5, prompt_plan="sam2", sources=(
            DataSourceConfig("synthetic", weight=1.0, fov_prob=0.5, prompt_kinds=("mask", "point", "box")),)),
        run=replace(_TOY_RUN, eval_items=8),
    )


def must3r_pretrain_synthetic() -> TrainConfig:
    """Pretraining the tiny MUSt3R (encoder 48 wide / 2 blocks, decoder 32 wide / 12 blocks, 0.37 M
    parameters, input long side 64) from random weights on generated posed RGB-D clips with
    MUSt3R's confidence-aware pointmap regression (`threeam.train.must3r_task`), streaming 8 frames
    per clip through its memory. What makes it register views at this scale (docs/evidence.md,
    "Training MUSt3R from scratch"): clips of frames that overlap the reference view
    (``sampler=covisible``, ``data.fov_tau=0.5``, every clip), 512 training scenes (32 are
    memorised: registration on training clips, none on held-out ones) and the
    correspondence-supervised cross-attention (``must3r_loss.attn_corr=1``, reference first).
    Our choices: AdamW lr 5e-4, weight decay 0.05, 200 warm-up steps, cosine to 1/10, clip norm 1.0.
    The recipe before 2026-12-02 (random frames p = 0.5, 32 scenes, no attention term) is
    ``data.sources.synthetic.sampler=random data.sources.synthetic.fov_prob=0.5 data.fov_tau=0.25
    data.scenes_per_source=32 must3r_loss.attn_corr=0``. Held-out pointmap error, relative depth
    error, memory use and look-alike pick rate every 500 steps.
    """
    groups = (ParamGroupConfig("encoder", ("encoder",), lr=5e-4), ParamGroupConfig("decoder", ("decoder",), lr=5e-4))
    return TrainConfig(
        name="must3r-pretrain-synthetic",
        task="must3r",
        model=_TINY_MODELS,
        optim=OptimConfig(groups=groups, weight_decay=0.05, warmup_steps=200, grad_clip_norm=1.0),
        must3r_loss=Must3rLossConfig(attn_corr=1.0),
        data=replace(_TOY_DATA, scenes_per_source=512, fov_tau=0.5, sources=(
            DataSourceConfig("synthetic", weight=1.0, fov_prob=1.0, sampler="covisible", prompt_kinds=("mask",)),)),
        run=replace(_TOY_RUN, eval_items=16),
    )


def toy_ablation_3am() -> TrainConfig:
    """One arm of the toy ablation (docs/evidence.md): 3AM fine-tuned from the pretrained tiny SAM 2
    and MUSt3R (``model.sam2_checkpoint`` / ``model.must3r_checkpoint``, set by the experiment) with
    the paper's freeze rule (memory attention, mask decoder, merger train; image encoder and MUSt3R
    frozen), mask prompts, FoV-aware sampling p = 0.8, 8-frame clips. The other arms are overrides:
    ``data.sources.synthetic.fov_prob=0`` (continuous only), ``data.sources.synthetic.sampler=random``
    (random sampling), and ``toy-ablation-sam2`` (SAM 2 alone). Our choices: lr 2e-4 (merger 5e-4),
    no weight decay, 50 warm-up steps, cosine to 1/10, clip norm 1.0.
    """
    return TrainConfig(
        name="toy-ablation-3am",
        task="3am",
        model=_TINY_MODELS,
        optim=_paper_optim(2e-4, 5e-4, weight_decay=0.0, warmup_steps=50, grad_clip_norm=1.0),
        data=replace(_TOY_DATA, correction_clicks=0, min_present_frac=0.5, sources=(
            DataSourceConfig("synthetic", weight=1.0, fov_prob=0.8, prompt_kinds=("mask",)),)),
        run=replace(_TOY_RUN, max_steps=1000, keep_last=1, eval_every=0),
    )


def toy_ablation_sam2() -> TrainConfig:
    """The "SAM 2 fine-tuned alone" arm: ``toy-ablation-3am`` with the ``sam2`` task (no MUSt3R is
    built or run), the same trainable SAM 2 parts, rates, data and steps."""
    base = toy_ablation_3am()
    optim = replace(base.optim, groups=_paper_parts(2e-4, None, prefix=""), frozen_prefixes=("image_encoder",))
    return replace(base, name="toy-ablation-sam2", task="sam2", optim=optim)


TRAIN_PRESETS: dict[str, TrainConfig] = {c.name: c for c in (
    paper_scannetpp_ase_mose(), tiny_synthetic(), toy_engine(), sam2_pretrain_synthetic(), must3r_pretrain_synthetic(),
    toy_ablation_3am(), toy_ablation_sam2())}
"""The training presets by name (each built by the function of that name)."""


# ``key.sub=value`` overrides of nested fields: `threeam.train.config.apply_overrides`
get_train_config, train_presets = preset_functions(TRAIN_PRESETS, "train", "training")




# ------------------------------------------------------------------------------------ tasks


@dataclass
class TrainTask:
    """What a task factory builds: the model, its step function, the data sources and, optionally,
    a held-out evaluation ``evaluate(model) -> {metric: value}`` run every ``run.eval_every`` steps."""

    model: nn.Module
    step_fn: StepFn
    sources: dict[str, SourceFactory]
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None


TaskFactory = Callable[[TrainConfig, DistContext], TrainTask]


def _lazy(module: str, name: str) -> TaskFactory:
    """A factory imported on first use (keeps ``import threeam.train.recipes`` light)."""
    def factory(config: TrainConfig, ctx: DistContext) -> TrainTask:
        import importlib

        return getattr(importlib.import_module(module), name)(config, ctx)
    factory.__name__ = f"{name} (from {module})"
    factory.__doc__ = f"`{module}.{name}`"
    return factory


def _toy(config: TrainConfig, ctx: DistContext) -> TrainTask:
    return toy_regression_task(config, ctx)


TRAIN_TASKS: dict[str, TaskFactory] = {
    "toy-regression": _toy,
    "sam2": _lazy("threeam.train.sam2_task", "sam2_task"),
    "3am": _lazy("threeam.train.three_am_task", "build_three_am_task"),
    "must3r": _lazy("threeam.train.must3r_task", "must3r_task"),
}
"""The training tasks, in one explicit table (task name -> ``factory(config, ctx) -> TrainTask``):

* ``toy-regression`` - the engine's own test task (:func:`toy_regression_task`);
* ``sam2`` - SAM 2 alone on video clips (`threeam.train.sam2_task`; pretraining and the
  "SAM 2 fine-tuned alone" arm; no MUSt3R is built);
* ``3am`` - SAM 2 + MUSt3R + Feature Merger (`threeam.train.three_am_task`);
* ``must3r`` - MUSt3R pointmap regression on posed RGB-D clips (`threeam.train.must3r_task`).

Extensions may add entries with :func:`register_task`."""


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Decorator adding ``factory(config, ctx) -> TrainTask`` to :data:`TRAIN_TASKS` under ``name``
    (for extensions; the built-in tasks are listed in the table itself)."""
    def deco(factory: TaskFactory) -> TaskFactory:
        if name in TRAIN_TASKS and TRAIN_TASKS[name] is not factory:
            raise InputError(f"training task {name!r} is already registered")
        TRAIN_TASKS[name] = factory
        return factory
    return deco


def build_task(config: TrainConfig, ctx: DistContext) -> TrainTask:
    """Build ``config.task``; InputError naming the tasks when it is unknown."""
    factory = TRAIN_TASKS.get(config.task)
    if factory is None:
        raise InputError(f"training task {config.task!r} is not registered; registered tasks: "
                         f"{', '.join(sorted(TRAIN_TASKS)) or 'none'}")
    return factory(config, ctx)


class ToyRegressor(nn.Module):
    """A small MLP for the ``toy-regression`` task: ``(B, in_dim) -> (B, out_dim)``.

    Its four parts carry the names of the 3AM model's parts so the presets' freeze rules apply:
    ``image_encoder`` (Linear in -> hidden, meant to stay frozen), ``merger``,
    ``memory_attention`` (residual Linear + GELU + dropout blocks) and ``sam_mask_decoder``
    (LayerNorm + Linear hidden -> out). It is not a segmentation model.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.image_encoder = nn.Linear(in_dim, hidden)
        self.merger = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        self.memory_attention = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout))
        self.sam_mask_decoder = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.image_encoder(x))
        h = h + self.merger(h)
        h = h + self.memory_attention(h)
        return self.sam_mask_decoder(h)


def _toy_step(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    pred = model(batch["x"])
    mse = F.mse_loss(pred.float(), batch["y"].float())
    return {"loss": mse, "loss_mse": mse.detach()}


def toy_regression_task(config: TrainConfig, ctx: DistContext) -> TrainTask:
    """A fixed random linear map ``y = A x`` (+ noise) learnt by :class:`ToyRegressor`.

    One regression set per configured data source (``toy.dataset_size`` samples each, inputs
    shifted per source), batched ``data.batch_size`` at a time; the loss is the MSE.
    Deterministic given ``config.seed``.
    """
    t = config.toy
    gen = np.random.Generator(np.random.PCG64(config.seed))
    a = gen.standard_normal((t.out_dim, t.in_dim)) / np.sqrt(t.in_dim)
    names = [s.name for s in config.data.sources] or ["toy"]
    sources: dict[str, SourceFactory] = {}
    for i, name in enumerate(names):
        g = np.random.Generator(np.random.PCG64([config.seed, i + 1]))
        x = g.standard_normal((t.dataset_size, t.in_dim)) + 0.5 * i
        y = x @ a.T + t.noise * g.standard_normal((t.dataset_size, t.out_dim))
        xs = torch.from_numpy(x.astype(np.float32))
        ys = torch.from_numpy(y.astype(np.float32))

        def get_item(k: int, xs: torch.Tensor = xs, ys: torch.Tensor = ys) -> dict[str, torch.Tensor]:
            return {"x": xs[k], "y": ys[k]}

        sources[name] = IndexedSource(get_item, t.dataset_size, batch_size=config.data.batch_size,
                                      seed=config.seed + 7919 * (i + 1))
    torch.manual_seed(config.seed)
    model = ToyRegressor(t.in_dim, t.hidden, t.out_dim, t.dropout)
    return TrainTask(model=model, step_fn=_toy_step, sources=sources)


# ------------------------------------------------------------------------------------ overfit checks


@dataclass(frozen=True)
class OverfitCheck:
    """A short run that must drive the loss down: evidence that a task can learn.

    ``tests/train/test_trainer.py::test_registered_tasks_overfit`` runs every entry of
    :data:`OVERFIT_CHECKS` (preset + overrides, ``max_steps`` steps) and asserts that the mean loss
    of the last ``window`` steps is below ``max_ratio`` times the mean of the first ``window``.
    """

    preset: str
    overrides: tuple[str, ...]
    max_ratio: float = 0.1
    window: int = 5


OVERFIT_CHECKS: dict[str, OverfitCheck] = {
    "toy-regression": OverfitCheck(
        preset="toy-engine",
        overrides=("task=toy-regression", "run.max_steps=300", "toy.dropout=0.0", "toy.hidden=16",
                   "toy.dataset_size=24", "data.batch_size=4", "optim.schedule=constant",
                   "optim.warmup_steps=0", "run.ckpt_every=1000", "run.log_every=50", "run.progress=false"),
    ),
    # a tiny 3AM overfits one generated clip
    "3am": OverfitCheck(
        preset="tiny-synthetic",
        overrides=("task=3am", "run.max_steps=60", "data.frames_per_clip=3", "data.batch_size=1",
                   "data.sources.synthetic-dynamic.weight=0", "data.sources.synthetic-static.fov_prob=0",
                   "data.sources.synthetic-static.prompt_kinds=mask", "data.num_clips=1",
                   "optim.schedule=constant", "optim.warmup_steps=0", "run.ckpt_every=1000", "run.log_every=50",
                   "run.progress=false"),
        max_ratio=0.1,
        window=5,
    ),
}
"""Task name -> its overfitting check (the slower ``sam2`` / ``must3r`` checks live in their own
test files)."""


# ------------------------------------------------------------------------------------ running


def load_init_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a whole-model state dict into ``model`` (all keys, matching shapes) before training.

    ``path``: a ``.safetensors`` file, a run folder (its latest checkpoint), a ``checkpoints/step_*``
    folder or a run record (`threeam.train.export`; its float16 weights are cast back to float32).
    """
    from threeam.errors import CheckpointError
    from threeam.models.state_dict_check import check_keys
    from threeam.train.export import training_state_dict

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"model.init_checkpoint {p} does not exist")
    try:
        weights, _ = training_state_dict(p)
    except CheckpointError as e:
        raise CheckpointError(f"model.init_checkpoint: {e}") from None
    check_keys(model.state_dict(), weights, f"model.init_checkpoint {p}")
    model.load_state_dict(weights, strict=True)


def run_training(config: TrainConfig, out_dir: str | os.PathLike, resume: bool = False,
                 ctx: DistContext | None = None, until: int | None = None) -> Trainer:
    """Build ``config.task``, train it into ``out_dir`` (resuming from the latest checkpoint
    when ``resume``) up to ``until`` or ``run.max_steps`` steps, and return the trainer."""
    from threeam.train.distributed import init_distributed

    ctx = ctx or init_distributed(config.run.device)
    seed_everything(config.seed)
    task = build_task(config, ctx)
    if config.model.init_checkpoint and not resume:
        load_init_checkpoint(task.model, config.model.init_checkpoint)
    trainer = Trainer(task.model, task.step_fn, task.sources, config, Path(out_dir), ctx, evaluate=task.evaluate)
    if resume:
        trainer.resume()
    trainer.fit(until)
    return trainer

