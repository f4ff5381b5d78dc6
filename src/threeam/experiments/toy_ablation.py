"""The toy ablation: does the geometry keep the object across viewpoint changes?

The 3AM paper's Table 6 at a scale two CPU cores can train, on generated scenes with look-alike
objects (`threeam.data.eval_scenes`). One command runs every stage and resumes where it stopped::

    threeam experiment toy-ablation --out runs/toy-ablation            # or
    python -m threeam.experiments.toy_ablation --out runs/toy-ablation

Stages (each skipped when its result exists, training stages resumed from their last checkpoint):

1. ``scenes``: render the training scenes (training seed space) and the held-out ``lookalike``
   evaluation scenes (evaluation seeds) into ``OUT/scenes`` (a cache).
2. ``pretrain-must3r``: the MUSt3R curriculum (`MUST3R_PHASES`, runs of ``must3r-pretrain-synthetic``, each
   from the previous one's weights) -> ``OUT/pretrain-must3r/<k>-<phase>``; the last phase is the pretrained
   MUSt3R (or, for a phase that averages its last checkpoints, ``<phase>/average``). ``--pretrain single``: one run
   of the preset; ``--pretrain wide`` / ``wider``: `TINY_WIDE_PHASES` / `TINY_WIDER_PHASES` (the wider tiny MUSt3Rs;
   the 3AM arms then build that MUSt3R, as they do for any pretrained MUSt3R's ``model.must3r``).
3. ``pretrain-sam2``: the same with `SAM2_PHASES` and ``sam2-pretrain-synthetic`` -> ``OUT/pretrain-sam2/...``.
4. ``gates``: the pretrained MUSt3R's look-alike pick rate on the evaluation scenes (gate >= 0.9;
   GT points as the control), and the pretrained SAM 2 against the trivial "prompt frame only"
   predictor (Tracking Recall and false-positive rate) -> ``OUT/gates.json``.
5. ``arms``: every arm fine-tuned from the same pretrained SAM 2 (and MUSt3R) for the same steps,
   ``seeds`` seeds each -> ``OUT/arms/<arm>-s<seed>``:
   ``sam2-ft`` (SAM 2 alone, no MUSt3R), ``3am-fov`` (FoV-aware p = 0.8), ``3am-continuous``
   (p = 0), ``3am-random`` (random sampling p = 0.8), and our control ``sam2-continuous`` (SAM 2
   alone, p = 0).
6. ``geometry``: the selection check of `threeam.experiments.geometry_check` on every 3AM arm run,
   on the training split's two held-out scenes (never evaluation scenes): does its merger read the
   geometry (``geometry_dependence >= geometry_threshold``)? -> ``OUT/geometry/<arm>-s<seed>.json``.
7. ``eval``: the paper's protocol (`threeam.eval.protocol`) on every evaluation track for
   ``sam2-pretrained``, ``prompt-only`` and every trained arm and seed -> ``OUT/eval/<method>.json``.
8. ``table``: mean and standard error over seeds per metric (IoU, Tracking Recall, Accuracy,
   false-positive rate; Whole Set and Selected Subset), paired 95% confidence intervals of each arm
   against ``sam2-pretrained`` over tracks, ``OUT/table.md``, ``OUT/table.json``, ``OUT/ablation.svg``.
   Where the ``geometry`` stage ran, each 3AM arm also gets a row ``<arm> (reads geometry)`` over only
   the seeds that pass the check (and the seeds are listed).

``--sam2-weights`` / ``--must3r-weights`` (a run, checkpoint or run-record folder) replace the
pretrain stages with given weights; ``--arms`` runs a subset, so two processes with disjoint arms can
share one ``--out`` on two cores.

Sizes are :class:`ToyAblationConfig` presets (``full``: the documented run; ``smoke``: minutes, for
tests). Nothing in the evaluation depends on the outcome: the tracks, thresholds and metrics are the
benchmark's defaults.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from threeam.errors import InputError

__all__ = ["ToyAblationConfig", "PretrainPhase", "MUST3R_PHASES", "TINY_WIDE_PHASES", "TINY_WIDER_PHASES", "SAM2_PHASES", "ARMS", "STAGES", "run_toy_ablation", "main", "paired_ci", "mean_se"]

log = logging.getLogger("threeam.experiments")

STAGES = ("scenes", "pretrain-must3r", "pretrain-sam2", "gates", "arms", "geometry", "eval", "table")

ARMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sam2-ft": ("toy-ablation-sam2", ()),
    "3am-fov": ("toy-ablation-3am", ()),
    "3am-continuous": ("toy-ablation-3am", ("data.sources.synthetic.fov_prob=0",)),
    "3am-random": ("toy-ablation-3am", ("data.sources.synthetic.sampler=random",)),
    "sam2-continuous": ("toy-ablation-sam2", ("data.sources.synthetic.fov_prob=0",)),
    "3am-continuous-fixed-geometry": ("toy-ablation-3am", ("data.sources.synthetic.fov_prob=0",
                                                           "model.geometry_input=fixed_scene")),
    "3am-continuous-gt-points": ("toy-ablation-3am", ("data.sources.synthetic.fov_prob=0",
                                                      "model.geometry_input=gt_points")),
}
"""Arm name -> (training preset, overrides). Every arm starts from the pretrained tiny SAM 2.
``sam2-continuous`` is our control (not in the paper): SAM 2 alone with ``3am-continuous``'s
sampler, which separates the sampler's effect from the merger's. ``3am-continuous-fixed-geometry`` is
our capacity control: ``3am-continuous`` with MUSt3R fed the same held-out scene for every training
clip (``model.geometry_input=fixed_scene``), so the merger trains without any information about the clip.
``3am-continuous-gt-points`` is our geometry oracle: ``3am-continuous`` with MUSt3R's pointmap and rays
replaced by the GT from the scenes' depth and poses, in training and in evaluation
(`threeam.train.gt_geometry`); it bounds what a better MUSt3R could give this merger and SAM 2."""

DIAGNOSTIC_ARMS = ("3am-continuous-fixed-geometry", "3am-continuous-gt-points")
"""Arms not run by default (``--arms`` adds them)."""


def uses_gt_points(arm: str) -> bool:
    """Whether ``arm`` trains and evaluates with the GT pointmap (`threeam.train.gt_geometry`)."""
    return "model.geometry_input=gt_points" in ARMS[arm][1]


@dataclass(frozen=True)
class PretrainPhase:
    """One run of a pretraining curriculum: ``steps`` optimizer steps of the part's preset with ``overrides``,
    starting from the previous phase's final weights (``model.init_checkpoint``; fresh optimizer and schedule)."""

    name: str
    steps: int
    overrides: tuple[str, ...] = ()
    schedule_steps: int | None = None
    """Length of the learning-rate schedule when the run stops before its end (``steps`` < ``schedule_steps``:
    how some records were made, a run stopped mid-schedule); None: the schedule ends at ``steps``."""
    average_last: int = 0
    """> 0: the phase's weights are the uniform average of its newest ``average_last`` checkpoints, one every
    ``average_every`` steps (`threeam.train.export.average_checkpoints`, written as a run record in
    ``<phase folder>/average``); 0: its latest checkpoint."""
    average_every: int = 100

    def __post_init__(self) -> None:
        if self.schedule_steps is not None and self.schedule_steps < self.steps:
            raise InputError(f"phase {self.name}: schedule_steps ({self.schedule_steps}) < steps ({self.steps})")
        if self.average_last < 0 or self.average_every < 1:
            raise InputError(f"phase {self.name}: average_last must be >= 0 and average_every >= 1")
        if self.average_last and self.average_last * self.average_every > self.steps:
            raise InputError(f"phase {self.name}: averaging {self.average_last} checkpoints every "
                             f"{self.average_every} steps needs >= {self.average_last * self.average_every} steps")


