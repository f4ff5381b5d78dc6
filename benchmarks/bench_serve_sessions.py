"""Memory of the web app's sessions: process RSS (and CUDA memory on a GPU) before, during and after
opening, using and closing N sessions through the real HTTP API (in-process client).

Each session opens a generated video, clicks once, propagates both ways and exports the three
files; then it is closed. The baseline is taken after one warm-up session (lazily built caches and
allocator pools), so "after" minus "baseline" is what the sessions leaked.

Usage:
  python benchmarks/bench_serve_sessions.py                       # CPU: tiny SAM 2, 5 sessions
  python benchmarks/bench_serve_sessions.py --sessions 20 --frames 60 --size 480x640
  python benchmarks/bench_serve_sessions.py --model 3am --device cuda --preset 3am_hiera_l --checkpoint DIR
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc; psutil-free)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cuda_mib() -> float:
    return torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


def make_video(folder: Path, frames: int, h: int, w: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    for t in range(frames):
        f = base.copy()
        x0 = int((w // 2) * t / max(1, frames - 1))
        f[h // 4:h // 2, x0:x0 + w // 4] = (220, 40, 40)
        Image.fromarray(f).save(folder / f"{t:05d}.jpg", quality=92)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", default="120x160", help="HxW of the generated video")
    ap.add_argument("--model", default="sam2")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from fastapi.testclient import TestClient

    from threeam.commands.serve import build_serve_predictor
    from threeam.serve.app import create_app
    from threeam.serve.config import ServeConfig

    h, w = (int(v) for v in args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    make_video(root / "clip", args.frames, h, w)
    predictor, label = build_serve_predictor(args.model, args.preset, None, args.checkpoint,
                                             args.checkpoint is None, 0, args.device)
    app = create_app(predictor, ServeConfig(root=root, allowed_hosts=("testserver",), max_sessions=2))
    rows = []
    with TestClient(app) as c:
        def cycle() -> tuple[float, float]:
            sid = c.post("/api/sessions", json={"path": "clip"}).json()["id"]
            c.post(f"/api/sessions/{sid}/prompts", json={"frame": 0, "obj_id": 1, "points": [[w * 3 / 8, h * 3 / 8]],
                                                        "labels": [1]})
            t0 = time.perf_counter()
            c.post(f"/api/sessions/{sid}/propagate", json={"direction": "both"})
            dt = time.perf_counter() - t0
            c.post(f"/api/sessions/{sid}/export", json={})
            during = rss_mib()
            c.delete(f"/api/sessions/{sid}")
            return during, dt

        cycle()  # warm-up
        gc.collect()
        base, base_cuda = rss_mib(), cuda_mib()
        peak = base
        for i in range(args.sessions):
            during, dt = cycle()
            peak = max(peak, during)
            rows.append({"session": i + 1, "rss_open_mib": round(during, 1), "rss_closed_mib": round(rss_mib(), 1),
                         "propagate_s": round(dt, 3)})
        gc.collect()
        after, after_cuda = rss_mib(), cuda_mib()
    for r in rows:
        print(json.dumps(r))
    print(f"model: {label}; video {args.frames} frames {h}x{w}; {args.sessions} sessions")
    print(f"RSS baseline {base:.1f} MiB, peak with a session open {peak:.1f} MiB, "
          f"after closing all {after:.1f} MiB ({after - base:+.1f} MiB)")
    if torch.cuda.is_available():
        print(f"CUDA allocated baseline {base_cuda:.1f} MiB, after {after_cuda:.1f} MiB ({after_cuda - base_cuda:+.1f})")


if __name__ == "__main__":
    main()
