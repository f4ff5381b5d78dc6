"""Benchmark runner: every method on the same object tracks, the paper's table, per-track results,
prediction files and overlays of the worst tracks.

Methods are registered factories (:func:`register_method`): ``build(context) -> VideoPredictor``.
Built in: ``sam2`` (plain SAM 2), ``sam2long`` and ``dam4sam`` (memory policies on SAM 2), and
``3am``, ``3am+sam2long``, ``3am+dam4sam`` (the paper's Table 7 combinations), built by
``threeam.predictor.build_3am_predictor(context)`` (a 3AM checkpoint in
``context.extra["3am_checkpoint"]``, or random weights for smoke tests). Anyone can add methods with :func:`register_method`.

Output folder (written under a temporary name and renamed at the end; an existing folder is
never replaced unless ``overwrite``)::

    results.md / results.csv / results.json   the table: rows = methods; Whole Set and Selected
                                              Subset x (IoU, Tracking Recall, Accuracy); FPS; Mem
    per_sequence.csv / per_sequence.json      one row per method and object track
    predictions/<method>/<scene>.json         predicted masks (RLE JSON, threeam.io.masks)
    overlays/<method>/<scene>__<obj>.mp4      the N worst tracks by IoU (green: correct, red:
                                              predicted but not GT, blue: GT missed)
    config.json                               what was run

FPS = frames processed / tracking seconds (see `threeam.eval.protocol`). Mem = peak CUDA memory
allocated (MiB) on GPU; on CPU the peak resident-set-size increase over the run's start (MiB,
sampled every 5 ms, labelled "RSS delta").
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from threeam.errors import InputError
from threeam.eval.metrics import Averaging, PaperScores, TrackScores, aggregate
from threeam.eval.protocol import load_sequence, score_object, track_objects
from threeam.io.atomic import atomic_write_text

__all__ = ["EvalContext", "MethodSpec", "METHODS", "register_method", "resolve_methods", "EvalConfig",
           "MethodResult", "EvalResults", "run_evaluation", "PeakMemory", "TABLE_COLUMNS", "table_rows",
           "render_markdown", "open_scenes", "DATA_FORMATS"]


# ----------------------------------------------------------------------------------------- methods

@dataclass
class EvalContext:
    """What method factories get.

    Attributes:
        model_preset: SAM 2 preset name (e.g. ``sam2.1_hiera_t``) or a `SAM2Config`.
        checkpoint: SAM 2 checkpoint (path or hub id); None only with ``random_weights``.
        device: ``cpu`` or ``cuda``.
        random_weights: build with deterministic random weights (``torch.manual_seed(seed)``),
            for tests and demos; no checkpoint is read.
        seed: seed of the random weights.
        extra: free-form options for other factories (e.g. a 3AM checkpoint).
    """

    model_preset: Any = "sam2.1_hiera_t"
    checkpoint: Any = None
    device: str = "cpu"
    random_weights: bool = False
    seed: int = 0
    extra: dict = field(default_factory=dict)
    _model: Any = field(default=None, repr=False)

    def sam2_model(self):
        """The SAM 2 model (built once, shared by the SAM 2 based methods)."""
        if self._model is None:
            from threeam.models.sam2.build import build_sam2
            from threeam.models.sam2.config import VideoPredictorConfig

            if self.checkpoint is None and not self.random_weights:
                raise InputError("no SAM 2 checkpoint given: pass --checkpoint PATH_OR_HUB_ID "
                                 "(or --random-weights for a smoke test)")
            if self.random_weights:
                torch.manual_seed(self.seed)
            self._model = build_sam2(self.model_preset, checkpoint=None if self.random_weights else self.checkpoint,
                                     device=self.device, video_config=VideoPredictorConfig())
        return self._model

    def sam2_predictor(self):
        """A plain SAM 2 `VideoPredictor` (official video-predictor defaults) on :meth:`sam2_model`."""
        from threeam.models.sam2.config import VideoPredictorConfig
        from threeam.predictor.video_predictor import VideoPredictor

        return VideoPredictor(self.sam2_model(), VideoPredictorConfig(), progress=False)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: ``build(context)`` returns a `VideoPredictor` (or subclass)."""

    name: str
    build: Callable[[EvalContext], Any]
    description: str = ""


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, build: Callable[[EvalContext], Any], description: str = "",
                    replace: bool = False) -> MethodSpec:
    """Register a method factory under `name` (lower case; ``replace=True`` to redefine one)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_+.\-]*", name or ""):
        raise InputError(f"method names are lower-case letters, digits and _+.-, got {name!r}")
    if name in METHODS and not replace:
        raise InputError(f"method {name!r} is already registered (pass replace=True)")
    spec = MethodSpec(name, build, description)
    METHODS[name] = spec
    return spec


def _sam2(ctx: EvalContext):
    return ctx.sam2_predictor()


def _with_policy(base: Callable[[EvalContext], Any], policy: str) -> Callable[[EvalContext], Any]:
    def build(ctx: EvalContext):
        from threeam.eval.baselines import DAM4SAMPolicy, SAM2LongPolicy, attach_policy

        preset = ctx.extra.get(f"{policy}_preset", "default")
        pol = SAM2LongPolicy(preset) if policy == "sam2long" else DAM4SAMPolicy(preset)
        return attach_policy(base(ctx), pol)
    return build


def _threeam(ctx: EvalContext):
    import threeam.predictor as predictor_pkg

    builder = getattr(predictor_pkg, "build_3am_predictor", None)
    if builder is None:
        raise InputError("the 3AM model is not available in this build: threeam.predictor offers no "
                         "build_3am_predictor yet (3AM also needs trained Feature Merger weights); "
                         "run the SAM 2 based methods (sam2, sam2long, dam4sam) meanwhile")
    return builder(ctx)


register_method("sam2", _sam2, "SAM 2 video predictor (official defaults)")
register_method("sam2long", _with_policy(_sam2, "sam2long"), "SAM2Long memory tree on SAM 2 (3 pathways)")
register_method("dam4sam", _with_policy(_sam2, "dam4sam"), "DAM4SAM RAM + DRM memory on SAM 2")
register_method("3am", _threeam, "3AM: SAM 2 + MUSt3R features (Feature Merger)")
register_method("3am+sam2long", _with_policy(_threeam, "sam2long"), "SAM2Long memory tree on 3AM")
register_method("3am+dam4sam", _with_policy(_threeam, "dam4sam"), "DAM4SAM memory on 3AM")


def resolve_methods(names: str | Sequence[str]) -> list[str]:
    """Parse ``"sam2,sam2long"`` (or a list); unknown or repeated names are an `InputError`."""
    items = [n.strip().lower() for n in (names.split(",") if isinstance(names, str) else names)]
    items = [n for n in items if n]
    if not items:
        raise InputError(f"no methods given; registered methods: {', '.join(METHODS)}")
    unknown = [n for n in items if n not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; registered methods: {', '.join(METHODS)}")
    if len(set(items)) != len(items):
        raise InputError(f"a method is listed twice in {items}")
    return items


# ----------------------------------------------------------------------------------------- memory

def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of a block: CUDA max allocated on a CUDA device, else peak RSS increase.

    Use as a context manager; afterwards ``mib`` holds the value and ``kind`` says which
    (``"cuda_max_allocated"`` or ``"rss_delta"``; ``"unavailable"`` and nan if neither works).
    """

    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.mib = math.nan
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "rss_delta"
        self._stop = threading.Event()
        self._peak = 0
        self._base = 0

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            r = _rss_bytes()
            if r is not None and r > self._peak:
                self._peak = r

    def __enter__(self) -> "PeakMemory":
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        base = _rss_bytes()
        if base is None:
            self.kind = "unavailable"
            return self
        self._base = self._peak = base
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.kind == "rss_delta":
            self._stop.set()
            self._thread.join()
            r = _rss_bytes()
            if r is not None:
                self._peak = max(self._peak, r)
            self.mib = (self._peak - self._base) / 2**20