_CHAIN = ("data.sources.synthetic.fov_prob=0.5", "optim.groups.encoder.lr=1e-4", "optim.groups.decoder.lr=1e-4",
          "optim.warmup_steps=50")

MUST3R_PHASES: tuple[PretrainPhase, ...] = (
    PretrainPhase("all-targets", 2000, ("must3r_loss.attn_corr_targets=all",)),
    PretrainPhase("reference-first", 1800, ("optim.warmup_steps=50",)),
    PretrainPhase("chain8", 1500, _CHAIN + ("data.frames_per_clip=8",)),
    PretrainPhase("chain12", 1500, _CHAIN + ("data.frames_per_clip=12",)),
    PretrainPhase("chain16", 1200, _CHAIN + ("data.frames_per_clip=16",)),
    PretrainPhase("chain12s2", 1200, _CHAIN + ("data.frames_per_clip=12", "data.continuous_stride=2")),
    PretrainPhase("chain16s2", 1000, _CHAIN + ("data.frames_per_clip=16", "data.continuous_stride=2")),
    PretrainPhase("chain24s2", 1000, _CHAIN + ("data.frames_per_clip=24", "data.continuous_stride=2")),
)
"""The MUSt3R curriculum of the committed records (docs/evidence.md, "Training MUSt3R from scratch"): covisible
clips with the attention term on 512 scenes, first with every earlier frame as attention target, then reference
first, then half the clips ever longer continuous streams (8 ... 24 frames, every frame then every second
frame). The records' runs were stopped mid-schedule and one continued from an intermediate checkpoint; the
phases keep their order, recipes and step counts, each with a complete schedule."""

_C24 = ("data.frames_per_clip=24", "data.continuous_stride=2")
_WIDE = ("model.must3r=tiny-wide",)

TINY_WIDE_PHASES: tuple[PretrainPhase, ...] = tuple(
    replace(ph, steps=600, overrides=ph.overrides + _WIDE) for ph in MUST3R_PHASES) + (
    PretrainPhase("chain24s2-more", 1500, _CHAIN + _C24 + _WIDE),
    PretrainPhase("chain24s2-long", 2000, _CHAIN + _C24 + _WIDE),
    PretrainPhase("chain24s2-longer", 4000, _CHAIN + _C24 + _WIDE),
)
"""``--pretrain wide``: the curriculum of the wider tiny MUSt3R (``model.must3r=tiny-wide``; docs/evidence.md, "A
wider tiny MUSt3R"): `MUST3R_PHASES` with every phase cut to 600 steps, then three more runs of the chain24s2
recipe (1500, 2000 and 4000 steps, each a fresh schedule), as the records ``pretrain-must3r-tiny-wide-c1500-step1500``,
``...-c2000b-step2000`` and ``...-c4000c-step4000`` were made (about 3 h on one core)."""

_WIDER = ("model.must3r=tiny-wider",)
_STREAM = _C24 + ("data.sources.synthetic.fov_prob=0", "optim.groups.encoder.lr=3e-5", "optim.groups.decoder.lr=3e-5",
                  "optim.warmup_steps=20", "optim.schedule=constant")

TINY_WIDER_PHASES: tuple[PretrainPhase, ...] = tuple(
    replace(ph, steps=600, overrides=ph.overrides + _WIDER) for ph in MUST3R_PHASES) + (
    PretrainPhase("chain24s2-more", 1500, _CHAIN + _C24 + _WIDER),
    PretrainPhase("chain24s2-long", 1000, _CHAIN + _C24 + _WIDER, schedule_steps=2000),
    PretrainPhase("stream-average", 4500, _STREAM + _WIDER, average_last=10, average_every=100),
)
"""``--pretrain wider``: the lineage of the first MUSt3R to pass the look-alike gate on its 20 scenes (``tiny-wider``:
decoder 128 wide; docs/evidence.md, "The MUSt3R gate on 20 scenes and on 40 fresh ones"): `MUST3R_PHASES` cut to
600 steps each, 1500 chain24s2 steps, 1000 steps of a 2000-step chain24s2 schedule (the record
``pretrain-must3r-tiny-wider-c2000-step1000`` was stopped there), then 4500 steps at a constant 3e-5 on continuous
24-frame streams only (the gate's own stream) whose last 10 checkpoints (every 100 steps) are averaged: the record
``pretrain-must3r-tiny-wider-stream-avg4500`` (90.8% on the gate's 20 scenes, 87.2% on the 40 ``lookalike-confirm``
scenes). About 3.3 h on one core; not run end to end as a stage."""

_SAM2_512 = ("data.scenes_per_source=512", "sam2_attn.weight=1", "optim.warmup_steps=50")

SAM2_PHASES: tuple[PretrainPhase, ...] = (
    PretrainPhase("prompt-plan", 1500, ()),
    PretrainPhase("continue", 1400, ("optim.warmup_steps=50",)),
    PretrainPhase("attention", 4200, _SAM2_512),
    PretrainPhase("continuous-clips", 500, _SAM2_512 + ("data.sources.synthetic.fov_prob=0",
                                                        "optim.groups.rest.lr=2e-4",
                                                        "optim.groups.image_encoder.lr=1e-4")),
)
"""The SAM 2 curriculum of the committed records (docs/evidence.md): SAM 2's prompt plan, a continuation, the
memory-attention term on 512 scenes, then continuous clips only (the run that met the SAM 2 gate)."""

