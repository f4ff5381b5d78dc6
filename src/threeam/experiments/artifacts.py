"""Small, committable records of a training run (docs/evidence.md): the latest weights in float16
safetensors, the config and step, the held-out evaluations and the loss curve.

    python -m threeam.experiments.artifacts RUN_DIR DEST [--average-last K]

writes ``DEST/model.fp16.safetensors`` (metadata: step, task, preset), ``DEST/run.json`` (config,
step, wall-clock seconds of the logged curve) ``DEST/eval.jsonl`` (copied) and ``DEST/curve.csv``
(every logged ``train/*`` scalar by step). ``run.json``'s ``init_lineage`` follows ``model.init_checkpoint``
back through the runs each started from, as far as they can be read at export time (a record made from an
uncommitted run still says which step and preset that run was). A float16 copy is for inspection and initialisation
(``model.init_checkpoint`` after casting back, or `load_part_weights`); resuming needs the full
checkpoint folder. ``--average-last K``: the weights are the uniform average of the run's newest K checkpoints
(`threeam.train.export.average_checkpoints`; ``run.json`` lists the ``averaged_steps``).
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path
from typing import Sequence


def export_run(run_dir: str | Path, dest: str | Path, average_last: int = 0) -> dict:
    """Write the record of ``run_dir`` to ``dest`` (see the module docstring); ``average_last > 0``: its weights
    are the average of the run's newest ``average_last`` checkpoints. Returns the ``run.json`` document."""
    import torch
    from safetensors.torch import save_file

    from threeam.train.export import average_checkpoints, training_state_dict

    run_dir, dest = Path(run_dir), Path(dest)
    if average_last:
        weights, state, averaged = average_checkpoints(run_dir, average_last)
    else:
        (weights, state), averaged = training_state_dict(run_dir), None
    dest.mkdir(parents=True, exist_ok=True)
    step = int(state["step"])
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    meta = {"step": str(step), "task": state["config"]["task"], "preset": state["config"]["name"]}
    if averaged:
        meta["averaged_steps"] = ",".join(map(str, averaged))
    save_file(half, str(dest / "model.fp16.safetensors"), metadata=meta)
    curve = _curve(run_dir / "tb")
    rows = sorted(curve.items())
    seconds = (rows[-1][1]["_wall"] - rows[0][1]["_wall"]) if len(rows) > 1 else 0.0
    keys = sorted({k for _, r in rows for k in r if not k.startswith("_")})
    with open(dest / "curve.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "wall_seconds"] + keys)
        for s, r in rows:
            w.writerow([s, round(r["_wall"] - rows[0][1]["_wall"], 1)] + [r.get(k, "") for k in keys])
    if (run_dir / "eval.jsonl").is_file():
        shutil.copyfile(run_dir / "eval.jsonl", dest / "eval.jsonl")
    doc = {"step": step, "task": state["config"]["task"], "preset": state["config"]["name"],
           "logged_wall_seconds": seconds, "parameters": int(sum(v.numel() for v in weights.values())),
           "init_lineage": init_lineage(state["config"]), "config": state["config"]}
    if averaged:
        doc["averaged_steps"] = averaged
    from threeam.io.atomic import atomic_write_text

    atomic_write_text(dest / "run.json", json.dumps(doc, indent=1) + "\n")  # last: the record is whole once it exists
    del torch
    return doc


def init_lineage(config: dict, max_depth: int = 64) -> list[dict]:
    """The runs a training config started from (``model.init_checkpoint``, then that run's, ...), newest
    first: ``{"init_checkpoint", "found": True, "step", "task", "preset"}`` per readable one, and a last
    ``{"init_checkpoint", "found": False}`` where the chain can no longer be read (or a ``.safetensors``
    file without a config, ``"step": None``). Stops after ``max_depth`` links (a cycle)."""
    from threeam.errors import ThreeAMError
    from threeam.train.export import resolve_checkpoint

    out: list[dict] = []
    source = (config.get("model") or {}).get("init_checkpoint")
    while source and len(out) < max_depth:
        try:
            _, state = resolve_checkpoint(source)
        except (ThreeAMError, OSError):
            out.append({"init_checkpoint": str(source), "found": False})
            break
        cfg = (state or {}).get("config") or {}
        out.append({"init_checkpoint": str(source), "found": True, "step": (state or {}).get("step"),
                    "task": cfg.get("task"), "preset": cfg.get("name")})
        source = (cfg.get("model") or {}).get("init_checkpoint")
    return out


def _curve(tb_dir: Path) -> dict[int, dict]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tb_dir))
    ea.Reload()
    out: dict[int, dict] = {}
    for tag in ea.Tags()["scalars"]:
        if not (tag.startswith("train/") or tag.startswith("eval/")):
            continue
        for e in ea.Scalars(tag):
            row = out.setdefault(int(e.step), {"_wall": e.wall_time})
            row["_wall"] = min(row["_wall"], e.wall_time)
            row[tag] = round(float(e.value), 6)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("dest")
    p.add_argument("--average-last", type=int, default=0, metavar="K",
                   help="weights: the average of the run's newest K checkpoints (default: the latest alone)")
    a = p.parse_args(argv)
    doc = export_run(a.run_dir, a.dest, a.average_last)
    print(json.dumps({k: v for k, v in doc.items() if k != "config"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
