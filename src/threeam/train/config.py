"""Typed training configuration: :class:`TrainConfig` and its parts, ``key.sub=value`` overrides,
and a JSON round trip (used by checkpoints).

Named presets live in :mod:`threeam.train.recipes`. Every field is documented where it is
declared; values are validated in ``__post_init__`` and bad ones raise
:class:`threeam.errors.InputError` naming the field and the valid range.

Overrides (:func:`apply_overrides`) address fields by dotted path. Tuples of named entries
(parameter groups, data sources) are addressed by the entry's ``name``::

    run.max_steps=2000
    optim.groups.merger.lr=2e-5
    data.sources.mose.weight=0.5
    optim.betas=0.9,0.95          # tuples: comma separated
    model.sam2_checkpoint=none    # optional fields: none / null
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal, Sequence

from threeam.config_checks import check_ints, check_numbers
from threeam.devices import is_device_name
from threeam.errors import InputError
from threeam.train.losses import LossWeights

__all__ = [
    "ParamGroupConfig",
    "OptimConfig",
    "DataSourceConfig",
    "DataConfig",
    "ModelConfig",
    "Must3rLossConfig",
    "Sam2AttnLossConfig",
    "RunConfig",
    "ToyTaskConfig",
    "TrainConfig",
    "PROMPT_KINDS",
    "apply_overrides",
    "override_keys",
    "config_to_dict",
    "config_from_dict",
    "config_to_json",
    "config_from_json",
]

PROMPT_KINDS = ("mask", "point", "box")
ATTENTION_TARGET_MODES = ("all", "reference_first", "earliest")
"""``must3r_loss.attn_corr_targets`` values (`threeam.train.must3r_task.attention_targets` modes)."""
"""Prompt kinds a data source may simulate during training."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise InputError(msg)