SINGLE_PHASE = (PretrainPhase("base", 3000),)
"""``--pretrain single``: one run of the part's preset (the experiment's first design)."""


@dataclass(frozen=True)
class ToyAblationConfig:
    """Sizes of one toy-ablation run."""

    must3r_phases: tuple[PretrainPhase, ...] = MUST3R_PHASES
    """The ``pretrain-must3r`` stage's curriculum (``OUT/pretrain-must3r/<k>-<phase>``, the last one is used)."""
    sam2_phases: tuple[PretrainPhase, ...] = SAM2_PHASES
    """The same for ``pretrain-sam2``."""
    pretrain_must3r_steps: int | None = None
    """Steps of every MUSt3R phase (None: each phase's own)."""
    pretrain_sam2_steps: int | None = None
    """Steps of every SAM 2 phase (None: each phase's own)."""
    arm_steps: int = 300
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = tuple(a for a in ARMS if a not in DIAGNOSTIC_ARMS)
    """Default: every arm but the capacity control and the geometry oracle (``--arms`` adds them)."""
    eval_set: str = "lookalike"
    eval_scenes: int | None = None
    """None: the set's scene count."""
    confirm_set: str | None = "lookalike-confirm"
    """Scene set the ``gates`` stage also measures the MUSt3R pick rate on (None: none): scenes never used to
    choose a recipe, since the evaluation set's 20 have chosen between many (docs/evidence.md). The gate itself
    stays on ``eval_set``; both numbers are in ``gates.json``."""
    train_overrides: tuple[str, ...] = ()
    """Extra overrides for every training stage (e.g. smaller scenes in tests)."""
    pick_gate: float = 0.9
    """Gate: the pretrained MUSt3R picks the right look-alike at least this often."""
    tr_margin: float = 0.10
    """Gate: the pretrained SAM 2's Whole-Set Tracking Recall exceeds prompt-only's by this much ..."""
    max_fpr: float = 0.5
    """... with a false-positive rate below this."""
    sam2_weights: str | None = None
    """Pretrained SAM 2 to use instead of the ``pretrain-sam2`` stage's run: a run, checkpoint or run-record
    folder of the ``sam2`` task (e.g. ``experiments/toy-ablation/pretrain-sam2-attn-step4194``); the
    stage is then skipped."""
    must3r_weights: str | None = None
    """The same for MUSt3R (a ``must3r`` run, checkpoint or record); ``pretrain-must3r`` is then skipped."""
    merger_lr: float | None = None
    """Feature Merger learning rate of the 3AM arms (None: the ``toy-ablation-3am`` recipe's 5e-4). The
    merger starts as the identity (zero last conv), so at few steps its rate decides how far it moves."""
    merger_transformer_lr: float | None = None
    """Learning rate of the merger's transformer (encoder projection, PE3D, attention blocks, output norm) in the
    3AM arms, its output convs keeping ``merger_lr`` (None: one rate for the whole merger). Our lever against
    mergers whose transformer output becomes the same in every frame (docs/evidence.md, session 30)."""
    geometry_threshold: float = 0.1
    """The ``geometry`` stage's rule: a 3AM run's merger reads the geometry when its geometry dependence on
    the held-out training scenes is at least this (`threeam.experiments.geometry_check`)."""
    merger: str | None = None
    """Feature Merger preset of the 3AM arms (None: the recipe's ``tiny``); ``tiny_pe3d_fan_in`` starts PE3D at
    unit scale; ``tiny_geometry_fuse`` makes the merger's offset a function of MUSt3R's output alone;
    ``tiny_pe3d_fan_in_centred`` removes the offset's per-channel constant (`FeatureMergerConfig.centre_offset`)."""

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise InputError(f"unknown arm(s) {unknown}; valid: {', '.join(ARMS)}")
        if not self.seeds:
            raise InputError("at least one seed is needed")
        for part, phases in (("must3r", self.must3r_phases), ("sam2", self.sam2_phases)):
            if not phases:
                raise InputError(f"the {part} pretraining needs at least one phase")
            names = [ph.name for ph in phases]
            if len(set(names)) != len(names) or any(ph.steps < 1 for ph in phases):
                raise InputError(f"{part} phases need distinct names and >= 1 step each, got {phases}")
        for name in ("merger_lr", "merger_transformer_lr"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InputError(f"{name} must be a positive number, got {value}")
        if not (math.isfinite(self.geometry_threshold) and self.geometry_threshold >= 0):
            raise InputError(f"geometry_threshold must be a number >= 0, got {self.geometry_threshold}")
        from threeam.data.eval_scenes import EVAL_SCENE_SETS

        for what, name in (("--eval-set / eval_set", self.eval_set), ("confirm_set", self.confirm_set)):
            if name is not None and name not in EVAL_SCENE_SETS:
                raise InputError(f"unknown {what} {name!r}; valid: {', '.join(EVAL_SCENE_SETS)}")
        if self.merger is not None:
            from threeam.models.merger import merger_presets

            if self.merger not in merger_presets():
                raise InputError(f"unknown merger preset {self.merger!r}; valid: {', '.join(merger_presets())}")


SIZES: dict[str, ToyAblationConfig] = {
    "full": ToyAblationConfig(),
    "smoke": ToyAblationConfig(
        must3r_phases=(PretrainPhase("base", 2),), sam2_phases=(PretrainPhase("base", 2),),
        arm_steps=2, seeds=(0, 1), eval_set="lookalike-tiny", confirm_set="lookalike-tiny",
        train_overrides=("data.scenes_per_source=1", "data.scene_frames=10", "data.frames_per_clip=3",
                         "data.scene_height=48", "data.scene_width=64",
                         "run.eval_every=0", "data.correction_clicks=1"),
    ),
}


# ------------------------------------------------------------------------------------ helpers

def _json_safe(x: Any) -> Any:
    """NaN / inf -> None (JSON has no NaN), numpy scalars -> Python, recursively."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _write_json(path: Path, doc: Any) -> None:
    from threeam.io.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(_json_safe(doc), indent=1) + "\n")


def _scene_cache(out: Path) -> str:
    return str(out / "scenes")


def _train(out: Path, run_dir: Path, preset: str, overrides: Sequence[str], steps: int,
           schedule_steps: int | None = None, extra_groups: Sequence = ()) -> dict:
    """Train (or resume) one run to ``steps`` (of a schedule ``schedule_steps`` long, default ``steps``);
    ``extra_groups``: parameter groups added to the preset's (after the overrides). Returns
    ``{"steps", "seconds"}`` of this call."""
    from threeam.train import checkpointing
    from threeam.train.config import apply_overrides, config_from_dict
    from threeam.train.recipes import get_train_config, run_training

    ov = list(overrides) + [f"run.max_steps={schedule_steps or steps}", f"data.scene_cache={_scene_cache(out)}",
                            "run.progress=false"]
    cfg = apply_overrides(get_train_config(preset), ov)
    if extra_groups:
        cfg = replace(cfg, optim=replace(cfg.optim, groups=tuple(cfg.optim.groups) + tuple(extra_groups)))
    latest = checkpointing.find_latest(run_dir)
    if latest is not None:
        state = checkpointing.read_state(latest)
        saved = config_from_dict(state["config"])
        # what may change on a resume: the step target, the scene cache's path (a moved folder), progress bars;
        # anything else differing means another recipe (so a resumed run continues with exactly `cfg`)
        as_saved = replace(cfg, run=replace(cfg.run, max_steps=saved.run.max_steps, progress=saved.run.progress),
                           data=replace(cfg.data, scene_cache=saved.data.scene_cache))
        changed = _config_differences(saved, as_saved)
        if changed:
            raise InputError(f"{run_dir} was trained with another recipe than this run asks for ({'; '.join(changed)}); "
                             "use another --out (or remove that folder) rather than mixing recipes in one table")
        if int(state["step"]) >= steps:
            return {"steps": int(state["step"]), "seconds": 0.0, "skipped": True}
    t0 = time.perf_counter()
    trainer = run_training(cfg, run_dir, resume=latest is not None, until=steps)
    return {"steps": trainer.step, "seconds": time.perf_counter() - t0}


def _config_differences(have, want) -> list[str]:
    """``key: have -> want`` for every leaf where two training configs differ, keys spelled as overrides
    (named groups by name: ``optim.groups.merger.lr``)."""
    from threeam.train.config import config_to_dict

    def flat(d: dict, prefix: str = "") -> dict:
        items: dict = {}
        for k, v in d.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) and "name" in x for x in v):
                v = {x["name"]: x for x in v}
            items.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return items

    a, b = flat(config_to_dict(have)), flat(config_to_dict(want))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _timing(out: Path, stage: str, info: dict) -> None:
    """Add ``info["seconds"]`` to stage ``stage`` of ``OUT/timings.json`` (its other fields replace the old
    ones). Several processes may share one ``--out`` (disjoint ``--arms``): the read-modify-write holds an
    exclusive lock on ``OUT/timings.json.lock`` (POSIX; elsewhere unlocked), so no process's entry is lost."""
    import contextlib

    path = out / "timings.json"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "timings.json.lock", "a+") as lock_file:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        doc = json.loads(path.read_text()) if path.is_file() else {}
        prev = doc.get(stage, {"seconds": 0.0})
        info = dict(info)
        info["seconds"] = float(prev.get("seconds", 0.0)) + float(info.get("seconds", 0.0))
        doc[stage] = info
        _write_json(path, doc)


