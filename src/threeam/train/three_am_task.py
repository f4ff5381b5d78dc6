"""The ``3am`` training task: clips from posed scenes (FoV-aware or continuous), SAM 2's tracking
step over the clip with F_merged, SAM 2's losses.

Per clip (``frames_per_clip`` frames, frame 0 = the reference / prompted frame):

1. SAM 2's image encoder and MUSt3R run without gradients (both frozen): stride-4/8/16 features of
   every frame, and MUSt3R's streaming outputs in clip order (a fresh MUSt3R memory per clip,
   reference = frame 0).
2. The Feature Merger makes F_merged per frame (with gradients).
3. Frame 0 gets the simulated prompt (a kind drawn from the source's ``prompt_kinds``: the GT mask
   on ScanNet++/ASE, points/boxes/masks on MOSE-like sources); frames 1.. are tracked with SAM 2's
   memory (memory attention, memory encoder, object pointers), gradients flowing through the
   memory bank as in SAM 2 training.
4. `threeam.train.losses.SAM2Loss` on every frame's multimask outputs at S x S against the GT masks
   (ungated logits for the mask terms, see `threeam.train.vos`).

Model: built through `threeam.predictor.build.build_three_am_model` (the random-weights rule), then
``model.sam2_checkpoint`` (e.g. the pretrained tiny SAM 2 of the ``sam2`` task) fills the SAM 2 part
and ``model.must3r_checkpoint`` (the ``must3r`` task's run) the MUSt3R part.

Data sources (``config.data.sources``): ``synthetic*`` names generate scenes with
`threeam.data.synth` (seeded; ``root`` ignored); ``scannetpp``, ``replica``, ``ase`` and DAVIS/MOSE
style folders are opened from ``root`` with `threeam.data.discovery.open_scenes`. Clip ``i`` of a
source is a pure function of (seed, source, i), so the engine's resume is exact.

Model names: ``model.sam2`` is a SAM 2 preset or ``sam2.1_debug_256`` (the debug model);
``model.must3r`` a MUSt3R preset or ``tiny``; ``model.merger`` a merger preset.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from threeam.errors import InputError
from threeam.models.must3r.session import Must3rStreamingSession
from threeam.models.three_am import ThreeAM, ThreeAMConfig
from threeam.train.config import TrainConfig
from threeam.train.losses import FrameOutputs, SAM2Loss



def three_am_config_for(config: TrainConfig) -> ThreeAMConfig:
    """The `ThreeAMConfig` described by ``config.model``."""
    from threeam.train.sam2_task import sam2_config_for

    from threeam.predictor.build import three_am_config_from_sam2

    m = config.model
    cfg = three_am_config_from_sam2(sam2_config_for(m.sam2), m.must3r, m.merger)
    if m.must3r_res is not None:
        cfg = replace(cfg, must3r_res=int(m.must3r_res))
    return cfg


def build_model(config: TrainConfig) -> ThreeAM:
    from threeam.predictor.build import build_three_am_model
    from threeam.train.export import load_part_weights

    model = build_three_am_model(three_am_config_for(config), random_weights=True, seed=config.seed)
    m = config.model
    if m.sam2_checkpoint:
        load_part_weights(model.sam2, m.sam2_checkpoint, part="sam2")
    if m.must3r_checkpoint:
        p = str(m.must3r_checkpoint)
        if p.endswith((".pth", ".pt")):
            from threeam.models.must3r.checkpoint import read_must3r_checkpoint

            ck = read_must3r_checkpoint(p)
            model.must3r.encoder.load_state_dict(ck["encoder"])
            model.must3r.decoder.load_state_dict(ck["decoder"])
        else:
            load_part_weights(model.must3r, p, part="must3r")
    model.train()
    model.sam2.image_encoder.eval()
    model.must3r.eval()
    return model


# ------------------------------------------------------------------------------------ step

def _unwrap(model: nn.Module) -> ThreeAM:
    return model.module if hasattr(model, "module") else model


def stream_geometry(model: ThreeAM, frames) -> list:
    """MUSt3R's outputs for ``frames`` (uint8 (H, W, 3) each) streamed in order through a fresh memory,
    the first frame as reference, without gradients."""
    with torch.no_grad():
        session = Must3rStreamingSession(model.must3r, model.stream_config)
        return [session.add_frame(f) for f in frames]


def clip_forward_full(model: ThreeAM, rgb: np.ndarray, masks: np.ndarray, prompt_kind: str = "mask",
                      prompt_seed: int = 0, geometry: list | None = None, correction_clicks: int = 0,
                      plan=None):
    """:func:`clip_forward` that also returns the chosen (gated) logits (T, 1, S, S)."""
    from threeam.train.vos import track_clip

    T = masks.shape[0]
    with torch.no_grad():
        if geometry is None:
            geometry = stream_geometry(model, rgb)
        elif len(geometry) != T:
            raise InputError(f"got MUSt3R outputs for {len(geometry)} frames but the clip has {T}")

    def fuse(t: int, one: dict, hw: tuple[int, int]) -> dict:
        return model.merge_backbone_output(one, geometry[t], hw)

    return track_clip(model.sam2, rgb, masks, prompt_kind, prompt_seed, correction_clicks, fuse=fuse, plan=plan)


def clip_forward(model: ThreeAM, rgb: np.ndarray, masks: np.ndarray, prompt_kind: str = "mask",
                 prompt_seed: int = 0, geometry: list | None = None,
                 correction_clicks: int = 0, plan=None) -> tuple[list[FrameOutputs], torch.Tensor]:
    """Run 3AM over one clip with gradients in the trainable parts.

    Args:
        rgb: (T, H, W, 3) uint8 frames; masks: (T, H, W) bool GT masks of the object.
        geometry: MUSt3R outputs of the T frames (e.g. from the feature cache); None runs MUSt3R
            over the clip (a fresh streaming memory, frame 0 as reference, no gradients).
        correction_clicks: for a click/box prompt, this many corrective clicks on frame 0, each
            from the current error (`threeam.train.prompts.simulate_correction`), the decoder re-run
            with the previous logits as SAM 2 training does; every step's outputs are supervised.
        plan: the clip's `threeam.train.prompts.ClipPromptPlan` (``data.prompt_plan=sam2``), or None
            for the frame-0 rule (see `threeam.train.vos.track_clip`).
    Returns:
        per-frame `FrameOutputs` (ungated multimask logits at S x S) and the targets (T, 1, S, S).
    """
    outputs, targets, _ = clip_forward_full(model, rgb, masks, prompt_kind, prompt_seed, geometry, correction_clicks,
                                            plan)
    return outputs, targets


def _geometry(batch: Mapping[str, Any], net: ThreeAM, caches: dict):
    if not batch.get("cache"):
        return None
    from threeam.train.geometry_cache import GeometryCache, must3r_fingerprint

    if batch["cache"] not in caches:  # checked against the MUSt3R's weights when the run first reads the cache
        caches[batch["cache"]] = GeometryCache(batch["cache"], net.stream_config.input_res(net.must3r),
                                               must3r_fingerprint(net.must3r))
    cache = caches[batch["cache"]]
    device = next(net.parameters()).device
    return [cache.frame(batch["scene_name"], t, device) for t in batch["frames"]]


def fixed_scene_geometry(config: TrainConfig, net: ThreeAM, n_frames: int, hw: tuple[int, int]) -> list:
    """``model.geometry_input=fixed_scene``: MUSt3R's stream over the first ``n_frames`` frames of the first
    held-out (validation) scene of ``config``'s generated data, resized to the clips' ``hw`` if needed."""
    from threeam.experiments.geometry_check import validation_scenes

    scene = validation_scenes(config, 1, config.data.scene_cache or None)[0]
    if len(scene) < n_frames:
        raise InputError(f"the fixed scene has {len(scene)} frames, a clip needs {n_frames}")
    frames = [scene.frame(t).rgb for t in range(n_frames)]
    if frames[0].shape[:2] != tuple(hw):
        from PIL import Image

        frames = [np.asarray(Image.fromarray(f).resize((hw[1], hw[0]), Image.BILINEAR)) for f in frames]
    return stream_geometry(net, frames)


def gt_points_geometry(batch: Mapping[str, Any], net: ThreeAM, geometry: list | None = None,
                       noise=None) -> list:
    """``model.geometry_input=gt_points``: MUSt3R's outputs over the clip (``geometry``, or a fresh stream
    with frame 0 as reference) with the GT pointmap and rays of the clip's depth and poses
    (`threeam.train.gt_geometry`), moved by ``noise`` (a `PoseNoise`) if given."""
    from threeam.train.gt_geometry import gt_clip_geometry, network_res

    rgb = np.asarray(batch["rgb"])
    if geometry is None:
        geometry = stream_geometry(net, rgb)
    return gt_clip_geometry(geometry, rgb, batch.get("depth"), batch.get("K"), batch.get("cam_to_world"),
                            network_res(net), noise)


def gt_pose_noise(config: TrainConfig):
    """The `PoseNoise` of ``model.gt_points_trans_noise`` / ``gt_points_rot_noise`` (None when both are 0)."""
    from threeam.train.gt_geometry import PoseNoise

    noise = PoseNoise(config.model.gt_points_trans_noise, config.model.gt_points_rot_noise)
    return noise if noise.active else None


def make_step_fn(config: TrainConfig):
    from threeam.train.sam2_task import prompt_plan_for

    loss_fn = SAM2Loss(config.loss)
    caches: dict[str, Any] = {}
    fixed: dict[tuple, list] = {}

    def geometry_of(batch: Mapping[str, Any], net: ThreeAM):
        if config.model.geometry_input == "clip":
            return _geometry(batch, net, caches)
        if config.model.geometry_input == "gt_points":
            return gt_points_geometry(batch, net, _geometry(batch, net, caches), gt_pose_noise(config))
        t, h, w = np.asarray(batch["rgb"]).shape[:3]
        if (t, h, w) not in fixed:
            fixed[(t, h, w)] = fixed_scene_geometry(config, net, t, (h, w))
        return fixed[(t, h, w)]

    def step(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        net = _unwrap(model)
        outputs, targets = clip_forward(net, batch["rgb"], batch["masks"], batch["prompt_kind"], batch["prompt_seed"],
                                        geometry_of(batch, net), config.data.correction_clicks,
                                        prompt_plan_for(config, batch))
        losses = loss_fn(outputs, targets)
        out = {"loss": losses["total"]}
        out.update({f"loss_{k}": v.detach() for k, v in losses.items() if k != "total"})
        return out

    return step


def build_three_am_task(config: TrainConfig, ctx) -> "TrainTask":  # noqa: F821 - TrainTask from recipes
    """Build the 3AM model, its step function, one clip source per configured data source and the
    held-out VOS evaluator (``run.eval_every``)."""
    from threeam.train.clips import ClipDrawer, clip_source, open_source_scenes
    from threeam.train.recipes import TrainTask
    from threeam.train.sam2_task import clip_item, make_vos_evaluator

    model = build_model(config)
    gt = config.model.geometry_input == "gt_points"  # the clips carry depth and poses
    sources = {}
    for k, src in enumerate(config.data.sources):  # weight-0 sources are built too (the engine wants them all)
        drawer = ClipDrawer(open_source_scenes(src, config, k), src, config, seed=config.seed + k)
        kinds, cache = tuple(src.prompt_kinds), src.cache
        sources[src.name] = clip_source(drawer, lambda c, d, s, kinds=kinds, cache=cache: clip_item(c, d, s, kinds, cache,
                                                                                                   geometry=gt))
    if not sources:
        raise InputError("the 3am task needs at least one data source (data.sources)")

    def forward(net, item):
        return clip_forward_full(net, item["rgb"], item["masks"], "mask", item["prompt_seed"])

    evaluate = make_vos_evaluator(config, forward) if config.run.eval_every else None
    return TrainTask(model=model, step_fn=make_step_fn(config), sources=sources, evaluate=evaluate)