def _check_names_unique(kind: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for n in names:
        _check(n not in seen, f"duplicate {kind} name {n!r}")
        seen.add(n)


@dataclass(frozen=True)
class ParamGroupConfig:
    """One trainable parameter group: every parameter whose dotted name equals a prefix or starts
    with ``prefix + "."`` (longest matching prefix wins, over frozen prefixes too)."""

    name: str
    """Group name (used in overrides, logs and the summary table)."""
    prefixes: tuple[str, ...]
    """Module-name prefixes, e.g. ``("memory_attention",)``."""
    lr: float
    """Peak learning rate of the group."""
    weight_decay: float | None = None
    """AdamW weight decay; None = ``OptimConfig.weight_decay``."""

    def __post_init__(self) -> None:
        _check(bool(self.name), "a parameter group needs a non-empty name")
        _check(len(self.prefixes) > 0 and all(self.prefixes),
               f"parameter group {self.name!r} needs at least one non-empty prefix")
        _check(math.isfinite(self.lr) and self.lr > 0, f"optim.groups.{self.name}.lr must be > 0, got {self.lr}")
        _check(self.weight_decay is None or self.weight_decay >= 0,
               f"optim.groups.{self.name}.weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with per-group learning rates, a warm-up + constant/cosine schedule and gradient
    clipping. Parameters that no group claims are frozen (``requires_grad_(False)``)."""

    groups: tuple[ParamGroupConfig, ...] = ()
    """Trainable groups. A group whose prefixes match no parameter is an error."""
    frozen_prefixes: tuple[str, ...] = ()
    """Prefixes frozen explicitly (documentation of intent; unclaimed parameters are frozen anyway).
    A frozen prefix that matches no parameter is an error too, so typos do not pass silently."""
    weight_decay: float = 0.1
    """Default AdamW weight decay (SAM 2.1 fine-tuning: 0.1)."""
    no_decay_bias_and_norm: bool = True
    """No weight decay on biases and normalisation weights (as SAM 2.1's training configs)."""
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Literal["constant", "cosine"] = "cosine"
    """Learning-rate schedule after warm-up: constant, or cosine from the peak to ``min_lr_ratio * peak``."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to the peak over this many optimizer steps."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine schedule as a fraction of the peak (SAM 2.1: 1/10)."""
    grad_clip_norm: float | None = 0.1
    """Clip the global L2 norm of the trainable gradients to this value; None = no clipping."""

    def __post_init__(self) -> None:
        _check_names_unique("parameter group", [g.name for g in self.groups])
        owner: dict[str, str] = {}
        for g in self.groups:
            for p in g.prefixes:
                _check(p not in owner, f"prefix {p!r} is claimed by groups {owner.get(p)!r} and {g.name!r}")
                owner[p] = g.name
        for p in self.frozen_prefixes:
            _check(bool(p), "optim.frozen_prefixes contains an empty prefix")
            _check(p not in owner, f"prefix {p!r} is both frozen and trainable (group {owner.get(p)!r})")
        _check(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _check(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
               f"optim.betas must be two values in [0, 1), got {self.betas}")
        _check(self.eps > 0, f"optim.eps must be > 0, got {self.eps}")
        _check(self.schedule in ("constant", "cosine"),
               f"optim.schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        _check(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(0.0 <= self.min_lr_ratio <= 1.0, f"optim.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        _check(self.grad_clip_norm is None or self.grad_clip_norm > 0,
               f"optim.grad_clip_norm must be > 0 or none, got {self.grad_clip_norm}")


@dataclass(frozen=True)
class DataSourceConfig:
    """One training data source and how clips are drawn from it."""

    name: str
    """Source name, e.g. ``scannetpp``, ``ase``, ``mose``."""
    weight: float = 1.0
    """Mixing weight: the source of each sample is drawn with probability weight / sum(weights)."""
    fov_prob: float = 0.0
    """Probability of FoV-aware sampling (else continuous sampling). 0 for sources without poses/depth."""
    prompt_kinds: tuple[str, ...] = ("mask",)
    """Prompt kinds simulated on this source (subset of ``mask``, ``point``, ``box``)."""
    root: str = ""
    """Dataset folder (empty: not configured; generated sources ignore it)."""
    cache: str = ""
    """MUSt3R feature cache of this source (`threeam precompute`); FoV-sampled clips read it, continuous
    clips run MUSt3R on the fly (the paper's split). Empty: always on the fly."""
    sampler: Literal["fov", "random", "covisible"] = "fov"
    """What the ``fov_prob`` share of clips uses: ``fov`` (FoV-aware sampling) or ``random`` (the
    reference as in FoV sampling, the other frames drawn uniformly from the scene; the paper's
    "random sampling" ablation arm) or ``covisible`` (frames whose whole view overlaps the
    reference view by more than ``data.fov_tau``: pairs with overlap as DUSt3R / MUSt3R train on;
    for the ``must3r`` task, `threeam.data.sampling.sample_covisible_clip`)."""

    def __post_init__(self) -> None:
        _check(self.sampler in ("fov", "random", "covisible"),
               f"data.sources.{self.name}.sampler must be 'fov', 'random' or 'covisible', got {self.sampler!r}")
        _check(bool(self.name), "a data source needs a non-empty name")
        _check(math.isfinite(self.weight) and self.weight >= 0,
               f"data.sources.{self.name}.weight must be >= 0, got {self.weight}")
        _check(0.0 <= self.fov_prob <= 1.0, f"data.sources.{self.name}.fov_prob must lie in [0, 1], got {self.fov_prob}")
        _check(len(self.prompt_kinds) > 0, f"data.sources.{self.name}.prompt_kinds must not be empty")
        for k in self.prompt_kinds:
            _check(k in PROMPT_KINDS, f"data.sources.{self.name}.prompt_kinds: unknown kind {k!r}; valid: {PROMPT_KINDS}")


@dataclass(frozen=True)
class DataConfig:
    """Training data: the mixture of sources and the clip shape."""

    sources: tuple[DataSourceConfig, ...] = ()
    frames_per_clip: int = 8
    """Frames per training clip (SAM 2 default and the paper's memory size: 8)."""
    batch_size: int = 1
    """Clips per optimizer micro-step on each rank (paper: 1)."""
    fov_tau: float = 0.25
    """FoV-aware sampling threshold: keep a candidate if > tau of its mask points fall in the reference frustum."""
    continuous_stride: int = 1
    """Frame step of continuous clips (1: consecutive frames)."""
    image_size: int = 1024
    """SAM 2 input resolution (square)."""
    correction_clicks: int = 7
    """Corrective clicks added one by one on the prompted frame of click/box-prompted clips, each from
    the current error region (SAM 2.1 training: 7); every step is supervised."""
    num_clips: int = 0
    """0: every step draws a new clip; N > 0: clip i is clip i mod N (a fixed set, e.g. overfitting checks)."""
    scenes_per_source: int = 2
    """Generated (``synthetic*``) sources: how many scenes each source renders."""
    scene_preset: str = "tiny"
    """Generated sources: the `threeam.data.synth` preset (``tiny``, ``small``, ``default``, ``lookalike``)."""
    scene_frames: int = 12
    """Generated sources: frames per scene."""
    scene_height: int = 96
    """Generated sources: frame height in pixels."""
    scene_width: int = 128
    """Generated sources: frame width in pixels."""
    scene_seed: int | None = None
    """Generated sources: the seed their scenes are drawn with (`threeam.data.scene_store.train_scene_seed`);
    None = the run's ``seed``. The toy ablation's arms share the pretraining scenes with ``scene_seed=0``."""
    scene_cache: str = ""
    """Folder caching rendered training scenes (`threeam.data.scene_store.cached_scene`); empty: render in memory."""
    min_present_frac: float = 0.0
    """Redraw a clip (up to 20 times) while the object is present in fewer than this share of its frames
    (object-absent frames only teach the object-score head "absent")."""
    prompt_plan: Literal["frame0", "sam2"] = "frame0"
    """Which frames of a clip are prompted. ``frame0``: one prompt (the source's ``prompt_kinds``) on
    frame 0, corrected there. ``sam2``: SAM 2's training rule (`threeam.train.vos.clip_prompt_plan`):
    1-2 conditioning frames (frame 0 and a random frame showing the object), GT masks on half of
    the clips and a box or one click on the others (only masks when ``prompt_kinds`` is just
    ``mask``), corrective clicks on 1-2 frames, which then join the conditioning frames. Read by the
    ``sam2`` and ``3am`` tasks; held-out evaluation always uses the frame-0 rule."""

    def __post_init__(self) -> None:
        _check_names_unique("data source", [s.name for s in self.sources])
        _check(not self.sources or sum(s.weight for s in self.sources) > 0,
               "data.sources: at least one source needs a weight > 0")
        _check(self.frames_per_clip >= 1, f"data.frames_per_clip must be >= 1, got {self.frames_per_clip}")
        _check(self.batch_size >= 1, f"data.batch_size must be >= 1, got {self.batch_size}")
        _check(0.0 <= self.fov_tau <= 1.0, f"data.fov_tau must lie in [0, 1], got {self.fov_tau}")
        _check(isinstance(self.continuous_stride, int) and not isinstance(self.continuous_stride, bool)
               and self.continuous_stride >= 1, f"data.continuous_stride must be an integer >= 1, got {self.continuous_stride!r}")
        _check(self.image_size >= 16, f"data.image_size must be >= 16, got {self.image_size}")
        _check(self.num_clips >= 0, f"data.num_clips must be >= 0, got {self.num_clips}")
        _check(self.correction_clicks >= 0, f"data.correction_clicks must be >= 0, got {self.correction_clicks}")
        _check(self.scenes_per_source >= 1, f"data.scenes_per_source must be >= 1, got {self.scenes_per_source}")
        _check(self.scene_frames >= 1, f"data.scene_frames must be >= 1, got {self.scene_frames}")
        _check(self.scene_height >= 16 and self.scene_width >= 16,
               f"data.scene_height and data.scene_width must be >= 16, got {self.scene_height}x{self.scene_width}")
        _check(0.0 <= self.min_present_frac <= 1.0,
               f"data.min_present_frac must lie in [0, 1], got {self.min_present_frac}")
        _check(self.prompt_plan in ("frame0", "sam2"),
               f"data.prompt_plan must be 'frame0' or 'sam2', got {self.prompt_plan!r}")


GEOMETRY_INPUTS = ("clip", "fixed_scene", "gt_points")
"""Values of `ModelConfig.geometry_input`."""


@dataclass(frozen=True)
class ModelConfig:
    """Which networks the 3AM task builds (names of presets in the model packages) and their weights."""

    sam2: str = "sam2.1_hiera_l"
    """SAM 2 preset (paper: SAM 2.1-Large)."""
    sam2_checkpoint: str | None = None
    """SAM 2 checkpoint path or hub id; None = the preset's default."""
    must3r: str = "must3r_512"
    """MUSt3R preset."""
    must3r_checkpoint: str | None = None
    must3r_res: int | None = None
    """MUSt3R's input long side in pixels (frames are cropped to a multiple of 16, aspect ratio kept), in
    training and in the 3AM model built from this config; None: 64 for ``tiny`` (as ``3am_tiny``), else the
    MUSt3R preset's training size."""
    merger: str = "paper"
    """Feature Merger preset."""
    init_checkpoint: str | None = None
    """Optional whole-training-model weights to start from (not a resume): a ``.safetensors`` file, a
    run folder (its latest checkpoint), a ``checkpoints/step_*`` folder or a run record."""
    geometry_input: Literal["clip", "fixed_scene", "gt_points"] = "clip"
    """What MUSt3R streams for each training clip of the ``3am`` task: ``clip`` (its own frames, 3AM),
    ``fixed_scene`` (the first frames of the first held-out scene, the same for every clip: the merger gets
    MUSt3R-shaped input that says nothing about the clip; a control for the merger's capacity) or
    ``gt_points`` (its own frames, with the predicted pointmap and rays replaced by the GT from the clip's
    depth and poses: an oracle of the geometry, `threeam.train.gt_geometry`; a diagnostic, not a method)."""
    gt_points_trans_noise: float = 0.0
    """With ``gt_points``: per-frame registration error of the GT reference-frame pointmap, the camera-centre
    shift's standard deviation per axis as a fraction of the frame's median depth (`gt_geometry.PoseNoise`)."""
    gt_points_rot_noise: float = 0.0
    """With ``gt_points``: the registration error's rotation, standard deviation of the angle in degrees."""

    def __post_init__(self) -> None:
        _check(self.must3r_res is None or (isinstance(self.must3r_res, int) and self.must3r_res >= 16),
               f"model.must3r_res must be None or an integer >= 16, got {self.must3r_res!r}")
        _check(self.gt_points_trans_noise >= 0 and self.gt_points_rot_noise >= 0,
               "model.gt_points_trans_noise and model.gt_points_rot_noise must be >= 0")
        _check(self.geometry_input in GEOMETRY_INPUTS,
               f"model.geometry_input must be one of {', '.join(GEOMETRY_INPUTS)}, got {self.geometry_input!r}")


@dataclass(frozen=True)
class RunConfig:
    """Loop control, precision, logging and checkpointing."""

    max_steps: int = 1000
    """Optimizer steps (the paper's "iterations")."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated per optimizer step."""
    amp: Literal["bf16", "none"] = "bf16"
    """Mixed precision: bf16 autocast, applied on CUDA only (CPU always runs float32)."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (`threeam.devices`); under torchrun ``cuda`` / ``auto``
    give every rank ``cuda:LOCAL_RANK``."""
    log_every: int = 10
    """TensorBoard scalars every this many steps."""
    ckpt_every: int = 1000
    """Checkpoint every this many steps (and always at the end)."""
    keep_last: int = 3
    """Checkpoints kept on disk (older ones are deleted); 0 keeps all."""
    find_unused_parameters: bool = False
    """DDP: allow parameters that get no gradient in a step (e.g. a merger skipped on MOSE steps)."""
    progress: bool = True
    """Show a progress bar (rank 0)."""
    eval_every: int = 0
    """Run the task's held-out evaluation (VOS IoU, pointmap error, ...) every this many steps and at
    the end, logged to TensorBoard under ``eval/`` and to ``eval.jsonl``; 0 = never."""
    eval_items: int = 8
    """Held-out clips / scenes per evaluation."""

    def __post_init__(self) -> None:
        _check(self.max_steps >= 1, f"run.max_steps must be >= 1, got {self.max_steps}")
        _check(self.grad_accum_steps >= 1, f"run.grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        _check(self.amp in ("bf16", "none"), f"run.amp must be 'bf16' or 'none', got {self.amp!r}")
        _check(is_device_name(self.device), f"run.device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        _check(self.log_every >= 1, f"run.log_every must be >= 1, got {self.log_every}")
        _check(self.ckpt_every >= 1, f"run.ckpt_every must be >= 1, got {self.ckpt_every}")
        _check(self.keep_last >= 0, f"run.keep_last must be >= 0, got {self.keep_last}")
        _check(self.eval_every >= 0, f"run.eval_every must be >= 0, got {self.eval_every}")
        _check(self.eval_items >= 1, f"run.eval_items must be >= 1, got {self.eval_items}")


@dataclass(frozen=True)
class ToyTaskConfig:
    """Sizes of the ``toy-regression`` task (a small MLP regressing a fixed random linear map)."""

    in_dim: int = 16
    hidden: int = 32
    out_dim: int = 4
    dataset_size: int = 64
    """Samples per toy source (the same samples are revisited every epoch, so the model can overfit)."""
    noise: float = 0.0
    """Standard deviation of the target noise."""
    dropout: float = 0.1
    """Dropout in the toy model (makes the run depend on the torch RNG, which resume must restore)."""

    def __post_init__(self) -> None:
        check_ints(self, dict.fromkeys(("in_dim", "hidden", "out_dim", "dataset_size"), 1), "toy.")
        check_numbers(self, {"noise": (0.0, None)}, "toy.")
        _check(0.0 <= self.dropout < 1.0, f"toy.dropout must lie in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class Must3rLossConfig:
    """Loss of the ``must3r`` task (`threeam.train.must3r_task`)."""

    conf_alpha: float = 0.2
    """Weight of the log-confidence regulariser (DUSt3R / MUSt3R: 0.2)."""
    ref_weight: float = 1.0
    """Weight of the reference-frame term (``pts_ref``: every view's points registered in the first
    view's camera) relative to the own-frame term (``pts_self``). MUSt3R weighs them alike (1.0); our
    option for a registration-bound tiny model (the look-alike gate reads ``pts_ref`` only)."""
    attn_corr: float = 0.0
    """Weight of the correspondence-supervised cross-attention term (our addition for training from
    scratch, docs/evidence.md; 0 = MUSt3R's loss only): cross-entropy between the cross-attention of
    ``attn_corr_heads`` heads of every decoder block and the GT correspondences of each query patch
    among the memory's tokens (from GT depth and poses)."""
    attn_corr_heads: int = 1
    """How many heads per decoder block the ``attn_corr`` term supervises (the first ones)."""
    attn_corr_targets: Literal["reference_first", "all", "earliest"] = "reference_first"
    """Which memory patches a query patch should attend to: ``reference_first`` (frame 0's, where the
    patch is seen in frame 0, else those of any earlier frame), ``earliest`` (those of the earliest
    frame that sees it: the fewest hops from the reference) or ``all`` (every earlier frame's alike)."""

    def __post_init__(self) -> None:
        check_numbers(self, {"conf_alpha": (0.0, None), "ref_weight": (0.0, None), "attn_corr": (0.0, None)},
                      "must3r_loss.")
        check_ints(self, {"attn_corr_heads": 1}, "must3r_loss.")
        _check(self.attn_corr_targets in ATTENTION_TARGET_MODES,
               "must3r_loss.attn_corr_targets must be 'reference_first', 'earliest' or 'all', "
               f"got {self.attn_corr_targets!r}")


@dataclass(frozen=True)
class Sam2AttnLossConfig:
    """Optional correspondence-supervised memory attention of the ``sam2`` task
    (`threeam.train.sam2_attention`; our addition for SAM 2 trained from scratch, off by default)."""

    weight: float = 0.0
    """Weight of the term (0 = SAM 2's losses only)."""
    heads: int = 1
    """How many heads per memory-attention layer it supervises (the first ones)."""
    clips: Literal["continuous", "all"] = "continuous"
    """Which clips get it: ``continuous`` (consecutive frames only: ordinary video motion) or ``all``."""

    def __post_init__(self) -> None:
        check_numbers(self, {"weight": (0.0, None)}, "sam2_attn.")
        check_ints(self, {"heads": 1}, "sam2_attn.")
        _check(self.clips in ("continuous", "all"), f"sam2_attn.clips must be 'continuous' or 'all', got {self.clips!r}")


@dataclass(frozen=True)
class TrainConfig:
    """A complete training run. Build one with :func:`threeam.train.recipes.get_train_config`."""

    name: str
    """Preset name this config was derived from."""
    task: str
    """Key of :data:`threeam.train.recipes.TRAIN_TASKS`: builds the model, step function and data."""
    seed: int = 0
    """Seeds python, numpy and torch (plus the rank) and the data-mixing sampler."""
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    """SAM 2 loss weights: focal (``mask``), dice, IoU and object score."""
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    toy: ToyTaskConfig = field(default_factory=ToyTaskConfig)
    """Only used by the ``toy-regression`` task."""
    must3r_loss: Must3rLossConfig = field(default_factory=Must3rLossConfig)
    """Only used by the ``must3r`` task."""
    sam2_attn: Sam2AttnLossConfig = field(default_factory=Sam2AttnLossConfig)
    """Only used by the ``sam2`` task."""

    def __post_init__(self) -> None:
        _check(bool(self.task), "task must not be empty")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")


# --------------------------------------------------------------------------------------------
# type-driven parsing


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_named_tuple_of_dataclasses(tp: Any) -> type | None:
    """For ``tuple[X, ...]`` with X a dataclass that has a ``name`` field, return X."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and is_dataclass(args[0]) and \
                "name" in {f.name for f in fields(args[0])}:
            return args[0]
    return None


def _parse_scalar(tp: Any, text: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null", ""):
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _parse_scalar(rest[0], text, key)
        raise InputError(f"{key}: unsupported type {tp}")
    if origin is Literal:
        if text not in [str(a) for a in args]:
            raise InputError(f"{key}={text!r}: expected one of {', '.join(map(str, args))}")
        return next(a for a in args if str(a) == text)
    if origin is tuple:
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_scalar(args[0], p, key) for p in parts)
        if len(parts) != len(args):
            raise InputError(f"{key}={text!r}: expected {len(args)} comma-separated values")
        return tuple(_parse_scalar(a, p, key) for a, p in zip(args, parts))
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise InputError(f"{key}={text!r}: expected true or false")
    if tp is int:
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise InputError(f"{key}={text!r}: expected an integer") from None
        if isinstance(value, float):
            if not value.is_integer():
                raise InputError(f"{key}={text!r}: expected an integer")
            value = int(value)
        return value
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise InputError(f"{key}={text!r}: expected a number") from None
    if tp is str:
        return text
    raise InputError(f"{key}: unsupported field type {tp}")


def override_keys(cfg: Any, prefix: str = "") -> list[str]:
    """All dotted keys :func:`apply_overrides` accepts for ``cfg`` (leaf fields only)."""
    out: list[str] = []
    hints = _hints(type(cfg))
    for f in fields(cfg):
        tp = hints[f.name]
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            out += override_keys(value, key + ".")
        elif _is_named_tuple_of_dataclasses(tp) is not None:
            for item in value:
                out += [k for k in override_keys(item, f"{key}.{item.name}.") if not k.endswith(".name")]
        else:
            out.append(key)
    return out


def _set_path(cfg: Any, path: list[str], text: str, full_key: str) -> Any:
    hints = _hints(type(cfg))
    names = {f.name for f in fields(cfg)}
    head = path[0]
    if head not in names:
        raise KeyError(full_key)
    tp = hints[head]
    value = getattr(cfg, head)
    if len(path) == 1:
        if is_dataclass(value) or _is_named_tuple_of_dataclasses(tp) is not None:
            raise KeyError(full_key)
        new = _parse_scalar(tp, text, full_key)
    elif is_dataclass(value):
        new = _set_path(value, path[1:], text, full_key)
    elif _is_named_tuple_of_dataclasses(tp) is not None:
        item_name = path[1]
        items = list(value)
        idx = next((i for i, it in enumerate(items) if it.name == item_name), None)
        if idx is None or len(path) < 3 or path[2] == "name":
            raise KeyError(full_key)
        items[idx] = _set_path(items[idx], path[2:], text, full_key)
        new = tuple(items)
    else:
        raise KeyError(full_key)
    return replace(cfg, **{head: new})


def apply_overrides(cfg: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """Return ``cfg`` with each ``"key.sub=value"`` applied (left to right), parsed against the field's type.

    Raises InputError for a malformed override, an unknown key (the message lists the valid keys)
    or a value of the wrong type or range.
    """
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r} is not of the form key.sub=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise InputError(f"override {item!r} has an empty key")
        try:
            cfg = _set_path(cfg, key.split("."), text.strip(), key)
        except KeyError:
            valid = override_keys(cfg)
            raise InputError(f"unknown config key {key!r}; valid keys:\n  " + "\n  ".join(valid)) from None
    return cfg


# --------------------------------------------------------------------------------------------
# JSON round trip


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _from_plain(tp: Any, value: Any, key: str) -> Any:
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"config {key or 'root'}: expected an object, got {type(value).__name__}")
        hints = _hints(tp)
        known = {f.name for f in fields(tp)}
        unknown = set(value) - known
        if unknown:
            raise InputError(f"config {key or 'root'}: unknown keys {sorted(unknown)}")
        return tp(**{k: _from_plain(hints[k], v, f"{key}.{k}" if key else k) for k, v in value.items()})
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return _from_plain(rest[0], value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config {key}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v, key) for v in value)
        return tuple(_from_plain(a, v, key) for a, v in zip(args, value))
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict` (validates every field)."""
    return _from_plain(TrainConfig, data, "")


def config_to_json(cfg: TrainConfig) -> str:
    return json.dumps(config_to_dict(cfg), indent=2, sort_keys=True)


def config_from_json(text: str) -> TrainConfig:
    return config_from_dict(json.loads(text))