def eval_scenes(out: Path, cfg: ToyAblationConfig) -> list:
    from threeam.data.eval_scenes import make_eval_scenes

    return make_eval_scenes(cfg.eval_set, cfg.eval_scenes, cache_dir=_scene_cache(out))


# ------------------------------------------------------------------------------------ stages

def stage_scenes(out: Path, cfg: ToyAblationConfig) -> None:
    from threeam.data.scene_store import cached_scene, train_scene_seed
    from threeam.train.clips import synthetic_scene_config
    from threeam.train.config import apply_overrides
    from threeam.train.recipes import get_train_config

    t0 = time.perf_counter()
    done = set()
    for part, preset in (("sam2", "sam2-pretrain-synthetic"), ("must3r", "must3r-pretrain-synthetic")):
        for phase in _phases(cfg, part):  # every scene some phase trains on (phases may use more scenes)
            tc = apply_overrides(get_train_config(preset), list(phase.overrides) + list(cfg.train_overrides))
            sc = synthetic_scene_config(tc)
            names = [("synthetic", j) for j in range(tc.data.scenes_per_source)]
            if tc.run.eval_every:
                names += [("validation", j) for j in range(2)]
            for src, j in names:
                key = (sc, train_scene_seed(tc.seed, src, j))
                if key not in done:
                    cached_scene(sc, key[1], _scene_cache(out))
                    done.add(key)
    eval_scenes(out, cfg)
    _timing(out, "scenes", {"seconds": time.perf_counter() - t0})


