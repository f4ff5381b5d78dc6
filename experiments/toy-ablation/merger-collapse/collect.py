"""Collect the merger-collapse numbers (session 30) into experiments/toy-ablation/merger-collapse/summary.json.

Reads the runs of the three screens (runs/t6w-tlr5e-4, runs/t6w-centred, runs/t6w-centred-tlr5e-4), the base
recipe's runs (runs/t6w, its controls' evaluations there), the merger_probe trajectories written to runs/traj,
and copies the new evaluation files (gzipped) into eval/. Only comparisons whose evaluation files exist are
computed."""
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path("experiments/toy-ablation/merger-collapse")
BASE = Path("runs/t6w")
SCREENS = {"transformer-lr 5e-4": Path("runs/t6w-tlr5e-4"), "centred": Path("runs/t6w-centred"),
           "centred + transformer-lr 5e-4": Path("runs/t6w-centred-tlr5e-4")}
D = "experiments/toy-ablation/diagnostics"
ARM = "3am-continuous"


def run(*args):
    return json.loads(subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True).stdout)


def have(out, arm, seeds):
    return all((out / "eval" / f"{arm}-s{s}.json").is_file() for s in seeds.split(","))


def paired(out, seeds):
    if not (have(out, ARM, seeds) and have(BASE, "sam2-continuous", seeds)):
        return None
    d = run(f"{D}/paired_arms.py", str(out), ARM, str(BASE), "sam2-continuous", seeds)
    return {k: v for k, v in d.items() if "/" in k}


W = ("--sam2-weights experiments/toy-ablation/pretrain-sam2-attn-step4194 --merger-lr 5e-3 --must3r-weights "
     "experiments/toy-ablation/pretrain-must3r-tiny-wider-stream-avg4500 --merger tiny_pe3d_fan_in --eval-set lookalike-confirm")
s = {"what": "Why Table 6's 3AM mergers ignore the geometry on the tiny-wider MUSt3R, and three screens of levers "
             "(3am-continuous, 300 steps, the wider-table6 recipe otherwise; checkpoints every 50 steps); evaluations on "
             "the 40 lookalike-confirm scenes against the committed sam2-continuous controls (runs/t6w/eval)",
     "commands": {
         "screen": f"threeam experiment toy-ablation --out OUT {W} [--merger tiny_pe3d_fan_in_centred] "
                   "[--merger-transformer-lr 5e-4] --stages arms,geometry --arms 3am-continuous --seeds S "
                   "--train-override run.ckpt_every=50 --train-override run.keep_last=0",
         "eval": f"python {D}/eval_arm.py OUT 3am-continuous-sS {W} [the same merger options]",
         "probe": f"python {D}/merger_probe.py OUT/arms/3am-continuous-sS/checkpoints/step_000000NN 2 --scenes validation",
         "offset shape": f"python {D}/offset_shape.py OUT/arms/3am-continuous-sS",
         "paired": f"python {D}/paired_arms.py OUT 3am-continuous runs/t6w sam2-continuous SEEDS"}}
geo = {"base (wider-table6)": BASE, **SCREENS}
s["geometry_check"] = {name: {f.stem.rsplit("-s", 1)[1]: round(json.loads(f.read_text())["geometry_dependence"], 3)
                              for f in sorted((out / "geometry").glob(f"{ARM}-s*.json"))} for name, out in geo.items()}
s["offset_shape"] = {name: {f"s{d.name.rsplit('-s', 1)[1]}": {k: v for k, v in run(f"{D}/offset_shape.py", str(d)).items()
                                                               if k != "checkpoint"}
                            for d in sorted((out / "arms").glob(f"{ARM}-s*")) if (d / "checkpoints" / "latest").exists()}
                     for name, out in geo.items()}
KEEP = ("enc_proj", "pe3d", "init_block0.attn", "init_block0.mlp", "init_block0", "level0", "level1", "level2",
        "norm_out", "fuse")
traj = {}
for f in sorted(Path("runs/traj").glob("*-s*-*.json")):
    d = json.loads(f.read_text())
    traj[f.stem] = {"geometry_check": round(d["other_scene_geometry_change_of_the_offset"], 3),
                    "merger_change": round(d["merger_change_mean"], 4),
                    "rms_and_spread": {k: d["stage_rms_and_spread_over_frames"][k] for k in KEEP}}
s["probe_trajectories"] = {"what": "merger_probe.py on the checkpoints of step NNN (file stem RECIPE-sSEED-NNN; base = "
                                   "the wider-table6 recipe, runs/t6w-traj): [RMS, spread over frames] per stage",
                           **traj}
s["paired_vs_sam2_continuous"] = {}
for name, out in SCREENS.items():
    seeds = [x for x in "01234" if have(out, ARM, x) and have(BASE, "sam2-continuous", x)]
    rows = {f"s{x}": paired(out, x) for x in seeds}
    if len(seeds) > 1:
        rows["s" + ",".join(seeds)] = paired(out, ",".join(seeds))
    s["paired_vs_sam2_continuous"][name] = rows
    for x in seeds:
        src = out / "eval" / f"{ARM}-s{x}.json"
        dest = HERE / "eval" / f"{out.name.removeprefix('t6w-')}-{ARM}-s{x}.json.gz"
        dest.parent.mkdir(exist_ok=True)
        with open(src, "rb") as a, gzip.open(dest, "wb") as b:
            shutil.copyfileobj(a, b)
s["paired_base_recipe"] = {x: paired(BASE, x) for x in ("0,1", "0,1,2")}
s["eval_seconds"] = {f"{out.name}/{f.stem}": round(json.loads(f.read_text()).get("seconds", 0))
                     for out in SCREENS.values() for f in sorted((out / "eval").glob("*.json"))}
(HERE / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
print("ok")
