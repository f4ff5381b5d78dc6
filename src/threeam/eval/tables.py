"""The benchmark's tables: the paper's Table 2 layout (Markdown, CSV, JSON) and the per-track rows."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from threeam.eval.records import MethodResult, TrackRecord
from threeam.io.atomic import atomic_write_text

__all__ = ["TABLE_COLUMNS", "PER_SEQUENCE_COLUMNS", "table_rows", "per_sequence_row", "render_markdown",
           "csv_text", "json_safe", "write_tables"]

TABLE_COLUMNS = ["method", "whole_iou", "whole_tracking_recall", "whole_accuracy", "whole_false_positive_rate",
                 "whole_tracks", "selected_iou", "selected_tracking_recall", "selected_accuracy",
                 "selected_false_positive_rate", "selected_tracks", "fps", "mem_mib", "mem_kind"]
"""Columns of ``results.csv`` and of ``rows`` in ``results.json``. The false-positive rate (share of
object-absent frames with a predicted mask) is ours, not the paper's: IoU alone rewards empty masks."""

PER_SEQUENCE_COLUMNS = ["method", "scene", "object_id", "selected", "cond_frame", "n_frames", "n_present", "iou",
                        "tracking_recall", "accuracy", "false_positive_rate"]
"""Columns of ``per_sequence.csv`` / ``per_sequence.json``."""


def table_rows(results: dict[str, MethodResult]) -> list[dict]:
    """One dict per method with :data:`TABLE_COLUMNS` (scores as fractions in [0, 1])."""
    rows = []
    for name, r in results.items():
        rows.append({"method": name,
                     "whole_iou": r.whole.iou, "whole_tracking_recall": r.whole.tracking_recall,
                     "whole_accuracy": r.whole.accuracy, "whole_false_positive_rate": r.whole.false_positive_rate,
                     "whole_tracks": r.whole.n_tracks,
                     "selected_iou": r.subset.iou, "selected_tracking_recall": r.subset.tracking_recall,
                     "selected_accuracy": r.subset.accuracy,
                     "selected_false_positive_rate": r.subset.false_positive_rate,
                     "selected_tracks": r.subset.n_tracks,
                     "fps": r.fps, "mem_mib": r.mem_mib, "mem_kind": r.mem_kind})
    return rows


def per_sequence_row(rec: TrackRecord) -> dict:
    """A :class:`TrackRecord` as a dict with :data:`PER_SEQUENCE_COLUMNS`."""
    s = rec.scores
    return {"method": rec.method, "scene": rec.scene, "object_id": rec.object_id, "selected": rec.selected,
            "cond_frame": rec.cond_frame, "n_frames": s.n_frames, "n_present": s.n_present, "iou": s.iou,
            "tracking_recall": s.tracking_recall, "accuracy": s.accuracy,
            "false_positive_rate": s.false_positive_rate}


def _fmt(v: float, pct: bool = True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.2f}"


def render_markdown(results: dict[str, MethodResult], averaging: str) -> str:
    """The paper's table layout (its Table 2 columns) in Markdown (scores in %), each set's
    false-positive rate after its Accuracy."""
    kinds = {r.mem_kind for r in results.values()}
    mem_label = "Mem (MiB, CUDA max allocated)" if kinds == {"cuda_max_allocated"} else \
        "Mem (MiB, peak RSS delta, CPU)" if kinds == {"rss_delta"} else "Mem (MiB)"
    lines = [f"| Method | FPS | {mem_label} | Whole Set IoU | Whole Set Tracking Recall | Whole Set Accuracy | "
             "Whole Set False-positive rate | Selected Subset IoU | Selected Subset Tracking Recall | "
             "Selected Subset Accuracy | Selected Subset False-positive rate |",
             "|" + "---|" * 11]
    for row in table_rows(results):
        lines.append(f"| {row['method']} | {_fmt(row['fps'], False)} | {_fmt(row['mem_mib'], False)} | "
                     f"{_fmt(row['whole_iou'])} | {_fmt(row['whole_tracking_recall'])} | "
                     f"{_fmt(row['whole_accuracy'])} | {_fmt(row['whole_false_positive_rate'])} | "
                     f"{_fmt(row['selected_iou'])} | {_fmt(row['selected_tracking_recall'])} | "
                     f"{_fmt(row['selected_accuracy'])} | {_fmt(row['selected_false_positive_rate'])} |")
    any_r = next(iter(results.values()))
    lines += ["", f"Whole Set: {any_r.whole.n_tracks} object tracks; Selected Subset: {any_r.subset.n_tracks} "
              f"(objects that leave the view and come back). Scores in %, averaging: {averaging}. "
              "False-positive rate: share of object-absent frames with a predicted mask (lower is better). "
              "FPS: frames tracked per second (prompting + propagation, no I/O)."]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """``rows`` as CSV text with a header of ``columns`` (missing keys left empty)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in columns})
    return buf.getvalue()


def json_safe(x: Any) -> Any:
    """``x`` with non-finite floats as None and numpy scalars as Python numbers (for ``json.dumps``)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return json_safe(x.item())
    return x


def write_tables(folder: Path, results: dict[str, MethodResult], averaging: str) -> None:
    """Write ``results.{md,csv,json}`` and ``per_sequence.{csv,json}`` into ``folder`` (each atomically)."""
    folder = Path(folder)
    rows = table_rows(results)
    atomic_write_text(folder / "results.md", render_markdown(results, averaging))
    atomic_write_text(folder / "results.csv", csv_text(rows, TABLE_COLUMNS))
    doc = {"averaging": averaging, "columns": TABLE_COLUMNS, "rows": rows,
           "methods": {n: {"whole_set": r.whole.to_dict(), "selected_subset": r.subset.to_dict(), "fps": r.fps,
                           "frames": r.frames, "seconds": r.seconds, "mem_mib": r.mem_mib, "mem_kind": r.mem_kind}
                       for n, r in results.items()}}
    atomic_write_text(folder / "results.json", json.dumps(json_safe(doc), indent=1) + "\n")
    per = [per_sequence_row(rec) for r in results.values() for rec in r.records]
    atomic_write_text(folder / "per_sequence.csv", csv_text(per, PER_SEQUENCE_COLUMNS))
    atomic_write_text(folder / "per_sequence.json", json.dumps(json_safe(per), indent=1) + "\n")