def _phases(cfg: ToyAblationConfig, part: str) -> list[PretrainPhase]:
    """The part's curriculum; with ``pretrain_*_steps`` every phase is one complete schedule of that many steps
    (averaging phases then average as many checkpoints as fit, at least one)."""
    phases = cfg.must3r_phases if part == "must3r" else cfg.sam2_phases
    steps = cfg.pretrain_must3r_steps if part == "must3r" else cfg.pretrain_sam2_steps
    if not steps:
        return list(phases)
    out = []
    for ph in phases:
        every = min(ph.average_every, int(steps))
        last = min(ph.average_last, int(steps) // every) if ph.average_last else 0
        out.append(replace(ph, steps=int(steps), schedule_steps=None, average_last=last, average_every=every))
    return out


def _phase_dir(out: Path, part: str, k: int, phase: PretrainPhase) -> Path:
    return out / f"pretrain-{part}" / f"{k}-{phase.name}"


def _phase_output(out: Path, part: str, k: int, phase: PretrainPhase) -> Path:
    """The phase's weights: its run folder (latest checkpoint) or, for an averaging phase, its average record."""
    run_dir = _phase_dir(out, part, k, phase)
    return run_dir / "average" if phase.average_last else run_dir


def pretrained(out: Path, part: str, cfg: ToyAblationConfig | None = None) -> Path:
    """The pretrained ``part`` ("sam2" | "must3r") the later stages use: the given weights
    (``cfg.sam2_weights`` / ``cfg.must3r_weights``) or the last run of the pretrain stage's curriculum."""
    cfg = cfg or ToyAblationConfig()
    given = _given_weights(cfg, part)
    if given:
        return Path(given)
    phases = _phases(cfg, part)
    return _phase_output(out, part, len(phases) - 1, phases[-1])


def _given_weights(cfg: ToyAblationConfig, part: str) -> str | None:
    return cfg.sam2_weights if part == "sam2" else cfg.must3r_weights


def stage_pretrain(out: Path, cfg: ToyAblationConfig, part: str) -> None:
    given = _given_weights(cfg, part)
    if given:
        from threeam.train.export import resolve_checkpoint

        _, state = resolve_checkpoint(given)  # fails clearly on a wrong path
        task = (state or {}).get("config", {}).get("task")
        if task != part:
            raise InputError(f"--{part}-weights {given}: a {part!r} training checkpoint or record is needed "
                             f"(this one is {task!r})")
        log.info("pretrain-%s: skipped, using %s (step %s)", part, given, state.get("step"))
        return
    preset = "must3r-pretrain-synthetic" if part == "must3r" else "sam2-pretrain-synthetic"
    previous = None
    for k, phase in enumerate(_phases(cfg, part)):
        # the phase's recipe, then the experiment's own overrides (e.g. small scenes in tests) on top
        overrides = list(phase.overrides) + list(cfg.train_overrides)
        if previous is not None:
            overrides.append(f"model.init_checkpoint={previous}")
        if phase.average_last:
            overrides += [f"run.ckpt_every={phase.average_every}", "run.keep_last=0"]
        run_dir = _phase_dir(out, part, k, phase)
        _timing(out, f"pretrain-{part} {k}-{phase.name}",
                _train(out, run_dir, preset, overrides, phase.steps, phase.schedule_steps))
        previous = _phase_output(out, part, k, phase)
        if phase.average_last:
            _average_record(run_dir, previous, phase.average_last)


def _average_record(run_dir: Path, record: Path, last: int) -> None:
    """Write (or keep, when it already averages the run's newest ``last`` checkpoints) the phase's average."""
    from threeam.experiments.artifacts import export_run
    from threeam.train import checkpointing

    steps = [int(checkpointing.read_state(c)["step"]) for c in checkpointing.list_checkpoints(run_dir)[-last:]]
    run_json = record / "run.json"
    if run_json.is_file() and json.loads(run_json.read_text(encoding="utf-8")).get("averaged_steps") == steps:
        return
    export_run(run_dir, record, average_last=last)


def _sam2_eval_model(source, device: str = "cpu"):
    """A trained SAM 2 (training checkpoint) built for the video predictor (its video config)."""
    from threeam.predictor.build import video_predictor_config
    from threeam.train.export import load_for_eval

    return load_for_eval(source, device, video_config=video_predictor_config())


def _predictor(kind: str, source, device: str = "cpu"):
    from threeam.predictor.build import video_predictor_config

    vcfg = video_predictor_config()
    if kind == "sam2":
        from threeam.predictor.video_predictor import VideoPredictor

        return VideoPredictor(_sam2_eval_model(source, device), vcfg, progress=False)
    from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor
    from threeam.train.export import load_for_eval

    return ThreeAMVideoPredictor(load_for_eval(source, device), vcfg, progress=False)


def evaluate_method(scenes: Sequence, predictor, name: str,
                    before_scene: Callable[[Any], None] | None = None) -> list[dict]:
    """The paper's protocol on every track of ``scenes``; ``predictor=None`` is the trivial
    "prompt frame only" predictor (the GT prompt on the conditioning frame, nothing elsewhere).
    ``before_scene(scene)`` runs before each scene is tracked (e.g. `threeam.train.gt_geometry`'s
    ``set_scene``)."""
    from threeam.data.eval_sequences import EvalSequenceConfig, build_eval_sequences
    from threeam.eval.protocol import load_sequence, score_object, track_objects

    rows = []
    for scene in scenes:
        seqs = build_eval_sequences(scene, EvalSequenceConfig())
        if not seqs:
            continue
        frames, ids, unknown = load_sequence(scene)
        if before_scene is not None:
            before_scene(scene)
        prompts = {s.object_id: (s.cond_frame, ids[s.cond_frame] == s.object_id) for s in seqs}
        if predictor is None:
            masks = {}
            for oid, (t0, m) in prompts.items():
                masks[oid] = np.zeros(ids.shape, bool)
                masks[oid][t0] = m
        else:
            masks = track_objects(predictor, frames, prompts).masks
        for s in seqs:
            sc = score_object(masks[s.object_id], ids == s.object_id, unannotated=list(unknown))
            rows.append({"scene": scene.name, "object": s.object_id, "selected": bool(s.selected),
                         "frame_iou": sc.frame_iou.tolist(), "present": sc.present.tolist(),
                         "predicted": sc.predicted.tolist()})
        log.info("%s: %s done (%d tracks so far)", name, scene.name, len(rows))
    return rows


def stage_gates(out: Path, cfg: ToyAblationConfig) -> dict:
    from threeam.train.export import load_for_eval
    from threeam.train.must3r_task import lookalike_gate, summarize_trials

    path = out / "gates.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    scenes = eval_scenes(out, cfg)
    from threeam.train.must3r_task import stream_res

    must3r = load_for_eval(pretrained(out, "must3r", cfg), task="must3r")
    res = stream_res(_must3r_run_config(out, cfg))
    g = lookalike_gate(must3r, scenes, res, memory_scenes=0)  # the stream every second frame (24 of 48)
    pick, gt_pick = summarize_trials(g["trials"]), summarize_trials(g["gt_trials"])
    confirm = None
    if cfg.confirm_set:
        from threeam.data.eval_scenes import make_eval_scenes

        c = lookalike_gate(must3r, make_eval_scenes(cfg.confirm_set, cache_dir=_scene_cache(out)), res, memory_scenes=0)
        confirm = {"set": cfg.confirm_set, **summarize_trials(c["trials"]),
                   "gt_points_pick_rate": summarize_trials(c["gt_trials"])["pick_rate"]}
    base = {m: _summary(_load_or_eval(out, m, scenes, cfg)) for m in ("prompt-only", "sam2-pretrained")}
    s2, po = base["sam2-pretrained"], base["prompt-only"]
    doc = {
        "must3r_lookalike_pick_rate": pick["pick_rate"], "chance": pick["chance"], "trials": pick["trials"],
        "gt_points_pick_rate": gt_pick["pick_rate"], "must3r_gate": pick["pick_rate"] >= cfg.pick_gate,
        "must3r_confirm": confirm,
        "sam2_vs_prompt_only": base,
        # our reading of "beats the prompt-frame-only predictor clearly on TR and FPR": Tracking Recall at
        # least 10 points higher while predicting the object on fewer than half of its absent frames
        # (prompt-only never predicts it, FPR 0, so FPR can only be bounded, not beaten)
        "sam2_gate": bool(s2["whole"]["Tracking Recall"] >= po["whole"]["Tracking Recall"] + cfg.tr_margin
                          and s2["whole"]["False-positive rate"] < cfg.max_fpr),
        "seconds": time.perf_counter() - t0,
    }
    _write_json(path, doc)
    return doc


def _must3r_run_config(out: Path, cfg: ToyAblationConfig):
    """The training config of the pretrained MUSt3R (its run, checkpoint or record)."""
    from threeam.train.config import config_from_dict
    from threeam.train.export import resolve_checkpoint

    return config_from_dict(resolve_checkpoint(pretrained(out, "must3r", cfg))[1]["config"])


def _arm_dir(out: Path, arm: str, seed: int) -> Path:
    return out / "arms" / f"{arm}-s{seed}"


def stage_arms(out: Path, cfg: ToyAblationConfig) -> None:
    for arm in cfg.arms:
        preset, ov = ARMS[arm]
        for seed in cfg.seeds:
            groups = []
            overrides = list(cfg.train_overrides) + list(ov) + [
                f"seed={seed}", "data.scene_seed=0",
                f"model.sam2_checkpoint={pretrained(out, 'sam2', cfg)}"]
            if preset != "toy-ablation-sam2":
                overrides.append(f"model.must3r_checkpoint={pretrained(out, 'must3r', cfg)}")
                made = _must3r_run_config(out, cfg).model
                if isinstance(made.must3r, str):  # the 3AM builds the MUSt3R the weights are for (tiny-wide, ...)
                    overrides.append(f"model.must3r={made.must3r}")
                if made.must3r_res is not None:  # the 3AM streams MUSt3R at the size it was trained at
                    overrides.append(f"model.must3r_res={made.must3r_res}")
                if cfg.merger_lr is not None:
                    overrides.append(f"optim.groups.merger.lr={cfg.merger_lr:g}")
                if cfg.merger is not None:
                    overrides.append(f"model.merger={cfg.merger}")
                if cfg.merger_transformer_lr is not None:
                    from threeam.train.recipes import merger_transformer_group

                    groups.append(merger_transformer_group(cfg.merger_transformer_lr))
            info = _train(out, _arm_dir(out, arm, seed), preset, overrides, cfg.arm_steps, extra_groups=groups)
            _timing(out, f"arm {arm} s{seed}", info)


def _is_3am(arm: str) -> bool:
    return ARMS[arm][0] != "toy-ablation-sam2"


def _geometry_path(out: Path, arm: str, seed: int) -> Path:
    return out / "geometry" / f"{arm}-s{seed}.json"


def stage_geometry(out: Path, cfg: ToyAblationConfig) -> None:
    """The selection check on every 3AM arm run (see the module docstring)."""
    from threeam.experiments.geometry_check import geometry_dependence, reads_geometry, validation_scenes
    from threeam.train import checkpointing
    from threeam.train.config import config_from_dict
    from threeam.train.export import load_for_eval

    # the check feeds MUSt3R's predicted geometry; it says nothing about an arm that reads the GT pointmap
    for arm in [a for a in cfg.arms if _is_3am(a) and not uses_gt_points(a)]:
        for seed in cfg.seeds:
            path = _geometry_path(out, arm, seed)
            if path.is_file():
                continue
            run = _arm_dir(out, arm, seed)
            latest = checkpointing.find_latest(run)
            if latest is None:
                raise InputError(f"{run} has no checkpoint: run the arms stage first")
            train_cfg = config_from_dict(checkpointing.read_state(latest)["config"])
            result = geometry_dependence(load_for_eval(run, task="3am"),
                                         validation_scenes(train_cfg, 2, _scene_cache(out)))
            result.update(threshold=cfg.geometry_threshold,
                          reads_geometry=reads_geometry(result["geometry_dependence"], cfg.geometry_threshold))
            _write_json(path, result)
            log.info("geometry check %s s%d: %.3f", arm, seed, result["geometry_dependence"])


def _methods(cfg: ToyAblationConfig) -> list[str]:
    return ["prompt-only", "sam2-pretrained"] + [f"{a}-s{s}" for a in cfg.arms for s in cfg.seeds]


def _load_or_eval(out: Path, method: str, scenes: Sequence, cfg: ToyAblationConfig | None = None) -> list[dict]:
    path = out / "eval" / f"{method}.json"
    if path.is_file():
        return json.loads(path.read_text())["tracks"]
    t0 = time.perf_counter()
    before_scene = None
    if method == "prompt-only":
        predictor = None
    elif method == "sam2-pretrained":
        predictor = _predictor("sam2", pretrained(out, "sam2", cfg))
    else:
        arm, seed = method.rsplit("-s", 1)
        kind = "sam2" if ARMS[arm][0] == "toy-ablation-sam2" else "3am"
        predictor = _predictor(kind, _arm_dir(out, arm, int(seed)))
        if uses_gt_points(arm):
            from threeam.train import checkpointing
            from threeam.train.config import config_from_dict
            from threeam.train.gt_geometry import use_gt_points
            from threeam.train.three_am_task import gt_pose_noise

            run = config_from_dict(checkpointing.read_state(checkpointing.find_latest(_arm_dir(out, arm, int(seed))))["config"])
            before_scene = use_gt_points(predictor, gt_pose_noise(run))  # the registration error it trained with
    rows = evaluate_method(scenes, predictor, method, before_scene)
    _write_json(path, {"method": method, "seconds": time.perf_counter() - t0, "tracks": rows})
    return rows


def stage_eval(out: Path, cfg: ToyAblationConfig) -> None:
    scenes = eval_scenes(out, cfg)
    for m in _methods(cfg):
        _load_or_eval(out, m, scenes, cfg)


# ------------------------------------------------------------------------------------ table

def _track_scores(rows: Sequence[dict]):
    from threeam.eval.metrics import TrackScores

    return [TrackScores(f"{r['scene']}/{r['object']}", np.asarray(r["frame_iou"], float),
                        np.asarray(r["present"], bool), np.asarray(r["predicted"], bool)) for r in rows]


def _summary(rows: Sequence[dict]) -> dict:
    from threeam.eval.metrics import aggregate

    ts = _track_scores(rows)
    sel = [t for t, r in zip(ts, rows) if r["selected"]]
    return {"whole": aggregate(ts).to_dict(), "selected": aggregate(sel).to_dict()}


METRICS = (("IoU", "iou"), ("Tracking Recall", "tracking_recall"), ("Accuracy", "accuracy"),
           ("False-positive rate", "false_positive_rate"))


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (nan-aware; SE nan for fewer than two values)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return math.nan, math.nan
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return float(v.mean()), se


def paired_ci(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, int]:
    """Paired difference ``a - b`` over items where both are defined: mean, 95% CI (normal
    approximation, 1.96 standard errors) and the item count."""
    d = np.asarray([x - y for x, y in zip(a, b) if np.isfinite(x) and np.isfinite(y)], float)
    if d.size < 2:
        return (float(d.mean()) if d.size else math.nan), math.nan, math.nan, int(d.size)
    m, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    return m, m - 1.96 * se, m + 1.96 * se, int(d.size)


def track_means(runs: Sequence[dict], keys: Sequence, attr: str) -> list[float]:
    """Per track ``k`` of ``keys``: the mean over ``runs`` (one ``{track key: TrackScores}`` per seed) of
    metric ``attr``, ignoring undefined values (nan where no run defines it)."""
    out = []
    for k in keys:
        v = np.asarray([getattr(r[k], attr) for r in runs], float)
        out.append(float(np.nanmean(v)) if np.isfinite(v).any() else math.nan)
    return out


def build_table(out: Path, cfg: ToyAblationConfig) -> dict:
    """Aggregate ``OUT/eval`` into the table (see the module docstring)."""
    from threeam.experiments.geometry_check import reads_geometry

    rows = {m: json.loads((out / "eval" / f"{m}.json").read_text())["tracks"] for m in _methods(cfg)}
    keys = [(r["scene"], r["object"]) for r in rows["sam2-pretrained"]]
    selected = {(r["scene"], r["object"]): r["selected"] for r in rows["sam2-pretrained"]}
    per_track = {m: {(r["scene"], r["object"]): ts for r, ts in zip(v, _track_scores(v))} for m, v in rows.items()}
    groups = {"prompt-only": ["prompt-only"], "sam2-pretrained": ["sam2-pretrained"]}
    geometry: dict[str, list[int]] = {}
    for a in cfg.arms:
        groups[a] = [f"{a}-s{s}" for s in cfg.seeds]
        checks = {s: _geometry_path(out, a, s) for s in cfg.seeds}
        if _is_3am(a) and all(p.is_file() for p in checks.values()):
            # the rule as it stands in this config (the stored values are the measurements)
            passing = [s for s, p in checks.items()
                       if reads_geometry(json.loads(p.read_text())["geometry_dependence"], cfg.geometry_threshold)]
            geometry[a] = passing
            if passing:
                groups[f"{a} (reads geometry)"] = [f"{a}-s{s}" for s in passing]
    table: dict[str, Any] = {"tracks": {"whole": len(keys), "selected": sum(selected.values())}, "rows": {},
                             "reads_geometry_seeds": geometry, "geometry_threshold": cfg.geometry_threshold}
    for g, methods in groups.items():
        entry: dict[str, Any] = {"runs": len(methods)}
        for subset in ("whole", "selected"):
            ks = [k for k in keys if subset == "whole" or selected[k]]
            for label, attr in METRICS:
                per_seed = []
                for m in methods:
                    vals = [getattr(per_track[m][k], attr) for k in ks]
                    per_seed.append(float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan)
                mean, se = mean_se(per_seed)
                arm_track = track_means([per_track[m] for m in methods], ks, attr)
                base_track = [getattr(per_track["sam2-pretrained"][k], attr) for k in ks]
                d, lo, hi, n = paired_ci(arm_track, base_track)
                entry[f"{subset}/{label}"] = {"mean": mean, "se": se, "per_seed": per_seed,
                                              "diff_vs_sam2": d, "ci95": [lo, hi], "n_tracks": n}
        table["rows"][g] = entry
    _write_json(out / "table.json", table)
    from threeam.io.atomic import atomic_write_text

    atomic_write_text(out / "table.md", format_table(table))
    atomic_write_text(out / "ablation.svg", ablation_svg(table))
    return table


def _pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100 * x:.1f}"


