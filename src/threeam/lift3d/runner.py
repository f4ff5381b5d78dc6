"""Run the lifting over scenes and write everything a person or the benchmark needs.

Output folder::

    config.json                      # the run and lifting options (a resumed run must match)
    submission/<scene>.txt           # the benchmark's submission layout (threeam.eval.instance_ap)
    submission/pred_mask/<scene>_<k>.txt
    gt/<scene>.txt                   # the per-vertex GT used for the scores (when the scene has GT)
    scenes/<scene>/instances.ply     # the mesh coloured by instance (property "instance", 0 = none)
    scenes/<scene>/views/*.png       # rendered views of it (top + oblique)
    scenes/<scene>/instances.json    # per instance: vertices, confidence and its terms, fragments
    scenes/<scene>/result.json       # counts, per-stage seconds, AP / AP50 / AP25; written last
    results.md / results.csv / results.json   # per scene and overall (pooled) AP, time per stage

A scene whose ``result.json`` exists is finished and skipped by a later run with the same
options (resumable per scene); the overall tables are rebuilt from every finished scene.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from threeam.errors import InputError
from threeam.io.atomic import atomic_write_text
from threeam.lift3d.config import LiftConfig
from threeam.lift3d.pipeline import STAGES, LiftResult, lift_scene
from threeam.lift3d.scene import LiftScene

__all__ = ["RunOptions", "SceneJob", "RunSummary", "run_lift3d", "render_tables"]

EXTRA_STAGES = ("load", "geometry", "write", "render", "eval")
ALL_STAGES = ("load", "geometry") + STAGES + ("write", "render", "eval")


@dataclass(frozen=True)
class RunOptions:
    """What `run_lift3d` does besides the lifting itself.

    Attributes:
        model: ``sam2`` or ``3am`` (the tracker and the mask generator's SAM 2); ``gt`` with GT masks.
        depth: ``sensor`` or ``must3r`` (RGB-only: MUSt3R's depth and poses, aligned to the scan).
        gt_masks: GT 2D masks in place of the mask generator and the tracker (generated scenes).
        benchmark: the AP variant (`threeam.eval.instance_ap.BENCHMARKS`, default ``esam``).
        label_id: class id written into the submission: 39, an instance class of both ScanNet v2
            (nyu40 "otherfurniture") and ScanNet200, so that no evaluator's class filter drops a
            mask; the class-agnostic benchmarks ignore it.
        views: rendered PNG views per scene (0: none; 1 top view, more add oblique views).
        view_size: ``(H, W)`` of the views.
        ply: write the instance-coloured PLY.
        must3r_min_conf: MUSt3R confidence below which a pixel has no depth (RGB-only mode).
    """

    model: str = "sam2"
    depth: str = "sensor"
    gt_masks: bool = False
    benchmark: str = "esam"
    label_id: int = 39
    views: int = 4
    view_size: tuple = (480, 640)
    ply: bool = True
    must3r_min_conf: float = 1.5

    def __post_init__(self) -> None:
        if self.model not in ("sam2", "3am", "gt"):
            raise InputError(f"model must be sam2 or 3am, got {self.model!r}")
        if self.depth not in ("sensor", "must3r"):
            raise InputError(f"depth must be sensor or must3r, got {self.depth!r}")
        if self.views < 0:
            raise InputError(f"views must be >= 0, got {self.views}")
        from threeam.eval.instance_ap import BENCHMARKS

        if self.benchmark not in BENCHMARKS:
            raise InputError(f"benchmark must be one of {', '.join(BENCHMARKS)}, got {self.benchmark!r}")


@dataclass
class SceneJob:
    """One scene to run: its id and a function that opens it (called only if it is not finished)."""

    name: str
    open: Callable[[], LiftScene]


@dataclass
class RunSummary:
    """What a run produced (the files are already written)."""

    out_dir: Path
    scenes: list = field(default_factory=list)  # per-scene result dicts, in job order
    skipped: list = field(default_factory=list)  # scenes finished by an earlier run
    overall: dict = field(default_factory=dict)  # pooled ap / ap50 / ap25 and summed stage times


def _config_record(lift: LiftConfig, options: RunOptions, extra: dict) -> dict:
    rec = {"lift": lift.to_dict(), "run": json.loads(json.dumps(asdict(options))), "models": extra}
    rec["hash"] = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:16]
    return rec


def _check_out(out: Path, record: dict, overwrite: bool) -> None:
    cfg = out / "config.json"
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} exists and is not a folder")
    if cfg.is_file():
        try:
            old = json.loads(cfg.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("hash") != record["hash"] and not overwrite:
            raise InputError(f"{out} holds results of different options (config.json differs); "
                             "pass --overwrite to start over or choose another --out")
        if old.get("hash") != record["hash"] and overwrite:
            import shutil

            for sub in ("scenes", "submission", "gt"):
                shutil.rmtree(out / sub, ignore_errors=True)
    elif out.is_dir() and any(out.iterdir()):
        # --overwrite only ever replaces what a lift3d run wrote (its config.json proves it)
        raise InputError(f"output folder {out} is not empty and was not written by threeam lift3d (no config.json "
                         "of a lift3d run); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg, json.dumps(record, indent=1) + "\n")


def _safe_float(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _scene_ap(gt_ids: Optional[np.ndarray], result: LiftResult, options: RunOptions) -> dict:
    from threeam.eval.instance_ap import evaluate_instances

    if gt_ids is None:
        return {"ap": None, "ap50": None, "ap25": None}
    pred = (result.masks(), np.full(len(result.instances), options.label_id, dtype=np.int64), result.confidences)
    r = evaluate_instances({result.scene: gt_ids}, {result.scene: pred}, benchmark=options.benchmark)
    return {"ap": _safe_float(r.ap), "ap50": _safe_float(r.ap50), "ap25": _safe_float(r.ap25)}


def _run_one(job: SceneJob, out: Path, lift: LiftConfig, options: RunOptions, make_sources: Callable,
             geometry: Optional[Callable], progress: Optional[Callable]) -> dict:
    from threeam.eval.instance_ap import write_gt_file, write_submission

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    scene = job.open()
    times["load"] = time.perf_counter() - t0
    info: dict = {}
    t0 = time.perf_counter()
    if geometry is not None:
        scene, info = geometry(scene)
    times["geometry"] = time.perf_counter() - t0
    proposals, tracker = make_sources()
    result = lift_scene(scene, proposals, tracker, lift, progress=progress)
    times.update(result.timings)
    sdir = out / "scenes" / job.name
    t0 = time.perf_counter()
    labels = np.full(len(result.instances), options.label_id, dtype=np.int64)
    write_submission(out / "submission", job.name, result.masks(), labels, result.confidences)
    gt = scene.mesh.gt_ids
    if gt is not None:
        write_gt_file(out / "gt" / f"{job.name}.txt", gt)
    vlabels = result.labels()
    if options.ply:
        from threeam.lift3d.render import write_instance_ply

        write_instance_ply(sdir / "instances.ply", scene.mesh.vertices, scene.mesh.faces, vlabels, scene.mesh.colors)
    atomic_write_text(sdir / "instances.json", json.dumps(result.details, indent=1) + "\n")
    times["write"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    views = []
    if options.views and scene.mesh.faces is not None and len(scene.mesh.faces):
        from threeam.lift3d.render import write_views

        h, w = options.view_size
        views = [p.name for p in write_views(sdir / "views", scene.mesh.vertices, scene.mesh.faces, vlabels,
                                             scene.mesh.colors, height=h, width=w, n_oblique=options.views - 1)]
    times["render"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = _scene_ap(gt, result, options)
    times["eval"] = time.perf_counter() - t0
    rec = {"scene": job.name, **scores, **result.counts, "vertices": result.n_vertices,
           "seconds": {s: round(float(times.get(s, 0.0)), 4) for s in ALL_STAGES},
           "total_seconds": round(float(sum(times.values())), 4), "views": views, "geometry": info}
    atomic_write_text(sdir / "result.json", json.dumps(rec, indent=1) + "\n")
    return rec


def render_tables(records: list[dict], overall: dict) -> tuple[str, str]:
    """``(markdown, csv)`` of per-scene rows and the overall row (AP in %, seconds per stage)."""
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    stage_cols = [s for s in ALL_STAGES if any(r["seconds"].get(s, 0) > 0 for r in records)]
    head = ["scene", "AP", "AP50", "AP25", "frames", "keyframes", "proposals", "fragments", "instances",
            "total s"] + [f"{s} s" for s in stage_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = []
    for r in records + [overall]:
        row = [r["scene"], pct(r.get("ap")), pct(r.get("ap50")), pct(r.get("ap25")), str(r.get("frames", "")),
               str(r.get("keyframes", "")), str(r.get("proposals", "")), str(r.get("fragments", "")),
               str(r.get("instances", "")), f"{r.get('total_seconds', 0.0):.2f}"]
        row += [f"{r['seconds'].get(s, 0.0):.2f}" for s in stage_cols]
        lines.append("| " + " | ".join(row) + " |")
        rows.append(row)
    md = "\n".join(lines) + ("\n\nAP / AP50 / AP25 in % (" + str(overall.get("benchmark", "")) +
                             "); overall = pooled over the scenes, as the benchmark computes it. "
                             "Times: wall-clock seconds per stage.\n")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in records + [overall]:
        w.writerow([r["scene"], r.get("ap"), r.get("ap50"), r.get("ap25"), r.get("frames"), r.get("keyframes"),
                    r.get("proposals"), r.get("fragments"), r.get("instances"), r.get("total_seconds")]
                   + [r["seconds"].get(s, 0.0) for s in stage_cols])
    return md, buf.getvalue()


def _overall(out: Path, records: list[dict], options: RunOptions) -> dict:
    """Pooled AP over the scenes of ``records`` that have GT (read back from the submission folder)."""
    from threeam.eval.instance_ap import evaluate_instances, read_gt_file, read_submission

    names = [r["scene"] for r in records if (out / "gt" / f"{r['scene']}.txt").is_file()]
    rec = {"scene": "overall", "benchmark": options.benchmark, "ap": None, "ap50": None, "ap25": None,
           "scenes": len(records)}
    if names:
        gt = {n: read_gt_file(out / "gt" / f"{n}.txt") for n in names}
        res = evaluate_instances(gt, read_submission(out / "submission", scenes=names), benchmark=options.benchmark)
        rec.update(ap=_safe_float(res.ap), ap50=_safe_float(res.ap50), ap25=_safe_float(res.ap25))
    for k in ("frames", "keyframes", "proposals", "fragments", "instances"):
        rec[k] = int(sum(r.get(k, 0) for r in records))
    rec["seconds"] = {s: round(sum(r["seconds"].get(s, 0.0) for r in records), 4) for s in ALL_STAGES}
    rec["total_seconds"] = round(sum(r.get("total_seconds", 0.0) for r in records), 4)
    rec["seconds_per_scene"] = round(rec["total_seconds"] / max(len(records), 1), 4)
    return rec


def run_lift3d(jobs: Iterable[SceneJob], out_dir: str | Path, lift: LiftConfig, options: RunOptions,
               make_sources: Callable[[], tuple[Any, Any]], geometry: Optional[Callable] = None,
               model_record: Optional[dict] = None, overwrite: bool = False, progress: bool = True) -> RunSummary:
    """Lift every scene not finished yet and (re)write the tables.

    Args:
        jobs: the scenes (`SceneJob`), in order.
        out_dir: output folder (see the module docstring).
        lift: `LiftConfig`; options: `RunOptions`.
        make_sources: ``() -> (proposal source, tracker)``, called once, when the first scene runs
            (so a fully finished run builds no model).
        geometry: optional ``scene -> (scene, info)`` (the RGB-only mode's MUSt3R geometry).
        model_record: model options recorded in config.json (a resumed run must match them).
        overwrite: replace results of other options.
        progress: tqdm progress bar over scenes (stage shown as the postfix).
    """
    from tqdm import tqdm

    out = Path(out_dir)
    jobs = list(jobs)
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise InputError("scene ids must be unique")
    record = _config_record(lift, options, model_record or {})
    _check_out(out, record, overwrite)
    summary = RunSummary(out_dir=out)
    built: list = []

    def sources() -> tuple:
        if not built:
            built.append(make_sources())
        return built[0]

    bar = tqdm(jobs, desc="lift3d", unit="scene", disable=not progress)
    for job in bar:
        done = out / "scenes" / job.name / "result.json"
        if done.is_file():
            summary.skipped.append(job.name)
            summary.scenes.append(json.loads(done.read_text()))
            bar.set_postfix_str(f"{job.name}: done earlier")
            continue
        def tick(stage: str, k: int, n: int, _name=job.name) -> None:
            bar.set_postfix_str(f"{_name}: keyframe {k}/{n}")

        bar.set_postfix_str(f"{job.name}: loading")
        summary.scenes.append(_run_one(job, out, lift, options, sources, geometry, tick))
    summary.overall = _overall(out, summary.scenes, options)
    md, csv_text = render_tables(summary.scenes, summary.overall)
    atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "results.csv", csv_text)
    atomic_write_text(out / "results.json", json.dumps({"scenes": summary.scenes, "overall": summary.overall,
                                                        "skipped": summary.skipped}, indent=1) + "\n")
    return summary
