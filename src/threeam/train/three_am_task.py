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
4. `threeam.train.losses.SAM2Loss` on every frame's multimask outputs at S x S against the GT masks.

Data sources (``config.data.sources``): ``synthetic*`` names generate scenes with
`threeam.data.synth` (seeded; ``root`` ignored); ``scannetpp``, ``replica``, ``ase`` and DAVIS/MOSE
style folders are opened from ``root`` with `threeam.data.discovery.open_scenes`. Clip ``i`` of a
source is a pure function of (seed, source, i), so the engine's resume is exact.

Model names: ``model.sam2`` is a SAM 2 preset or ``sam2.1_debug_256`` (the debug model);
``model.must3r`` a MUSt3R preset or ``tiny``; ``model.merger`` a merger preset.
"""
from __future__ import annotations

import zlib
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from threeam.errors import InputError
from threeam.io.video import frame_to_model_input
from threeam.models.must3r.session import Must3rStreamingSession
from threeam.models.sam2.tracking import COND, NON_COND, empty_memory_bank
from threeam.models.three_am import ThreeAM, ThreeAMConfig, debug_sam2_config, get_threeam_config, tiny_must3r_config
from threeam.train.config import TrainConfig
from threeam.train.losses import FrameOutputs, SAM2Loss
from threeam.train.prompts import initial_prompt, simulate_correction
from threeam.train.recipes import OVERFIT_CHECKS, OverfitCheck, TrainTask, register_task
from threeam.train.trainer import IndexedSource



def threeam_config_for(config: TrainConfig) -> ThreeAMConfig:
    """The `ThreeAMConfig` described by ``config.model``."""
    m = config.model
    sam2 = debug_sam2_config() if m.sam2 in ("sam2.1_debug_256", "debug") else m.sam2
    if m.must3r.lower() == "tiny":
        tiny = get_threeam_config("3am_tiny")
        return ThreeAMConfig(sam2, tiny_must3r_config(), m.merger, must3r_res=64, stream=tiny.stream)
    return ThreeAMConfig(sam2, m.must3r.lower(), m.merger)


def build_model(config: TrainConfig) -> ThreeAM:
    model = ThreeAM(threeam_config_for(config))
    m = config.model
    if m.sam2_checkpoint:
        from threeam.models.sam2.checkpoint import load_sam2_weights

        load_sam2_weights(model.sam2, m.sam2_checkpoint)
    if m.must3r_checkpoint:
        from threeam.models.must3r.checkpoint import read_must3r_checkpoint

        ck = read_must3r_checkpoint(m.must3r_checkpoint)
        model.must3r.encoder.load_state_dict(ck["encoder"])
        model.must3r.decoder.load_state_dict(ck["decoder"])
    model.sam2.image_encoder.eval()
    model.must3r.eval()
    return model


# ------------------------------------------------------------------------------------ data

def _open_scenes(source, config: TrainConfig, seed: int) -> list:
    name = source.name.lower()
    if name.startswith("synthetic"):
        from threeam.data.synth import generate_scene, synth_config

        size = config.data.image_size
        n = max(2, config.data.frames_per_clip * 3)
        cfg = synth_config("tiny", n_frames=n, height=min(size, 96), width=min(size, 128))
        return [generate_scene(cfg, seed=seed + k) for k in range(2)]
    if not source.root:
        raise InputError(f"data source {source.name!r} needs data.sources.{source.name}.root (a dataset folder)")
    from threeam.data.discovery import open_scenes

    return list(open_scenes(source.root, None))


def _clip_source(source, scenes: list, config: TrainConfig, seed: int):
    from threeam.data.sampling import ClipSampler, SamplerConfig, load_clip

    cfg = SamplerConfig(n_frames=config.data.frames_per_clip, fov_prob=source.fov_prob, tau=config.data.fov_tau)
    kinds = tuple(source.prompt_kinds)

    def get_item(i: int) -> dict:
        if config.data.num_clips:
            i %= config.data.num_clips
        item_seed = zlib.crc32(f"{seed}:{source.name}:{i}".encode())
        sampler = ClipSampler(scenes, cfg, seed=item_seed)
        clip = sampler.sample()
        data = load_clip(scenes[clip.scene_index], clip)
        rng = np.random.default_rng(item_seed)
        return {"rgb": data.rgb, "masks": data.masks, "prompt_kind": kinds[int(rng.integers(len(kinds)))],
                "prompt_seed": item_seed, "mode": clip.mode, "scene_name": clip.scene_name,
                "frames": list(clip.frames), "cache": source.cache if clip.mode == "fov" else ""}

    return lambda position, ctx: iter(IndexedSource(get_item, 1 << 20, batch_size=None, seed=seed,
                                                    shuffle=False)(position, ctx))


# ------------------------------------------------------------------------------------ step

def _unwrap(model: nn.Module) -> ThreeAM:
    return model.module if hasattr(model, "module") else model


def clip_forward(model: ThreeAM, rgb: np.ndarray, masks: np.ndarray, prompt_kind: str = "mask",
                 prompt_seed: int = 0, geometry: list | None = None,
                 correction_clicks: int = 0) -> tuple[list[FrameOutputs], torch.Tensor]:
    """Run 3AM over one clip with gradients in the trainable parts.

    Args:
        rgb: (T, H, W, 3) uint8 frames; masks: (T, H, W) bool GT masks of the object.
        geometry: MUSt3R outputs of the T frames (e.g. from the feature cache); None runs MUSt3R
            over the clip (a fresh streaming memory, frame 0 as reference).
        correction_clicks: for a click/box prompt, this many corrective clicks on frame 0, each
            from the current error (`threeam.train.prompts.simulate_correction`), the decoder re-run
            with the previous logits as SAM 2 training does; every step's outputs are supervised.
    Returns:
        per-frame `FrameOutputs` (multimask logits at S x S) and the targets (T, 1, S, S).
    """
    sam2 = model.sam2
    device = next(model.parameters()).device
    S = sam2.image_size
    T, H, W = masks.shape
    images = torch.stack([frame_to_model_input(f, S) for f in rgb]).to(device)
    with torch.no_grad():
        backbone = sam2.forward_image(images)
        if geometry is None:
            session = Must3rStreamingSession(model.must3r, model.stream_config)
            geometry = [session.add_frame(f) for f in rgb]
        elif len(geometry) != T:
            raise InputError(f"got MUSt3R outputs for {len(geometry)} frames but the clip has {T}")
    gt = torch.from_numpy(masks).float()[:, None].to(device)
    targets = F.interpolate(gt, size=(S, S), mode="bilinear", align_corners=False) > 0.5
    rng = np.random.default_rng(prompt_seed)
    prompt = initial_prompt(masks[0], prompt_kind, rng=rng)
    point_inputs = mask_inputs = None
    if prompt.mask is not None:
        mask_inputs = targets[:1].float()
    else:
        scale = torch.tensor([S / W, S / H])
        point_inputs = {"point_coords": (prompt.points.points.float() * scale)[None].to(device),
                        "point_labels": prompt.points.labels.to(torch.int32)[None].to(device)}
    memory = empty_memory_bank()
    outputs: list[FrameOutputs] = []
    for t in range(T):
        one = {"backbone_fpn": [f[t:t + 1] for f in backbone["backbone_fpn"]],
               "vision_pos_enc": [p[t:t + 1] for p in backbone["vision_pos_enc"]]}
        features = sam2.prepare_frame_features(model.merge_backbone_output(one, geometry[t], (H, W)))
        first = t == 0
        points = point_inputs if first else None
        out = sam2.track_frame(features, t, memory, T, is_init_cond_frame=first, point_inputs=points,
                               mask_inputs=mask_inputs if first else None, run_mem_encoder=False)
        steps = FrameOutputs(masks=[out.multimask_logits_high_res], ious=[out.ious],
                             object_score_logits=[out.object_score_logits])
        if first and points is not None:
            for _ in range(correction_clicks):
                click = simulate_correction(targets[0, 0].cpu(), (out.pred_masks_high_res[0, 0] > 0).detach().cpu(),
                                            rng=rng)
                points = {"point_coords": torch.cat([points["point_coords"], click.points.float()[None].to(device)], 1),
                          "point_labels": torch.cat([points["point_labels"],
                                                     click.labels.to(torch.int32)[None].to(device)], 1)}
                out = sam2.track_frame(features, t, memory, T, is_init_cond_frame=True, point_inputs=points,
                                       run_mem_encoder=False, prev_sam_mask_logits=out.pred_masks.clamp(-32.0, 32.0))
                steps.masks.append(out.multimask_logits_high_res)
                steps.ious.append(out.ious)
                steps.object_score_logits.append(out.object_score_logits)
        out = sam2.encode_memory(features, out, is_mask_from_pts=points is not None)
        memory[COND if first else NON_COND][t] = out.memory_entry()
        outputs.append(steps)
    return outputs, targets


def make_step_fn(config: TrainConfig):
    loss_fn = SAM2Loss(config.loss)
    caches: dict[str, Any] = {}

    def step(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        net = _unwrap(model)
        geometry = None
        if batch.get("cache"):
            from threeam.train.geometry_cache import GeometryCache

            cache = caches.setdefault(batch["cache"], GeometryCache(batch["cache"]))
            device = next(net.parameters()).device
            geometry = [cache.frame(batch["scene_name"], t, device) for t in batch["frames"]]
        outputs, targets = clip_forward(net, batch["rgb"], batch["masks"], batch["prompt_kind"], batch["prompt_seed"],
                                        geometry, config.data.correction_clicks)
        losses = loss_fn(outputs, targets)
        out = {"loss": losses["total"]}
        out.update({f"loss_{k}": v.detach() for k, v in losses.items() if k != "total"})
        return out

    return step


@register_task("3am")
def threeam_task(config: TrainConfig, ctx) -> TrainTask:
    """Build the 3AM model, its step function and one clip source per configured data source."""
    model = build_model(config)
    sources = {}
    for k, src in enumerate(config.data.sources):  # weight-0 sources are built too (the engine wants them all)
        scenes = _open_scenes(src, config, seed=config.seed + 1000 * k)
        sources[src.name] = _clip_source(src, scenes, config, seed=config.seed + k)
    if not sources:
        raise InputError("the 3am task needs at least one data source (data.sources)")
    return TrainTask(model=model, step_fn=make_step_fn(config), sources=sources)


# a tiny 3AM overfits one generated clip (tests/train/test_trainer.py::test_registered_tasks_overfit)
OVERFIT_CHECKS["3am"] = OverfitCheck(
    preset="tiny-synthetic",
    overrides=("task=3am", "run.max_steps=60", "data.frames_per_clip=3", "data.batch_size=1",
               "data.sources.synthetic-dynamic.weight=0", "data.sources.synthetic-static.fov_prob=0",
               "data.sources.synthetic-static.prompt_kinds=mask", "data.num_clips=1",
               "optim.schedule=constant", "optim.warmup_steps=0", "run.ckpt_every=1000", "run.log_every=50",
               "run.progress=false"),
    max_ratio=0.1,
    window=5,
)
