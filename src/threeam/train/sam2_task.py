"""The ``sam2`` training task: SAM 2 alone (no MUSt3R is built or run) on video clips.

Two uses:

* **pretraining** a tiny SAM 2 from random weights on generated clips (preset
  ``sam2-pretrain-synthetic``: every module trainable, SAM 2's losses, masks / boxes / clicks with
  corrective clicks), so the toy ablation has a SAM 2 that means something;
* the **"SAM 2 fine-tuned alone"** arm of the ablation (the paper's Table 6 row): the same freeze rule
  and data as the 3AM arms, without the geometry.

Per clip: `threeam.train.vos.track_clip` (ungated mask logits for the mask loss, gradients into
``conv_s0`` / ``conv_s1``), `SAM2Loss`. Held-out metric (``run.eval_every``): the tracker's IoU,
Tracking Recall and false-positive rate on clips of validation scenes (a seed space of their own,
neither training nor evaluation scenes), mask-prompted on frame 0.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from threeam.errors import InputError
from threeam.train.config import DataSourceConfig, TrainConfig
from threeam.train.losses import SAM2Loss

__all__ = ["sam2_config_for", "build_sam2_for_training", "sam2_task", "make_vos_evaluator", "clip_item"]


def sam2_config_for(name: str):
    """``model.sam2``: a SAM 2 preset name, or ``sam2.1_debug_256`` / ``debug`` for the debug model."""
    from threeam.models.three_am import resolve_debug_sam2

    return resolve_debug_sam2(name)


def build_sam2_for_training(config: TrainConfig):
    """A `SAM2Base` through `threeam.predictor.build.build_sam2_model`: ``model.sam2_checkpoint``
    (an official file, a safetensors file or a training checkpoint of the ``sam2`` task) or the
    random-weights rule with the run's seed."""
    from threeam.predictor.build import build_sam2_model

    m = config.model
    preset = sam2_config_for(m.sam2)
    model = build_sam2_model(preset, random_weights=True, seed=config.seed)
    if m.sam2_checkpoint:
        from threeam.train.export import load_part_weights

        load_part_weights(model, m.sam2_checkpoint, part="sam2")
    return model


def clip_item(clip, data, item_seed: int, kinds: tuple[str, ...], cache: str = "", geometry: bool = False) -> dict:
    """A training item of a clip; ``geometry`` adds ``depth``, ``K`` and ``cam_to_world`` (None when
    the clip has no depth / poses) for the memory-attention term."""
    rng = np.random.default_rng(item_seed)
    item = {"rgb": data.rgb, "masks": data.masks, "prompt_kind": kinds[int(rng.integers(len(kinds)))],
            "prompt_kinds": tuple(kinds), "prompt_seed": item_seed, "mode": clip.mode, "scene_name": clip.scene_name,
            "frames": list(clip.frames), "cache": cache if clip.mode == "fov" else ""}
    if geometry:
        item.update(depth=data.depth, K=data.K, cam_to_world=data.cam_to_world)
    return item


def memory_attention_term(config: TrainConfig, net: nn.Module, batch: Mapping[str, Any], run):
    """``run()`` under a `MemoryAttentionRecorder` when ``sam2_attn.weight`` applies to this clip;
    returns ``(run's result, loss or None, top1 or None)``."""
    acfg = config.sam2_attn
    if acfg.weight <= 0 or batch.get("depth") is None or batch.get("cam_to_world") is None \
            or (acfg.clips == "continuous" and batch.get("mode") != "continuous"):
        return run(), None, None
    from threeam.train.sam2_attention import MemoryAttentionRecorder, memory_attention_loss, token_votes

    grid = int(net.image_size) // 16
    cache: dict = {}

    def votes(a: int, b: int) -> torch.Tensor:
        if (a, b) not in cache:
            d, K, P = batch["depth"], batch["K"], batch["cam_to_world"]
            cache[(a, b)] = torch.from_numpy(token_votes(d[a], K[a], P[a], d[b], K[b], P[b], grid))
        return cache[(a, b)]

    with MemoryAttentionRecorder(net, acfg.heads) as rec:
        result = run()
    loss, top1 = memory_attention_loss(rec.calls, votes)
    return result, loss, top1


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def make_vos_evaluator(config: TrainConfig, forward: Callable[[nn.Module, dict], tuple]) -> Callable:
    """``evaluate(model) -> {"vos_iou", "vos_tracking_recall", "vos_false_positive_rate"}`` over
    ``run.eval_items`` mask-prompted clips (``2 * frames_per_clip`` continuous frames) of two
    validation scenes. ``forward(model, item) -> (outputs, targets, chosen_logits)``."""
    from dataclasses import replace

    from threeam.data.scene_store import cached_scene, train_scene_seed
    from threeam.train.clips import ClipDrawer, scene_seed, synthetic_scene_config
    from threeam.train.vos import clip_scores

    state: dict[str, Any] = {}

    def items() -> list[dict]:
        if "items" not in state:
            cfg = synthetic_scene_config(config)
            scenes = [cached_scene(cfg, train_scene_seed(scene_seed(config), "validation", j),
                                   config.data.scene_cache or None, name=f"val_{j}") for j in range(2)]
            src = DataSourceConfig("validation", fov_prob=0.0, prompt_kinds=("mask",))
            vcfg = replace(config, data=replace(config.data, num_clips=0, min_present_frac=0.0))
            drawer = ClipDrawer(scenes, src, vcfg, seed=12345, n_frames=2 * config.data.frames_per_clip)
            state["items"] = [{**clip_item(*drawer.clip(i), kinds=("mask",)), "eval": True}
                              for i in range(config.run.eval_items)]
        return state["items"]

    def evaluate(model: nn.Module) -> dict[str, float]:
        net = _unwrap(model)
        was = net.training
        net.eval()
        rows = []
        try:
            with torch.no_grad():
                for item in items():
                    _, _, chosen = forward(net, item)
                    rows.append(clip_scores(chosen, item["masks"]))
        finally:
            net.train(was)
        out = {}
        for k in ("iou", "tracking_recall", "false_positive_rate"):
            vals = [r[k] for r in rows if np.isfinite(r[k])]
            out[f"vos_{k}"] = float(np.mean(vals)) if vals else float("nan")
        return out

    return evaluate


