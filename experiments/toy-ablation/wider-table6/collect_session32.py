"""Complete Table 6 on the tiny-wider MUSt3R (session 32) and add it to this folder's summary.json (other keys kept).

    python experiments/toy-ablation/wider-table6/collect_session32.py

Run from the repository root after the session's runs (``summary.json`` ``commands``; output in ``runs/t6w``).
The committed evaluations and geometry checks it builds on (``sam2-continuous`` s0-2 of ``must3r-swa/confirm-eval``;
``3am-continuous`` s0-2, ``3am-fov`` s0 and ``sam2-ft`` s0 of this folder) are unpacked into ``runs/t6w`` first; the
session's own (``3am-fov``/``sam2-ft`` s1-2, ``3am-random`` s0-2, ``sam2-pretrained``, ``prompt-only``, the
another-room evaluations ``3am-fov-wronggeo-s1`` and ``3am-random-wronggeo-s0``) are packed
into ``eval/`` and ``geometry/`` here. Then the experiment's ``table`` stage over the five arms, seeds 0-2
(``table.md``, ``table.json``, ``ablation.svg`` copied here) and the paired comparisons the predictions name.
The random-sampling SAM 2 control (``sam2-ft`` trained with ``--train-override data.sources.synthetic.sampler=random``
in ``runs/t6w-sr``) is packed here as ``eval/sam2-random-sS.json.gz``.
"""
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

OUT = Path("runs/t6w")
HERE = Path("experiments/toy-ablation/wider-table6")
P = "experiments/toy-ablation/diagnostics/paired_arms.py"
ARMS = ("sam2-ft", "3am-fov", "3am-continuous", "3am-random", "sam2-continuous")
NEW = [f"{a}-s{s}" for a in ("3am-fov", "sam2-ft") for s in "12"] + [f"3am-random-s{s}" for s in "012"]
NEW += ["sam2-pretrained", "prompt-only", "3am-fov-wronggeo-s1", "3am-random-wronggeo-s0"]
SR = Path("runs/t6w-sr")  # sam2-ft trained with random sampling: packed here as sam2-random-sS
BASE = Path("runs/base.txt").read_text().split()


def copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` unless ``dest`` exists, gzip-packing or unpacking by the names' ``.gz`` suffix."""
    if dest.is_file() or not src.is_file():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    read = gzip.open if src.suffix == ".gz" else open
    write = gzip.open if dest.suffix == ".gz" else open
    with read(src, "rb") as f, write(dest, "wb") as g:
        shutil.copyfileobj(f, g)


# the committed evaluations and checks this builds on, restored into runs/ on a fresh machine
committed = [Path("experiments/toy-ablation/must3r-swa/confirm-eval") / f"sam2-continuous-s{s}.json.gz" for s in "012"]
committed += sorted((HERE / "eval").glob("*.json.gz"))
for gz in committed:
    copy(gz, OUT / "eval" / gz.name[:-3])
for g in sorted((HERE / "geometry").glob("3am-*.json")):
    copy(g, OUT / "geometry" / g.name)
# this session's, packed here
for m in NEW:
    copy(OUT / "eval" / f"{m}.json", HERE / "eval" / f"{m}.json.gz")
    g = OUT / "geometry" / f"{m}.json"
    if g.is_file() and m.startswith("3am-") and "wronggeo" not in m:
        shutil.copy(g, HERE / "geometry" / g.name)
for seed in "012":  # the random-sampling control: packed here, restored into runs/t6w-sr when absent there
    copy(SR / "eval" / f"sam2-ft-s{seed}.json", HERE / "eval" / f"sam2-random-s{seed}.json.gz")
    copy(HERE / "eval" / f"sam2-random-s{seed}.json.gz", SR / "eval" / f"sam2-ft-s{seed}.json")


def have(arm, seeds, out=OUT):
    return all((out / "eval" / f"{arm}-s{s}.json").is_file() for s in seeds.split(","))


def paired(a, b, seeds, *, out_a=OUT, out_b=OUT):
    if not (have(a, seeds, out_a) and have(b, seeds, out_b)):
        return None
    out = subprocess.run([sys.executable, P, str(out_a), a, str(out_b), b, seeds], capture_output=True, text=True,
                         check=True).stdout
    return {k: v for k, v in json.loads(out).items() if "/" in k}


def per_seed(a, b, out_b=OUT):
    ok = [s for s in "012" if have(a, s) and have(b, s, out_b)]
    rows = {f"s{s}": paired(a, b, s, out_b=out_b) for s in ok}
    if len(ok) > 1:
        rows["s" + ",".join(ok)] = paired(a, b, ",".join(ok), out_b=out_b)
    return rows


table = None
if all(have(a, "0,1,2") for a in ARMS) and (OUT / "eval" / "sam2-pretrained.json").is_file() \
        and (OUT / "eval" / "prompt-only.json").is_file():
    subprocess.run(["threeam", "experiment", "toy-ablation", "--out", str(OUT), *BASE, "--stages", "table",
                    "--arms", ",".join(ARMS), "--seeds", "0,1,2"], check=True)
    for name in ("table.md", "table.json", "ablation.svg"):
        shutil.copy(OUT / name, HERE / name)
    table = "table.md"

path = HERE / "summary.json"
s = json.loads(path.read_text())
s["session32_rest_of_table"] = {
    "what": "3am-fov and sam2-ft seeds 1-2, 3am-random seeds 0-2, sam2-pretrained and prompt-only on the 40 "
            "lookalike-confirm scenes (session 32, fresh machine, one job per core), same commands as 'commands' "
            "with --arms 3am-random for that arm; the table stage over the five arms, seeds 0-2",
    "table": table,
    "geometry_check": {f.stem: round(json.loads(f.read_text())["geometry_dependence"], 3)
                       for f in sorted((HERE / "geometry").glob("3am-*-s*.json"))
                       if f.stem.startswith(("3am-fov", "3am-random", "3am-continuous"))},
    "3am_fov_vs_sam2_ft": per_seed("3am-fov", "sam2-ft"),
    "3am_fov_vs_sam2_continuous": per_seed("3am-fov", "sam2-continuous"),
    "3am_random_vs_sam2_ft": per_seed("3am-random", "sam2-ft"),
    "3am_random_wrong_geometry_s0": {"wrong_vs_sam2_random": paired("3am-random-wronggeo", "sam2-ft", "0", out_b=SR),
                                     "right_minus_wrong": paired("3am-random", "3am-random-wronggeo", "0")},
    "3am_random_vs_sam2_random": per_seed("3am-random", "sam2-ft", SR),
    "sam2_random_vs_sam2_continuous_s012": paired("sam2-ft", "sam2-continuous", "0,1,2", out_a=SR),
    "sam2_random_vs_sam2_ft_s012": paired("sam2-ft", "sam2-ft", "0,1,2", out_a=SR),
    "3am_random_vs_3am_continuous": per_seed("3am-random", "3am-continuous"),
    "3am_fov_wrong_geometry_s1": {"wrong_vs_sam2_ft": paired("3am-fov-wronggeo", "sam2-ft", "1"),
                                  "right_minus_wrong": paired("3am-fov", "3am-fov-wronggeo", "1")},
    "sam2_ft_vs_sam2_continuous": per_seed("sam2-ft", "sam2-continuous"),
    "3am_continuous_vs_sam2_continuous_s012": paired("3am-continuous", "sam2-continuous", "0,1,2"),
    "eval_seconds": {m: round(json.loads((OUT / "eval" / f"{m}.json").read_text()).get("seconds", 0))
                     for m in NEW if (OUT / "eval" / f"{m}.json").is_file()}
    | {f"sam2-random-s{x}": round(json.loads((SR / "eval" / f"sam2-ft-s{x}.json").read_text()).get("seconds", 0))
       for x in "012" if (SR / "eval" / f"sam2-ft-s{x}.json").is_file()},
}
path.write_text(json.dumps(s, indent=1) + "\n")
print(json.dumps({k: v for k, v in s["session32_rest_of_table"].items() if k != "what"}, indent=0)[:6000])
