"""Why Accuracy (Successful IoU) can fall while IoU and Tracking Recall rise: split two methods' found frames.

    python experiments/toy-ablation/diagnostics/accuracy_split.py EVAL_A EVAL_B

EVAL_A / EVAL_B: per-track evaluation files of two methods on the same tracks (the ``eval`` stage's
``OUT/eval/<method>.json``, or the committed ``.json.gz``). Accuracy averages IoU over the GT-present frames a
method finds (IoU > 0), so a method that finds more, harder frames can lose Accuracy without being worse on any
frame. Prints one JSON line: each method's Accuracy (the table's per-track mean), the frames both find with each
one's mean IoU there, and the frames only one of them finds with its mean IoU there.
"""
from __future__ import annotations

import gzip
import json
import sys

import numpy as np


def _tracks(path: str) -> dict:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return {(t["scene"], t["object"]): t for t in json.load(f)["tracks"]}


a, b = _tracks(sys.argv[1]), _tracks(sys.argv[2])
keys = sorted(set(a) & set(b))
acc = {"a": [], "b": []}
both, only_a, only_b = [], [], []
for k in keys:
    present = np.asarray(a[k]["present"], bool)
    ia, ib = np.asarray(a[k]["frame_iou"], float), np.asarray(b[k]["frame_iou"], float)
    fa, fb = present & (ia > 0), present & (ib > 0)
    if fa.any():
        acc["a"].append(ia[fa].mean())
    if fb.any():
        acc["b"].append(ib[fb].mean())
    both += list(zip(ia[fa & fb], ib[fa & fb]))
    only_a += list(ia[fa & ~fb])
    only_b += list(ib[fb & ~fa])
both_arr = np.asarray(both, float).reshape(-1, 2)


def _mean(x) -> float | None:
    return round(float(np.mean(x)), 4) if len(x) else None


print(json.dumps({"a": sys.argv[1], "b": sys.argv[2], "tracks": len(keys),
                  "accuracy": {"a": _mean(acc["a"]), "b": _mean(acc["b"])},
                  "frames_both_found": {"n": len(both_arr), "iou_a": _mean(both_arr[:, 0]), "iou_b": _mean(both_arr[:, 1])},
                  "frames_only_a_found": {"n": len(only_a), "iou": _mean(only_a)},
                  "frames_only_b_found": {"n": len(only_b), "iou": _mean(only_b)}}))