# ----------------------------------------------------------------------------------------- running

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
        overwrite: replace an existing output folder.
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


@dataclass
class MethodResult:
    """One method's results: per-track scores, the two subsets' paper scores, speed and memory."""

    name: str
    tracks: list[TrackScores] = field(default_factory=list)
    selected: list[bool] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0
    mem_mib: float = math.nan
    mem_kind: str = ""
    whole: PaperScores | None = None
    subset: PaperScores | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.nan


@dataclass
class EvalResults:
    methods: dict[str, MethodResult]
    out_dir: Path
    averaging: str


TABLE_COLUMNS = ["method", "whole_iou", "whole_tracking_recall", "whole_accuracy", "whole_tracks",
                 "selected_iou", "selected_tracking_recall", "selected_accuracy", "selected_tracks",
                 "fps", "mem_mib", "mem_kind"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "scene"


def _prepare_out(out_dir: Path, overwrite: bool) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(f"output path {out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise InputError(f"output folder {out_dir} already exists and is not empty; pass --overwrite "
                             "to replace it or choose another --out")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))


def _finish_out(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fmt(v: float, pct: bool = True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.2f}"


def table_rows(results: dict[str, MethodResult]) -> list[dict]:
    """One dict per method with :data:`TABLE_COLUMNS` (scores as fractions in [0, 1])."""
    rows = []
    for name, r in results.items():
        rows.append({"method": name,
                     "whole_iou": r.whole.iou, "whole_tracking_recall": r.whole.tracking_recall,
                     "whole_accuracy": r.whole.accuracy, "whole_tracks": r.whole.n_tracks,
                     "selected_iou": r.subset.iou, "selected_tracking_recall": r.subset.tracking_recall,
                     "selected_accuracy": r.subset.accuracy, "selected_tracks": r.subset.n_tracks,
                     "fps": r.fps, "mem_mib": r.mem_mib, "mem_kind": r.mem_kind})
    return rows


def render_markdown(results: dict[str, MethodResult], averaging: str) -> str:
    """The paper's table layout (its Table 2 columns) in Markdown (scores in %)."""
    kinds = {r.mem_kind for r in results.values()}
    mem_label = "Mem (MiB, CUDA max allocated)" if kinds == {"cuda_max_allocated"} else \
        "Mem (MiB, peak RSS delta, CPU)" if kinds == {"rss_delta"} else "Mem (MiB)"
    lines = [f"| Method | FPS | {mem_label} | Whole Set IoU | Whole Set Tracking Recall | Whole Set Accuracy | "
             "Selected Subset IoU | Selected Subset Tracking Recall | Selected Subset Accuracy |",
             "|" + "---|" * 9]
    for row in table_rows(results):
        lines.append(f"| {row['method']} | {_fmt(row['fps'], False)} | {_fmt(row['mem_mib'], False)} | "
                     f"{_fmt(row['whole_iou'])} | {_fmt(row['whole_tracking_recall'])} | "
                     f"{_fmt(row['whole_accuracy'])} | {_fmt(row['selected_iou'])} | "
                     f"{_fmt(row['selected_tracking_recall'])} | {_fmt(row['selected_accuracy'])} |")
    any_r = next(iter(results.values()))
    lines += ["", f"Whole Set: {any_r.whole.n_tracks} object tracks; Selected Subset: {any_r.subset.n_tracks} "
              f"(objects that leave the view and come back). Scores in %, averaging: {averaging}. "
              "FPS: frames tracked per second (prompting + propagation, no I/O)."]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in columns})
    return buf.getvalue()


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return _json_safe(x.item())
    return x


