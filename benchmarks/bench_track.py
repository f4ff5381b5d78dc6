"""Tracking speed: 3AM against SAM 2 measured in the same run (ratios), on a generated video.
On the CPU the times are the process's CPU time (robust to other jobs on a shared machine), on
CUDA wall time. The official predictor (``--compare-official``) is always timed by wall clock.

Both predictors share the SAM 2 weights (deterministic random weights: speed does not depend on
them); 3AM adds MUSt3R (once per frame) and the Feature Merger. Prints frames per second of
`propagate_in_video` for each, the 3AM/SAM 2 ratio, and peak CUDA memory on a GPU.

* ``--objects N`` also times 1..N objects (boxes on frame 0) with batched objects and with the
  per-object path, and prints the cost of each extra object relative to the first (issue 11
  target: the 8th object costs well under half of the first).
* ``--compile`` adds our compiled mode (`VideoPredictor.compile_model`, after a warm-up session).
* ``--compare-official PATH`` times the official SAM 2 video predictor from a checkout at PATH (put
  on ``sys.path``; never vendored, nothing copied), eager and ``vos_optimized=True``, in the same
  run, on the same frames, with the same prompt, and prints our FPS / official FPS and peak memory.
  The official code needs CUDA and its own dependencies (hydra, iopath); with random weights (no
  ``--official-checkpoint``) both sides use their own random weights: speed does not depend on
  them.

Usage:
  python benchmarks/bench_track.py                          # CPU smoke: debug SAM 2 + tiny MUSt3R
  python benchmarks/bench_track.py --objects 8 --frames 8   # time per extra object
  python benchmarks/bench_track.py --preset 3am_hiera_l --device cuda --frames 60 --size 480x640 --compile \\
      --compare-official ~/src/sam2 --official-config configs/sam2.1/sam2.1_hiera_l.yaml
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from threeam.data.synth import generate_scene, get_synth_config
from threeam.models.three_am import ThreeAM
from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor
from threeam.predictor.video_predictor import VideoPredictor


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _boxes(h: int, w: int, n: int) -> list[list[float]]:
    """n boxes on a grid over the frame (different places: different masks)."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = w * c / cols, h * r / rows
        out.append([x0 + 2, y0 + 2, x0 + w / cols - 2, y0 + h / rows - 2])
    return out


def _clock(device: str):
    """Wall time on accelerators; on the CPU the process's CPU time, which time spent preempted
    by other jobs on a shared machine does not inflate (with ``--threads 1`` it is the work done;
    the frame loader's read-ahead threads count in it, alike for every run)."""
    return time.perf_counter if device.startswith("cuda") else time.process_time


def _run(predictor, video, device: str, objects: int = 1) -> tuple[float, float]:
    """Frames per second of one propagation with `objects` box prompts on frame 0 (see `_clock`),
    and peak GiB."""
    h, w = video.shape[1:3]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        state = predictor.init_state(video)
        for i, box in enumerate(_boxes(h, w, objects)):
            predictor.add_new_points_or_box(state, 0, i + 1, box=box)
        _sync(device)
        clock = _clock(device)
        t0 = clock()
        n = sum(1 for _ in predictor.propagate_in_video(state))
        _sync(device)
        dt = clock() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return n / dt, peak


OFFICIAL_FILES = ("sam2/build_sam.py", "sam2/sam2_video_predictor.py", "sam2/configs")


