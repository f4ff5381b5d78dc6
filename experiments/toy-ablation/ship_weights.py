"""Write the weights that ship in the package (`threeam.weights`) from two toy-ablation runs.

    python experiments/toy-ablation/ship_weights.py THREE_AM_RUN [SAM2_RUN] [--preset NAME] [--note TEXT]

THREE_AM_RUN: a run, checkpoint or run-record folder of the ``3am`` task whose model has the architecture of
the shipped 3AM preset ``--preset`` (default ``3am_tiny``; also ``3am_tiny_wide``); SAM2_RUN (optional): the
same for the ``sam2`` task on the debug SAM 2 (the control trained with the same recipe).
Writes ``src/threeam/weights/<preset>/`` (a 3AM checkpoint folder), with SAM2_RUN also
``src/threeam/weights/sam2.1_debug_256.safetensors`` (a SAM 2 state dict with the official key names), and
updates ``provenance.json`` (sources, their configs' seeds and steps, SHA-256 of the files; the entries of
the models not rewritten stay). Parameters are stored as float16 (they load back into float32 models),
buffers as they are. Replaces the files that are there.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from threeam.io.atomic import atomic_write_text
from threeam.models.three_am import ThreeAM, get_three_am_config
from threeam.models.three_am_weights import WEIGHTS_NAME, save_three_am
from threeam.train.export import load_for_eval, resolve_checkpoint
from threeam.weights import DEBUG_SAM2_NAME, SHIPPED

ROOT = Path(__file__).resolve().parents[2]
DEST = ROOT / "src" / "threeam" / "weights"


def half_params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    params = {k for k, _ in module.named_parameters()}
    return {k: (v.half() if k in params and v.is_floating_point() else v).contiguous()
            for k, v in module.state_dict().items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_info(source: str) -> dict:
    _, state = resolve_checkpoint(source)
    cfg = state["config"]
    return {"source": source, "task": cfg["task"], "preset": cfg["name"], "seed": cfg["seed"], "step": state["step"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("three_am_run")
    ap.add_argument("sam2_run", nargs="?", default=None)
    ap.add_argument("--preset", default="3am_tiny", choices=[n for m, n in SHIPPED if m == "3am"])
    ap.add_argument("--note", default=None, help="provenance note of the written weights (default: keep the old one)")
    a = ap.parse_args()
    three_am = load_for_eval(a.three_am_run, task="3am")
    with torch.device("meta"):
        reference = ThreeAM(get_three_am_config(a.preset))
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    if {k: tuple(v.shape) for k, v in three_am.state_dict().items()} != shapes:  # the architecture, not the init
        raise SystemExit(f"{a.three_am_run} does not have the {a.preset} architecture")
    sam2 = None
    if a.sam2_run is not None:
        sam2 = load_for_eval(a.sam2_run, task="sam2")
        if set(sam2.state_dict()) != {k[len("sam2."):] for k in three_am.state_dict() if k.startswith("sam2.")}:
            raise SystemExit(f"{a.sam2_run} is not the debug SAM 2 of {a.preset}")

    folder = DEST / SHIPPED[("3am", a.preset)]
    with tempfile.TemporaryDirectory() as tmp:
        staged = save_three_am(three_am, Path(tmp) / a.preset)
        save_file(half_params(three_am), str(staged / WEIGHTS_NAME), metadata={"format": "threeam", "parts": "all"})
        # stage beside the destination, then swap by renames: the shipped folder is never half-written
        fresh = folder.with_name(folder.name + ".new")
        old = folder.with_name(folder.name + ".old")
        for leftover in (fresh, old):
            if leftover.exists():
                shutil.rmtree(leftover)
        shutil.copytree(staged, fresh, ignore=shutil.ignore_patterns(".threeam-output.json"))
        if folder.exists():
            folder.rename(old)
        fresh.rename(folder)
        if old.exists():
            shutil.rmtree(old)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    path = DEST / "provenance.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    notes = doc.pop("notes", {})
    doc[a.preset] = {**source_info(a.three_am_run), "sha256": sha256(folder / WEIGHTS_NAME), "written_at_commit": commit}
    if a.note is not None:
        notes[a.preset] = a.note
    if sam2 is not None:
        sam2_file = DEST / SHIPPED[("sam2", DEBUG_SAM2_NAME)]
        save_file(half_params(sam2), str(sam2_file))
        doc[DEBUG_SAM2_NAME] = {**source_info(a.sam2_run), "sha256": sha256(sam2_file), "written_at_commit": commit}
        if a.note is not None:
            notes[DEBUG_SAM2_NAME] = a.note
    doc["notes"] = notes
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
