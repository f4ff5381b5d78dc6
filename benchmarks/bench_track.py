"""Tracking speed: 3AM against SAM 2 measured in the same run (ratio), on a generated video.

Both predictors share the SAM 2 weights (deterministic random weights: speed does not depend on
them); 3AM adds MUSt3R (once per frame) and the Feature Merger. Prints frames per second of
`propagate_in_video` for each, the 3AM/SAM 2 time ratio, and peak CUDA memory on a GPU.

Usage:
  python benchmarks/bench_track.py                          # CPU smoke: debug SAM 2 + tiny MUSt3R
  python benchmarks/bench_track.py --preset 3am_hiera_l --device cuda --frames 60 --size 480x640
"""
from __future__ import annotations

import argparse
import time

import torch

from threeam.data.synth import generate_scene, synth_config
from threeam.models.three_am import ThreeAM
from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor
from threeam.predictor.video_predictor import VideoPredictor


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _run(predictor, video, device: str, bf16: bool) -> tuple[float, float]:
    h, w = video.shape[1:3]
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (bf16 and device.startswith("cuda")) else torch.no_grad()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with ctx:
        state = predictor.init_state(video)
        predictor.add_new_points_or_box(state, 0, 1, box=[w // 4, h // 4, 3 * w // 4, 3 * h // 4])
        _sync(device)
        t0 = time.perf_counter()
        n = sum(1 for _ in predictor.propagate_in_video(state))
        _sync(device)
        dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return n / dt, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="3am_tiny", help="3AM preset (its SAM 2 part is the baseline)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", default="96x128", help="HxW of the generated video")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    scene = generate_scene(synth_config("tiny", n_frames=args.frames, height=h, width=w), seed=0)
    video = torch.stack([torch.from_numpy(scene.frame(i).rgb) for i in range(args.frames)]).numpy()
    torch.manual_seed(0)
    model = ThreeAM(args.preset).to(args.device).eval()
    sam2 = VideoPredictor(model.sam2, progress=False)
    three = ThreeAMVideoPredictor(model, progress=False)
    _run(sam2, video[:2], args.device, not args.no_bf16)  # warm-up
    _run(three, video[:2], args.device, not args.no_bf16)
    best = {}
    for name, pred in (("sam2", sam2), ("3am", three)):
        runs = [_run(pred, video, args.device, not args.no_bf16) for _ in range(args.repeats)]
        best[name] = max(runs)
    print(f"device {args.device}, preset {args.preset}, {args.frames} frames {h}x{w}, best of {args.repeats}")
    for name, (fps, peak) in best.items():
        print(f"  {name:5s} {fps:8.2f} frames/s   peak CUDA memory {peak:.2f} GiB")
    print(f"  3AM time per frame / SAM 2 time per frame = {best['sam2'][0] / best['3am'][0]:.2f}")


if __name__ == "__main__":
    main()
