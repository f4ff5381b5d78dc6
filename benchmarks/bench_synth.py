"""Synthetic-data benchmark.

1. Time to render one synthetic scene of 100 frames at 256x256 (the default preset) on this
   machine's CPU threads (``--threads``, default 2), and the per-frame time.
2. FoV-aware vs random vs continuous clip sampling on synthetic scenes: share of non-reference
   clip frames (object present) whose visible object surface overlaps the reference view
   (>= 10% of the frame's object pixels land on the same visible surface in the reference),
   the mean overlap fraction, and the share of object-absent frames.

Usage: python benchmarks/bench_synth.py [--threads 2] [--scenes 4] [--clips 300] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import torch

from threeam.data.sampling import SamplerConfig, measure_sampler_overlap
from threeam.data.synth import generate_scene, get_synth_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scenes", type=int, default=4, help="scenes for the sampler comparison")
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = get_synth_config("default", device=args.device)
    generate_scene(get_synth_config("tiny", device=args.device), seed=0)  # warm-up
    t0 = time.perf_counter()
    scene = generate_scene(cfg, seed=0)
    dt = time.perf_counter() - t0
    print(f"render: {len(scene)} frames at {cfg.height}x{cfg.width} on {args.threads} thread(s) ({args.device}): "
          f"{dt:.2f} s total, {1000 * dt / len(scene):.1f} ms/frame "
          f"({len(scene.meta['objects'])} objects, {scene.meta['trajectory']} trajectory)")

    scenes = [scene] + [generate_scene(cfg, seed=s) for s in range(1, args.scenes)]
    t0 = time.perf_counter()
    res = measure_sampler_overlap(scenes, n_clips=args.clips, cfg=SamplerConfig(), seed=0)
    dt = time.perf_counter() - t0
    print(f"sampler overlap ({args.scenes} scenes x 100 frames, {args.clips} clips of 8, tau=0.25; {dt:.1f} s):")
    print(f"  {'mode':<11} {'share>=0.1':>10} {'share>=0.5':>10} {'mean overlap':>12} {'absent share':>12} {'frames':>7}")
    for mode in ("fov", "random", "continuous"):
        r = res[mode]
        print(f"  {mode:<11} {r['overlap_share']:>10.3f} {r['overlap_share_50']:>10.3f} {r['mean_overlap']:>12.3f} {r['absent_share']:>12.3f} "
              f"{int(r['frames']):>7}")


if __name__ == "__main__":
    main()