def format_table(table: dict) -> str:
    """Markdown: one row per method, mean ± SE over seeds (in %), and the paired difference to
    SAM 2 pretrained with its 95% CI."""
    cols = [(s, m) for s in ("whole", "selected") for m, _ in METRICS]
    head = "| method | runs | " + " | ".join(f"{'Whole' if s == 'whole' else 'Selected'} {m}" for s, m in cols) + " |"
    lines = [f"Tracks: Whole Set {table['tracks']['whole']}, Selected Subset {table['tracks']['selected']}. "
             "Values in %, mean ± standard error over seeds; below each trained arm, the paired difference "
             "to SAM 2 pretrained over tracks with its 95% CI.", "", head,
             "|" + "---|" * (len(cols) + 2)]
    for name, e in table["rows"].items():
        cells = []
        for s, m in cols:
            c = e[f"{s}/{m}"]
            cells.append(_pct(c["mean"]) + ("" if not np.isfinite(c["se"]) else f" ± {_pct(c['se'])}"))
        lines.append(f"| {name} | {e['runs']} | " + " | ".join(cells) + " |")
        if name not in ("sam2-pretrained",):
            diffs = []
            for s, m in cols:
                c = e[f"{s}/{m}"]
                lo, hi = c["ci95"]
                diffs.append(f"{_pct(c['diff_vs_sam2'])} [{_pct(lo)}, {_pct(hi)}]")
            lines.append(f"| &nbsp;&nbsp;Δ vs SAM 2 | | " + " | ".join(diffs) + " |")
    for arm, seeds in table.get("reads_geometry_seeds", {}).items():
        lines.append(f"\n{arm}: the merger reads the geometry (held-out training scenes, dependence >= "
                     f"{table['geometry_threshold']:g}) in seeds {', '.join(map(str, seeds)) or 'none'}.")
    return "\n".join(lines) + "\n"