def prompt_plan_for(config: TrainConfig, batch: Mapping[str, Any]):
    """The clip's `ClipPromptPlan` under ``data.prompt_plan`` (None: the frame-0 rule of `track_clip`).
    Evaluation items (``batch["eval"]``) always use the frame-0 rule."""
    if config.data.prompt_plan != "sam2" or batch.get("eval"):
        return None
    from threeam.train.prompts import PromptSimConfig
    from threeam.train.vos import clip_prompt_plan

    kinds = tuple(batch.get("prompt_kinds", ("mask", "point", "box")))
    sim = PromptSimConfig(masks_only=set(kinds) == {"mask"},
                          num_frames_to_correct=2 if config.data.correction_clicks else 0)
    return clip_prompt_plan(batch["masks"], sim, seed=int(batch["prompt_seed"]) + 1)


def _sam2_forward(config: TrainConfig):
    from threeam.train.vos import track_clip

    def forward(net: nn.Module, batch: Mapping[str, Any]):
        return track_clip(net, batch["rgb"], batch["masks"], batch["prompt_kind"], batch["prompt_seed"],
                          config.data.correction_clicks, plan=prompt_plan_for(config, batch))
    return forward


def sam2_task(config: TrainConfig, ctx) -> "TrainTask":  # noqa: F821 - TrainTask from recipes
    """Build SAM 2, its step function, one clip source per data source and the VOS evaluator."""
    from threeam.train.clips import ClipDrawer, clip_source, open_source_scenes
    from threeam.train.recipes import TrainTask

    model = build_sam2_for_training(config)
    forward = _sam2_forward(config)
    loss_fn = SAM2Loss(config.loss)

    def step(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        net = _unwrap(model)
        (outputs, targets, _), a_loss, top1 = memory_attention_term(config, net, batch, lambda: forward(net, batch))
        losses = loss_fn(outputs, targets)
        out = {"loss": losses["total"]}
        out.update({f"loss_{k}": v.detach() for k, v in losses.items() if k != "total"})
        if a_loss is not None:  # logged only on the clips the term applies to
            out["loss"] = out["loss"] + config.sam2_attn.weight * a_loss
            out["attn_corr"] = a_loss.detach()
            out["attn_top1"] = top1
        return out

    sources = {}
    for k, src in enumerate(config.data.sources):
        if src.cache:
            raise InputError(f"data.sources.{src.name}.cache is a MUSt3R feature cache; the sam2 task runs no MUSt3R")
        drawer = ClipDrawer(open_source_scenes(src, config, k), src, config, seed=config.seed + k)
        kinds = tuple(src.prompt_kinds)
        geo = config.sam2_attn.weight > 0
        sources[src.name] = clip_source(drawer, lambda c, d, s, kinds=kinds, geo=geo: clip_item(c, d, s, kinds,
                                                                                                geometry=geo))
    if not sources:
        raise InputError("the sam2 task needs at least one data source (data.sources)")
    evaluate = make_vos_evaluator(config, forward) if config.run.eval_every else None
    return TrainTask(model=model, step_fn=step, sources=sources, evaluate=evaluate)