def check_official_checkout(path: str, config: str | None = None) -> Path:
    """The root of an official SAM 2 checkout (the folder holding ``sam2/build_sam.py``), checked
    before anything is built; `SystemExit` with one clear line otherwise. ``config``: an official
    config name (``configs/sam2.1/sam2.1_hiera_b+.yaml``) that must exist in the checkout."""
    root = Path(path).expanduser()
    hint = "give the root folder of a clone of https://github.com/facebookresearch/sam2"
    if not root.is_dir():
        raise SystemExit(f"error: --compare-official {path}: no such folder; {hint}")
    missing = [rel for rel in OFFICIAL_FILES if not (root / rel).exists()]
    if missing:
        raise SystemExit(f"error: --compare-official {path} is not an official SAM 2 checkout "
                         f"(missing {', '.join(missing)}); {hint}")
    if config is not None and not (root / "sam2" / config).is_file():
        raise SystemExit(f"error: --official-config {config} is not in the checkout "
                         f"(expected {root / 'sam2' / config}); the official names look like "
                         "configs/sam2.1/sam2.1_hiera_b+.yaml")
    return root.resolve()


def _official(path: str, config: str, checkpoint: str | None, device: str, vos_optimized: bool):
    """The official SAM 2 video predictor from a checkout at `path` (imported, not copied)."""
    root = check_official_checkout(path, config)
    sys.path.insert(0, str(root))
    import sam2  # noqa: E402  (the user's checkout)

    where = Path(sam2.__file__).resolve()
    if root not in where.parents:
        raise SystemExit(f"error: 'import sam2' found {where.parent}, not the checkout at {root} "
                         "(an installed sam2 package shadows it; uninstall it or use a clean environment)")
    from sam2.build_sam import build_sam2_video_predictor  # noqa: E402

    return build_sam2_video_predictor(config, checkpoint, device=device, vos_optimized=vos_optimized)