def _overlay(path: Path, frames: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> None:
    from threeam.io.overlay import write_overlay_video

    ids = np.zeros(pred.shape, dtype=np.int32)
    ids[pred & gt] = 1
    ids[pred & ~gt] = 2
    ids[~pred & gt] = 3
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1], palette[2], palette[3] = (0, 200, 0), (230, 30, 30), (40, 90, 255)
    write_overlay_video(path, frames, ids, fps=10.0, palette=palette)


def run_evaluation(scenes: Iterable, methods: str | Sequence[str], out_dir: str | os.PathLike,
                   context: EvalContext | None = None, config: EvalConfig = EvalConfig()) -> EvalResults:
    """Run every method on the same object tracks and write the tables (see the module docstring).

    Args:
        scenes: `threeam.data.types.Scene` objects (ScanNet++, Replica, DAVIS readers, synthetic).
        methods: method names (registered with :func:`register_method`).
        out_dir: output folder (must not exist or be empty, unless ``config.overwrite``).
        context: model options for the factories (default: `EvalContext()`).
        config: :class:`EvalConfig`.

    Returns:
        :class:`EvalResults` (the files are already written).
    """
    from tqdm import tqdm

    from threeam.data.eval_sequences import EvalSequenceConfig, build_eval_sequences

    names = resolve_methods(methods)
    context = context or EvalContext()
    averaging = Averaging.parse(config.averaging).value
    seq_cfg = EvalSequenceConfig(min_mask_pixels=config.min_mask_pixels, l_min=config.l_min,
                                 min_segments=config.min_segments)
    out_dir = Path(out_dir)
    predictors = {n: METHODS[n].build(context) for n in names}  # fail early (e.g. 3AM not available)
    tmp = _prepare_out(out_dir, config.overwrite)
    try:
        results = {n: MethodResult(n) for n in names}
        mem = {n: [] for n in names}
        overlay_data: dict[tuple[str, int], tuple] = {}
        budget = config.max_sequences
        scene_list = list(scenes)
        bar = tqdm(total=len(scene_list) * len(names), desc="eval", unit="run", disable=not config.progress)
        n_tracks = 0
        for scene in scene_list:
            if budget is not None and n_tracks >= budget:
                break
            seqs = build_eval_sequences(scene, seq_cfg)
            if budget is not None:
                seqs = seqs[:budget - n_tracks]
            if not seqs:
                bar.update(len(names))
                continue
            n_tracks += len(seqs)
            frames, ids, unknown = load_sequence(scene)
            prompts = {s.object_id: (s.cond_frame, ids[s.cond_frame] == s.object_id) for s in seqs}
            for n in names:
                bar.set_postfix_str(f"{scene.name} {n}")
                with PeakMemory(context.device) as pm:
                    run = track_objects(predictors[n], frames, prompts,
                                        offload_video_to_cpu=config.offload_video_to_cpu)
                mem[n].append(pm)
                r = results[n]
                r.seconds += run.seconds
                r.frames += run.frames
                for s in seqs:
                    gt = ids == s.object_id
                    skip = list(unknown) + ([s.cond_frame] if config.exclude_cond_frame else [])
                    ts = score_object(run.masks[s.object_id], gt, name=f"{scene.name}/{s.object_id}",
                                      unannotated=skip)
                    r.tracks.append(ts)
                    r.selected.append(bool(s.selected))
                    r.rows.append({"method": n, "scene": scene.name, "object_id": s.object_id,
                                   "selected": bool(s.selected), "cond_frame": s.cond_frame,
                                   "n_frames": ts.n_frames, "n_present": ts.n_present, "iou": ts.iou,
                                   "tracking_recall": ts.tracking_recall, "accuracy": ts.accuracy,
                                   "false_positive_rate": ts.false_positive_rate})
                if config.save_predictions:
                    from threeam.io.masks import write_rle_json

                    tracks = {t: {oid: m[t] for oid, m in run.masks.items()} for t in range(frames.shape[0])}
                    write_rle_json(tmp / "predictions" / n / f"{_safe(scene.name)}.json", tracks)
                if config.worst_overlays:
                    for i, s in enumerate(seqs):
                        idx = len(r.tracks) - len(seqs) + i
                        overlay_data[(n, idx)] = (scene.name, s.object_id, run.masks[s.object_id], None)
                bar.update(1)
            if config.worst_overlays:
                # keep frames/GT only for tracks that may end among the worst
                for (n, idx), v in list(overlay_data.items()):
                    if v[3] is None:
                        overlay_data[(n, idx)] = (v[0], v[1], v[2], (frames, ids == v[1]))
                _prune_worst(overlay_data, results, config.worst_overlays)
        bar.close()
        if n_tracks == 0:
            raise InputError("no object track to evaluate: no object is visible with at least "
                             f"{config.min_mask_pixels} pixels in any frame of the given scenes")

        for n, r in results.items():
            r.whole = aggregate(r.tracks, averaging)
            r.subset = aggregate([t for t, s in zip(r.tracks, r.selected) if s], averaging)
            pms = mem[n]
            r.mem_kind = pms[0].kind if pms else ""
            vals = [p.mib for p in pms if not math.isnan(p.mib)]
            r.mem_mib = max(vals) if vals else math.nan
        _write_tables(tmp, results, averaging)
        _write_overlays(tmp, overlay_data, results, config.worst_overlays)
        cfg_doc = {"methods": names, "averaging": averaging, "config": asdict(config),
                   "model_preset": context.model_preset if isinstance(context.model_preset, str)
                   else getattr(context.model_preset, "to_dict", lambda: str(context.model_preset))(), "checkpoint": None if context.checkpoint is None
                   else str(context.checkpoint), "device": context.device, "random_weights": context.random_weights,
                   "scenes": [s.name for s in scene_list]}
        atomic_write_text(tmp / "config.json", json.dumps(_json_safe(cfg_doc), indent=1) + "\n")
        _finish_out(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return EvalResults(results, out_dir, averaging)


def _prune_worst(overlay_data: dict, results: dict[str, MethodResult], n_keep: int) -> None:
    for n, r in results.items():
        keys = [k for k in overlay_data if k[0] == n]
        keys.sort(key=lambda k: (np.nan_to_num(r.tracks[k[1]].iou, nan=2.0), k[1]))
        for k in keys[n_keep:]:
            del overlay_data[k]


def _write_tables(tmp: Path, results: dict[str, MethodResult], averaging: str) -> None:
    rows = table_rows(results)
    atomic_write_text(tmp / "results.md", render_markdown(results, averaging))
    atomic_write_text(tmp / "results.csv", _csv(rows, TABLE_COLUMNS))
    doc = {"averaging": averaging, "columns": TABLE_COLUMNS, "rows": rows,
           "methods": {n: {"whole_set": r.whole.to_dict(), "selected_subset": r.subset.to_dict(), "fps": r.fps,
                           "frames": r.frames, "seconds": r.seconds, "mem_mib": r.mem_mib, "mem_kind": r.mem_kind}
                       for n, r in results.items()}}
    atomic_write_text(tmp / "results.json", json.dumps(_json_safe(doc), indent=1) + "\n")
    per = [row for r in results.values() for row in r.rows]
    cols = ["method", "scene", "object_id", "selected", "cond_frame", "n_frames", "n_present", "iou",
            "tracking_recall", "accuracy", "false_positive_rate"]
    atomic_write_text(tmp / "per_sequence.csv", _csv(per, cols))
    atomic_write_text(tmp / "per_sequence.json", json.dumps(_json_safe(per), indent=1) + "\n")


def _write_overlays(tmp: Path, overlay_data: dict, results: dict[str, MethodResult], n_keep: int) -> None:
    if not n_keep:
        return
    _prune_worst(overlay_data, results, n_keep)
    for (n, idx), (scene, oid, pred, fg) in sorted(overlay_data.items()):
        frames, gt = fg
        _overlay(tmp / "overlays" / n / f"{_safe(scene)}__{oid}.mp4", frames, pred, gt)


# ----------------------------------------------------------------------------------------- data

DATA_FORMATS = ("scannetpp", "replica", "davis", "synthetic")


def _replica_dirs(root: Path) -> list[Path]:
    """Replica sequence folders (``rgb/`` + ``traj_w_c.txt``): `root` itself or up to two levels below."""
    found = []
    for pattern in ("", "*", "*/*"):
        for d in sorted(root.glob(pattern)) if pattern else [root]:
            if (d / "rgb").is_dir() and (d / "traj_w_c.txt").is_file():
                found.append(d)
        if found:
            return found
    return found


def open_scenes(data: str, fmt: str | None = None, *, split: str | None = None, synth_preset: str = "tiny",
                synth_frames: int | None = None, seed: int = 0, device: str = "cpu", stride: int = 1) -> list:
    """The scenes of a dataset as `threeam.data.types.Scene` objects.

    Args:
        data: ``synthetic:N`` (N generated scenes, seeds ``seed .. seed+N-1``), or a path: a
            ScanNet++ root (``data/<scene>``) or one scene folder, a Replica sequence folder (with
            ``rgb/`` and ``traj_w_c.txt``) or a folder holding them up to two levels down
            (``room0/Sequence_1``), a DAVIS root (``JPEGImages/``, ``Annotations/``).
        fmt: ``scannetpp``, ``replica``, ``davis`` or ``synthetic``; guessed from the folder when None.
        split: ScanNet++ / DAVIS split file name.
        synth_preset, synth_frames: synthetic generator preset and frames per scene.
        stride: keep every ``stride``-th frame (ScanNet++ and Replica readers).
    """
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    if fmt is not None and fmt not in DATA_FORMATS:
        raise InputError(f"--format must be one of {', '.join(DATA_FORMATS)}, got {fmt!r}")
    if data.startswith("synthetic"):
        m = re.fullmatch(r"synthetic(?::(\d+))?", data)
        if not m:
            raise InputError(f"use --data synthetic:N (N scenes), got {data!r}")
        if fmt not in (None, "synthetic"):
            raise InputError(f"--data {data} generates synthetic scenes; --format {fmt} does not apply")
        from threeam.data.synth import generate_scene, synth_config

        n = int(m.group(1) or 1)
        if n < 1:
            raise InputError("synthetic:N needs N >= 1")
        over = {"device": device}
        if synth_frames is not None:
            over["n_frames"] = synth_frames
        cfg = synth_config(synth_preset, **over)
        return [generate_scene(cfg, seed=seed + k, name=f"synth_{seed + k:05d}") for k in range(n)]
    root = Path(data)
    if not root.exists():
        raise InputError(f"--data {data}: no such file or folder (or use synthetic:N)")
    if fmt is None:
        if (root / "JPEGImages").is_dir():
            fmt = "davis"
        elif _replica_dirs(root):
            fmt = "replica"
        elif (root / "data").is_dir() or (root / "iphone").is_dir() or (root / "dslr").is_dir():
            fmt = "scannetpp"
        else:
            raise InputError(f"cannot tell the dataset format of {root}; pass --format "
                             f"({', '.join(DATA_FORMATS[:3])})")
    if fmt == "synthetic":
        raise InputError("--format synthetic goes with --data synthetic:N")
    if fmt == "davis":
        from threeam.data.davis import DavisSequence, list_davis_sequences

        return [DavisSequence(root, s) for s in list_davis_sequences(root, split=split)]
    if fmt == "replica":
        from threeam.data.replica import ReplicaScene

        seqs = _replica_dirs(root)
        if not seqs:
            raise InputError(f"no Replica sequence (folder with rgb/ and traj_w_c.txt) in {root} or two levels below")
        return [ReplicaScene(p, stride=stride) for p in seqs]
    from threeam.data.scannetpp import ScanNetPPScene, list_scannetpp_scenes

    if (root / "data").is_dir():
        return [ScanNetPPScene(root, s, stride=stride, device=device)
                for s in list_scannetpp_scenes(root, split=split)]
    return [ScanNetPPScene(root, stride=stride, device=device)]
