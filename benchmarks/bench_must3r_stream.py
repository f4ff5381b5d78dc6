"""MUSt3R streaming benchmark (random weights; speed and memory do not depend on the values).

Runs a :class:`Must3rStreamingSession` over ``--frames`` synthetic frames and reports, per memory
mode (``kv``, ``norm_y``, ``raw``), the per-frame latency (after warm-up), the frames per second,
the memory-token count and bytes at the end, and the peak accelerator memory (CUDA). Ratios are
against the ``kv`` mode measured in the same run. A second table compares the bounded session
(``--max-keyframes``) with an unbounded one (every keyframe kept) to show that the per-frame cost
stays flat while the unbounded one grows.

Usage: python benchmarks/bench_must3r_stream.py [--preset must3r_512] [--frames 200] [--size 384x512]
       [--device cuda] [--threads 2] [--keyframe-interval 3] [--max-keyframes 16]
For a quick CPU smoke run: --preset tiny --frames 40 --size 64x96
"""
from __future__ import annotations

import argparse
import time

import torch

from threeam.models.must3r import (
    Must3r,
    Must3rConfig,
    Must3rDecoderConfig,
    Must3rEncoderConfig,
    Must3rStreamConfig,
    Must3rStreamingSession,
    build_must3r,
)


def _model(preset: str, memory_mode: str, device: str) -> Must3r:
    if preset == "tiny":
        cfg = Must3rConfig(Must3rEncoderConfig(embed_dim=64, depth=2, num_heads=4),
                           Must3rDecoderConfig(enc_embed_dim=64, embed_dim=64, depth=12, num_heads=4,
                                               memory_mode=memory_mode))
        model = Must3r(cfg)
    else:
        model = build_must3r(preset, memory_mode=memory_mode)
    return model.to(device).eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _run(model, frames, cfg, device):
    session = Must3rStreamingSession(model, cfg)
    times = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for f in frames:
        _sync(device)
        t0 = time.perf_counter()
        session.add_frame(f)
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return session, times, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="must3r_512")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", default="384x512", help="HxW of the network frames (multiples of 16)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keyframe-interval", type=int, default=3)
    ap.add_argument("--max-keyframes", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    H, W = (int(v) for v in args.size.lower().split("x"))
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, H, W + 64, generator=g) * 2 - 1
    frames = [base[:, :, i % 64: i % 64 + W].contiguous() for i in range(args.frames)]
    levels = (0, 4, 7, 11)
    common = dict(feature_levels=levels, keyframe_interval=args.keyframe_interval, compute_camera=True)

    print(f"MUSt3R streaming: preset {args.preset}, {args.frames} frames {H}x{W}, device {args.device}, "
          f"keyframe every {args.keyframe_interval}, max {args.max_keyframes} keyframes")
    print(f"{'mode':8s} {'ms/frame':>9s} {'fps':>7s} {'vs kv':>6s} {'mem tokens':>10s} {'mem MiB':>8s} {'peak MiB':>9s}")
    baseline = None
    for mode in ("kv", "norm_y", "raw"):
        model = _model(args.preset, mode, args.device)
        cfg = Must3rStreamConfig(max_keyframes=args.max_keyframes, **common)
        session, times, peak = _run(model, frames, cfg, args.device)
        ms = 1000 * sum(times[args.warmup:]) / max(len(times) - args.warmup, 1)
        baseline = baseline or ms
        print(f"{mode:8s} {ms:9.2f} {1000 / ms:7.1f} {baseline / ms:6.2f} {session.memory_tokens:10d} "
              f"{session.memory.nbytes() / 2**20:8.1f} {peak:9.1f}")

    model = _model(args.preset, "kv", args.device)
    print("\nbounded vs unbounded memory (kv): mean ms/frame over the last 20% of the stream")
    rows = {}
    for name, max_kf in (("bounded", args.max_keyframes), ("unbounded", 10 ** 9)):
        cfg = Must3rStreamConfig(max_keyframes=max_kf, **common)
        session, times, peak = _run(model, frames, cfg, args.device)
        tail = times[-max(len(times) // 5, 1):]
        rows[name] = 1000 * sum(tail) / len(tail)
        print(f"{name:10s} {rows[name]:9.2f} ms/frame  memory tokens {session.memory_tokens:7d}  peak {peak:9.1f} MiB")
    print(f"unbounded / bounded time ratio at the end of the stream: {rows['unbounded'] / rows['bounded']:.2f}")


if __name__ == "__main__":
    main()
