"""The benchmark run loop: every method on the same object tracks, then the tables, predictions,
overlays of the worst tracks and ``config.json`` in one output folder.

Output folder, written with `threeam.io.atomic.atomic_output_dir` (a hidden temporary folder
beside it, swapped in at the end; a non-empty folder is replaced only with ``overwrite`` and only
if threeam wrote it)::

    results.md / results.csv / results.json   the table: rows = methods; Whole Set and Selected
                                              Subset x (IoU, Tracking Recall, Accuracy); FPS; Mem
    per_sequence.csv / per_sequence.json      one row per method and object track
    predictions/<method>/<scene>.json         predicted masks (RLE JSON, threeam.io.masks)
    overlays/<method>/<scene>__<obj>.mp4      the N worst tracks by IoU (green: correct, red:
                                              predicted but not GT, blue: GT missed)
    config.json                               what was run
    .threeam-output.json                      the marker of `threeam.io.atomic` (lists every file)

FPS = frames processed / tracking seconds (see `threeam.eval.protocol`). Mem = peak CUDA memory
allocated (MiB) on GPU; on CPU the peak resident-set-size increase over the run's start (MiB,
sampled every 5 ms, labelled "RSS delta"); see `threeam.eval.memory`.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from threeam.errors import InputError
from threeam.eval.memory import PeakMemory
from threeam.eval.methods import METHODS, EvalContext, resolve_methods
from threeam.eval.metrics import Averaging
from threeam.eval.overlays import OverlayCandidate, WorstTracks, safe_stem
from threeam.eval.protocol import load_sequence, score_object, track_objects
from threeam.eval.records import EvalResults, MethodResult, TrackRecord
from threeam.eval.tables import json_safe, write_tables
from threeam.io.atomic import atomic_output_dir, atomic_write_text, check_output_dir

__all__ = ["EvalConfig", "run_evaluation"]


@dataclass(frozen=True)
class EvalConfig:
    """Runner settings.

    Attributes:
        averaging: ``per_track`` (default) or ``pooled`` (see `threeam.eval.metrics`).
        max_sequences: evaluate at most this many object tracks (scenes in order; None: all).
        worst_overlays: overlay videos of the N worst tracks (by IoU) per method (0: none).
        save_predictions: write the predicted masks (RLE JSON).
        min_mask_pixels, l_min, min_segments: evaluation-sequence builder thresholds
            (`threeam.data.eval_sequences.EvalSequenceConfig`).
        exclude_cond_frame: leave each track's conditioning (prompt) frame out of its scores
            (the paper does not say; default False: every frame is scored).
        offload_video_to_cpu: keep each video's normalised frames on the CPU (long videos on GPU).
        overwrite: replace an existing output folder (only one threeam wrote, see `threeam.io.atomic`).
        progress: show a progress bar.
    """

    averaging: str = "per_track"
    max_sequences: int | None = None
    worst_overlays: int = 3
    save_predictions: bool = True
    min_mask_pixels: int = 100
    l_min: int = 5
    min_segments: int = 2
    exclude_cond_frame: bool = False
    offload_video_to_cpu: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        Averaging.parse(self.averaging)
        if self.max_sequences is not None and self.max_sequences < 1:
            raise InputError(f"max_sequences must be >= 1, got {self.max_sequences}")
        if self.worst_overlays < 0:
            raise InputError(f"worst_overlays must be >= 0, got {self.worst_overlays}")


# ----------------------------------------------------------------------------------------- the loop

def _run_method(name: str, predictor, result: MethodResult, scene, seqs: list, frames: np.ndarray,
                ids: np.ndarray, unknown: Sequence[int], tmp: Path, worst: WorstTracks, device: str,
                config: EvalConfig) -> None:
    """Track every object of ``seqs`` in one scene with one method; score, record, save."""
    prompts = {s.object_id: (s.cond_frame, ids[s.cond_frame] == s.object_id) for s in seqs}
    with PeakMemory(device) as pm:
        run = track_objects(predictor, frames, prompts, offload_video_to_cpu=config.offload_video_to_cpu)
    result.add_run(run.seconds, run.frames, pm.mib, pm.kind)
    for s in seqs:
        skip = list(unknown) + ([s.cond_frame] if config.exclude_cond_frame else [])
        scores = score_object(run.masks[s.object_id], ids == s.object_id, name=f"{scene.name}/{s.object_id}",
                              unannotated=skip)
        worst.add(OverlayCandidate(name, len(result.records), scene.name, s.object_id, scores.iou,
                                   run.masks[s.object_id]))
        result.records.append(TrackRecord(name, scene.name, s.object_id, bool(s.selected), s.cond_frame, scores))
    if config.save_predictions:
        from threeam.io.masks import write_rle_json

        tracks = {t: {oid: m[t] for oid, m in run.masks.items()} for t in range(frames.shape[0])}
        write_rle_json(tmp / "predictions" / name / f"{safe_stem(scene.name)}.json", tracks)


def _run_scenes(scenes: list, predictors: dict[str, Any], results: dict[str, MethodResult], worst: WorstTracks,
                tmp: Path, device: str, config: EvalConfig) -> int:
    """Run every method on every scene's object tracks (up to ``config.max_sequences``); returns the track count."""
    from tqdm import tqdm

    from threeam.data.eval_sequences import EvalSequenceConfig, build_eval_sequences

    seq_cfg = EvalSequenceConfig(min_mask_pixels=config.min_mask_pixels, l_min=config.l_min,
                                 min_segments=config.min_segments)
    budget = config.max_sequences
    bar = tqdm(total=len(scenes) * len(predictors), desc="eval", unit="run", disable=not config.progress)
    n_tracks = 0
    for scene in scenes:
        if budget is not None and n_tracks >= budget:
            break
        seqs = build_eval_sequences(scene, seq_cfg)
        if budget is not None:
            seqs = seqs[:budget - n_tracks]
        if not seqs:
            bar.update(len(predictors))
            continue
        n_tracks += len(seqs)
        frames, ids, unknown = load_sequence(scene)
        for name, predictor in predictors.items():
            bar.set_postfix_str(f"{scene.name} {name}")
            _run_method(name, predictor, results[name], scene, seqs, frames, ids, unknown, tmp, worst, device,
                        config)
            bar.update(1)
        worst.end_scene(frames, ids)  # keep frames/GT only for tracks that may end among the worst
    bar.close()
    return n_tracks


