"""Paired difference of two trained arms over the evaluation tracks, possibly from two experiment folders.

    python experiments/toy-ablation/diagnostics/paired_arms.py OUT_A ARM_A OUT_B ARM_B [SEEDS]

For each metric of the table (Whole Set and Selected Subset): ARM_A minus ARM_B over tracks (each
track's value averaged over the seeds, default 0,1,2), mean and 95% CI (the table's `paired_ci`).
Reads only ``OUT/eval/<arm>-s<seed>.json``. One JSON line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from threeam.experiments.toy_ablation import METRICS, _track_scores, paired_ci, track_means

out_a, arm_a, out_b, arm_b = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
seeds = [int(s) for s in (sys.argv[5] if len(sys.argv) > 5 else "0,1,2").split(",")]


def per_track(out: Path, arm: str) -> tuple[dict, dict]:
    runs, selected = [], {}
    for s in seeds:
        rows = json.loads((out / "eval" / f"{arm}-s{s}.json").read_text())["tracks"]
        runs.append({(r["scene"], r["object"]): t for r, t in zip(rows, _track_scores(rows))})
        selected.update({(r["scene"], r["object"]): bool(r["selected"]) for r in rows})
    return runs, selected


ra, sel = per_track(out_a, arm_a)
rb, _ = per_track(out_b, arm_b)
keys = sorted(set(ra[0]) & set(rb[0]))
result = {"a": f"{out_a}:{arm_a}", "b": f"{out_b}:{arm_b}", "seeds": seeds}
for subset in ("whole", "selected"):
    ks = [k for k in keys if subset == "whole" or sel[k]]
    for label, attr in METRICS:
        d, lo, hi, n = paired_ci(track_means(ra, ks, attr), track_means(rb, ks, attr))
        result[f"{subset}/{label}"] = {"diff": round(100 * d, 2), "ci95": [round(100 * lo, 2), round(100 * hi, 2)],
                                       "n_tracks": n}
print(json.dumps(result))