def _run_official(predictor, video: np.ndarray, device: str, objects: int = 1) -> tuple[float, float]:
    """The official predictor reads a JPEG folder: write the frames once, time propagation only."""
    from PIL import Image

    h, w = video.shape[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(video):
            Image.fromarray(f).save(Path(tmp) / f"{i:05d}.jpg", quality=95)
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            state = predictor.init_state(video_path=tmp)
            for i, box in enumerate(_boxes(h, w, objects)):
                predictor.add_new_points_or_box(state, frame_idx=0, obj_id=i + 1, box=box)
            _sync(device)
            t0 = time.perf_counter()
            n = sum(1 for _ in predictor.propagate_in_video(state))
            _sync(device)
            dt = time.perf_counter() - t0
    return n / dt, torch.cuda.max_memory_allocated() / 2**30


def _best(fn, repeats: int) -> tuple[float, float]:
    runs = [fn() for _ in range(repeats)]
    return max(runs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="3am_tiny", help="3AM preset (its SAM 2 part is the baseline)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", default="96x128", help="HxW of the generated video")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-bf16", action="store_true", help="no bfloat16 autocast on CUDA")
    ap.add_argument("--objects", type=int, default=0, help="also time 1..N objects (batched and per object)")
    ap.add_argument("--compile", action="store_true", help="also time our compiled mode")
    ap.add_argument("--compare-official", metavar="PATH", default=None, help="an official SAM 2 checkout")
    ap.add_argument("--official-config", default="configs/sam2.1/sam2.1_hiera_b+.yaml")
    ap.add_argument("--official-checkpoint", default=None)
    args = ap.parse_args(argv)
    if args.compare_official:  # checked before any model is built
        check_official_checkout(args.compare_official, args.official_config)
        if not args.device.startswith("cuda"):
            raise SystemExit("error: --compare-official needs --device cuda (the official predictor runs on CUDA)")
    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    scene = generate_scene(get_synth_config("tiny", n_frames=args.frames, height=h, width=w), seed=0)
    video = np.stack([scene.frame(i).rgb for i in range(args.frames)])
    torch.manual_seed(0)
    model = ThreeAM(args.preset).to(args.device).eval()
    autocast = False if args.no_bf16 else None
    sam2 = VideoPredictor(model.sam2, progress=False, autocast=autocast)
    three = ThreeAMVideoPredictor(model, progress=False, autocast=autocast)
    _run(sam2, video[:2], args.device)  # warm-up
    _run(three, video[:2], args.device)
    rows: dict[str, tuple[float, float]] = {}
    rows["sam2 (ours)"] = _best(lambda: _run(sam2, video, args.device), args.repeats)
    rows["3am (ours)"] = _best(lambda: _run(three, video, args.device), args.repeats)
    if args.compile:
        for name, pred in (("sam2 (ours, compiled)", VideoPredictor(model.sam2, progress=False, autocast=autocast)),
                           ("3am (ours, compiled)", ThreeAMVideoPredictor(model, progress=False, autocast=autocast))):
            pred.compile_model()
            _run(pred, video[:3], args.device)  # warm-up: compilation
            rows[name] = _best(lambda: _run(pred, video, args.device), args.repeats)
    if args.compare_official:
        for name, vos in (("official sam2", False), ("official sam2 (vos_optimized)", True)):
            off = _official(args.compare_official, args.official_config, args.official_checkpoint, args.device, vos)
            _run_official(off, video[:3], args.device)  # warm-up (compilation for vos_optimized)
            rows[name] = _best(lambda: _run_official(off, video, args.device), args.repeats)
            del off
    print(f"device {args.device}, preset {args.preset}, {args.frames} frames {h}x{w}, best of {args.repeats}, "
          f"bf16 autocast {'off' if args.no_bf16 or not args.device.startswith('cuda') else 'on'}, "
          f"{'wall' if args.device.startswith('cuda') else 'process CPU'} time")
    for name, (fps, peak) in rows.items():
        print(f"  {name:32s} {fps:8.2f} frames/s   peak CUDA memory {peak:.2f} GiB")
    print(f"  3AM FPS / SAM 2 FPS (ours) = {rows['3am (ours)'][0] / rows['sam2 (ours)'][0]:.2f}")
    for ref in ("official sam2", "official sam2 (vos_optimized)"):
        if ref in rows:
            for ours in [k for k in rows if "ours" in k]:
                print(f"  {ours} / {ref} FPS = {rows[ours][0] / rows[ref][0]:.2f}")
    if args.objects > 1:
        object_costs(model, video, args.device, args.objects, args.repeats, autocast)


def object_costs(model: ThreeAM, video: np.ndarray, device: str, n: int, repeats: int, autocast) -> None:
    """Seconds per frame with 1..n objects, batched and per object, interleaved (each repeat runs
    every (mode, k) once, in turn, so machine load hits both alike; the fastest repeat counts).
    Prints each extra object's cost and the least-squares slope (per extra object) over 1..n,
    relative to the first object's cost."""
    modes = {"batched": True, "per object": False}
    preds = {name: VideoPredictor(model.sam2, progress=False, autocast=autocast, batch_objects=b)
             for name, b in modes.items()}
    spf = {name: [float("inf")] * n for name in modes}
    for _ in range(repeats):
        for k in range(1, n + 1):
            for name, pred in preds.items():
                spf[name][k - 1] = min(spf[name][k - 1], 1.0 / _run(pred, video, device, k)[0])
    print(f"\n  objects (sam2, fastest of {repeats} interleaved repeats): ms/frame for 1..{n} objects, "
          "then each extra object's cost / the first object's cost")
    ks = np.arange(1, n + 1, dtype=float)
    for name in modes:
        t = np.array(spf[name])
        first = t[0]
        extra = np.diff(t)
        slope = float(np.polyfit(ks, t, 1)[0])
        print(f"  {name:10s} ms/frame: " + " ".join(f"{k}:{v * 1e3:.0f}" for k, v in zip(range(1, n + 1), t)))
        print(f"  {name:10s} extra / first: " + " ".join(f"{k + 2}:{e / first:.2f}" for k, e in enumerate(extra)))
        print(f"  {name:10s} object {n}: {extra[-1] / first:.2f} of the first; fitted cost per extra object "
              f"{slope * 1e3:.1f} ms/frame = {slope / first:.2f} of the first; {n} objects = {t[-1] / first:.2f}x one")

if __name__ == "__main__":
    main()