def _config_doc(names: list[str], averaging: str, config: EvalConfig, context: EvalContext, scenes: list) -> dict:
    preset = context.model_preset
    if not isinstance(preset, str):
        preset = getattr(preset, "to_dict", lambda: str(context.model_preset))()
    return {"methods": names, "averaging": averaging, "config": asdict(config), "model_preset": preset,
            "checkpoint": None if context.checkpoint is None else str(context.checkpoint),
            "device": context.device, "random_weights": context.random_weights, "scenes": [s.name for s in scenes]}


def run_evaluation(scenes: Iterable, methods: str | Sequence[str], out_dir: str | os.PathLike,
                   context: EvalContext | None = None, config: EvalConfig = EvalConfig()) -> EvalResults:
    """Run every method on the same object tracks and write the tables (see the module docstring).

    Args:
        scenes: `threeam.data.types.Scene` objects (e.g. from `threeam.data.discovery.open_scenes`).
        methods: method names (`threeam.eval.methods.METHODS`).
        out_dir: output folder: missing, empty, or (with ``config.overwrite``) a folder threeam wrote.
        context: model options for the factories (default: `EvalContext()`).
        config: :class:`EvalConfig`.

    Returns:
        :class:`~threeam.eval.records.EvalResults` (the files are already written).
    """
    names = resolve_methods(methods)
    context = context or EvalContext()
    averaging = Averaging.parse(config.averaging).value
    out_dir = check_output_dir(out_dir, overwrite=config.overwrite)  # refuse before any model is built
    predictors = {n: METHODS[n].build(context) for n in names}  # fail early (e.g. 3AM not available)
    results = {n: MethodResult(n) for n in names}
    with atomic_output_dir(out_dir, overwrite=config.overwrite, kind="eval") as tmp:
        worst = WorstTracks(config.worst_overlays)
        scene_list = list(scenes)
        n_tracks = _run_scenes(scene_list, predictors, results, worst, tmp, context.device, config)
        if n_tracks == 0:
            raise InputError("no object track to evaluate: no object is visible with at least "
                             f"{config.min_mask_pixels} pixels in any frame of the given scenes")
        for r in results.values():
            r.finish(averaging)
        write_tables(tmp, results, averaging)
        worst.write(tmp / "overlays")
        doc = _config_doc(names, averaging, config, context, scene_list)
        atomic_write_text(tmp / "config.json", json.dumps(json_safe(doc), indent=1) + "\n")
    return EvalResults(results, out_dir, averaging)