def ablation_svg(table: dict) -> str:
    """A bar chart (SVG, no plotting library): Tracking Recall and false-positive rate per method,
    Whole Set and Selected Subset, with ± SE whiskers."""
    panels = [("whole/Tracking Recall", "Whole TR"), ("selected/Tracking Recall", "Selected TR"),
              ("whole/False-positive rate", "Whole FPR"), ("selected/IoU", "Selected IoU")]
    names = list(table["rows"])
    pw, ph, pad = 260, 200, 40
    w = pad + len(panels) * (pw + pad)
    h = ph + 2 * pad + 20 + 14 * len(names)
    colors = ["#999999", "#555555", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>']
    for p, (key, title) in enumerate(panels):
        x0 = pad + p * (pw + pad)
        out.append(f'<text x="{x0 + pw / 2}" y="{pad - 12}" text-anchor="middle" font-weight="bold">{title} (%)</text>')
        out.append(f'<line x1="{x0}" y1="{pad + ph}" x2="{x0 + pw}" y2="{pad + ph}" stroke="black"/>')
        out.append(f'<line x1="{x0}" y1="{pad}" x2="{x0}" y2="{pad + ph}" stroke="black"/>')
        for tick in (0, 25, 50, 75, 100):
            y = pad + ph - ph * tick / 100
            out.append(f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end">{tick}</text>')
            out.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + pw}" y2="{y}" stroke="#eee"/>')
        bw = pw / max(len(names), 1)
        for i, n in enumerate(names):
            c = table["rows"][n][key]
            v = c["mean"] if np.isfinite(c["mean"]) else 0.0
            bx = x0 + i * bw + 0.15 * bw
            bh = ph * v
            out.append(f'<rect x="{bx:.1f}" y="{pad + ph - bh:.1f}" width="{0.7 * bw:.1f}" height="{bh:.1f}" '
                       f'fill="{colors[i % len(colors)]}"/>')
            if np.isfinite(c["se"]):
                lo, hi = pad + ph - ph * (v - c["se"]), pad + ph - ph * (v + c["se"])
                cx = bx + 0.35 * bw
                out.append(f'<line x1="{cx:.1f}" y1="{lo:.1f}" x2="{cx:.1f}" y2="{hi:.1f}" stroke="black"/>')
    for i, n in enumerate(names):
        y = pad + ph + 30 + 14 * i
        out.append(f'<rect x="{pad}" y="{y - 9}" width="10" height="10" fill="{colors[i % len(colors)]}"/>')
        out.append(f'<text x="{pad + 14}" y="{y}">{n}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ driver

def run_toy_ablation(out: str | os.PathLike, cfg: ToyAblationConfig = ToyAblationConfig(),
                     stages: Sequence[str] = STAGES) -> dict:
    """Run (or resume) the listed stages in order; returns the table when the ``table`` stage ran."""
    out = Path(out)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise InputError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "experiment.json", {"config": asdict(cfg), "stages": list(stages)})
    result: dict = {}
    for stage in STAGES:
        if stage not in stages:
            continue
        log.info("stage %s", stage)
        t0 = time.perf_counter()
        if stage == "scenes":
            stage_scenes(out, cfg)
        elif stage == "pretrain-must3r":
            stage_pretrain(out, cfg, "must3r")
        elif stage == "pretrain-sam2":
            stage_pretrain(out, cfg, "sam2")
        elif stage == "gates":
            result["gates"] = stage_gates(out, cfg)
        elif stage == "arms":
            stage_arms(out, cfg)
        elif stage == "geometry":
            stage_geometry(out, cfg)
        elif stage == "eval":
            stage_eval(out, cfg)
            _timing(out, "eval", {"seconds": time.perf_counter() - t0})
        elif stage == "table":
            result["table"] = build_table(out, cfg)
        log.info("stage %s: %.0f s", stage, time.perf_counter() - t0)
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="threeam experiment toy-ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="experiment folder (resumed when it exists)")
    p.add_argument("--size", default="full", choices=sorted(SIZES), help="sizes preset (default full)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--seeds", default=None, help="comma-separated arm seeds (default: the size's)")
    p.add_argument("--arm-steps", type=int, default=None)
    p.add_argument("--eval-set", default=None,
                   help="evaluation scene set (default: the size's; lookalike-confirm: 40 scenes never used to choose "
                        "a recipe; use another --out, the eval files are named by method only)")
    p.add_argument("--pretrain", default="curriculum", choices=("curriculum", "single", "wide", "wider"),
                   help="pretraining stages: the records' curriculum (default), one run of each preset, or the "
                        "records' SAM 2 curriculum with the tiny-wide MUSt3R's (wide: TINY_WIDE_PHASES) or the "
                        "tiny-wider one's (wider: TINY_WIDER_PHASES, the MUSt3R that passes the gate)")
    p.add_argument("--pretrain-sam2-steps", type=int, default=None, help="steps of every SAM 2 pretraining phase")
    p.add_argument("--pretrain-must3r-steps", type=int, default=None, help="steps of every MUSt3R pretraining phase")
    p.add_argument("--arms", default=None, help=f"comma-separated subset of {','.join(ARMS)} (default all); "
                   "two processes with disjoint arms can share one --out")
    p.add_argument("--sam2-weights", default=None,
                   help="pretrained SAM 2 (run, checkpoint or record folder) instead of the pretrain-sam2 stage")
    p.add_argument("--must3r-weights", default=None,
                   help="pretrained MUSt3R (run, checkpoint or record folder) instead of the pretrain-must3r stage")
    p.add_argument("--merger-lr", type=float, default=None,
                   help="Feature Merger learning rate of the 3AM arms (default: the recipe's 5e-4)")
    p.add_argument("--merger-transformer-lr", type=float, default=None,
                   help="learning rate of the merger's transformer (projection, PE3D, attention blocks, output norm) "
                        "in the 3AM arms; its output convs keep --merger-lr (default: one rate for the whole merger)")
    p.add_argument("--train-override", action="append", default=[], metavar="KEY=VALUE",
                   help="a training override for every run (repeatable), after the size's own")
    p.add_argument("--merger", default=None,
                   help="Feature Merger preset of the 3AM arms (default: the recipe's tiny; tiny_pe3d_fan_in: PE3D "
                        "at unit scale from the start; tiny_geometry_fuse: the final conv block reads the geometry, "
                        "not F2D; tiny_pe3d_fan_in_centred: the PE3D merger whose offset has no per-channel constant)")
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace) -> ToyAblationConfig:
    cfg = SIZES[a.size]
    changes: dict[str, Any] = {}
    if a.pretrain == "single":
        changes.update(must3r_phases=SINGLE_PHASE, sam2_phases=SINGLE_PHASE)
    elif a.pretrain == "wide":
        changes.update(must3r_phases=TINY_WIDE_PHASES)
    elif a.pretrain == "wider":
        changes.update(must3r_phases=TINY_WIDER_PHASES)
    if a.seeds:
        changes["seeds"] = tuple(int(x) for x in a.seeds.split(","))
    for name in ("arm_steps", "pretrain_sam2_steps", "pretrain_must3r_steps"):
        if getattr(a, name) is not None:
            changes[name] = int(getattr(a, name))
    if a.eval_set:
        changes["eval_set"] = str(a.eval_set)
    if a.merger_lr is not None:
        changes["merger_lr"] = float(a.merger_lr)
    if a.merger_transformer_lr is not None:
        changes["merger_transformer_lr"] = float(a.merger_transformer_lr)
    if a.merger:
        changes["merger"] = str(a.merger)
    if a.arms:
        changes["arms"] = tuple(x.strip() for x in a.arms.split(",") if x.strip())
    for name in ("sam2_weights", "must3r_weights"):
        if getattr(a, name):
            changes[name] = str(getattr(a, name))
    if a.train_override:
        changes["train_overrides"] = tuple(cfg.train_overrides) + tuple(a.train_override)
    return replace(cfg, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    a = parse_args(argv)
    result = run_toy_ablation(a.out, config_from_args(a), [s.strip() for s in a.stages.split(",") if s.strip()])
    if "table" in result:
        print((Path(a.out) / "table.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
