"""Memory over a long video: RSS (and CUDA allocated memory) every N frames while tracking one object.

One object is prompted with a box on frame 0 of a long generated video (default 10,000 frames of
256x256: a disc moving over a textured background), then `propagate_in_video` runs to the end.
Every ``--every`` frames the script records the process RSS (after a garbage collection) and,
on CUDA, ``torch.cuda.memory_allocated``, plus the number of per-frame outputs the session holds
("held") and, for 3AM, the merged features cached ("merged"). A ``frames`` run streams the same video through the frame loader alone (no model; "held"
is then the number of cached frames) to show that the loader's memory is flat.
It reports the growth between frame ``--from`` (default 1,000) and the last frame; the goal
(issue 11) is under 5%.

The video is synthesised on the fly (`threeam.io.synthetic_video.SyntheticVideo`, a lazy
array-like source: the frames are never all in memory) or, with ``--mp4``, written to a
temporary mp4 first and streamed from it.

Models (deterministic random weights: memory does not depend on them), built with
`threeam.predictor.build.build_predictor`:
  sam2: the debug SAM 2 config (``threeam.models.three_am.debug_sam2_config()``, 256 input) or
        ``--sam2-preset NAME`` (e.g. sam2.1_hiera_t);
  3am:  ``--threeam-preset`` (default 3am_tiny).

Usage:
  python benchmarks/bench_long_video.py                                 # both models, 10,000 frames
  python benchmarks/bench_long_video.py --models sam2 --frames 2000 --every 250 --from 500
  python benchmarks/bench_long_video.py --device cuda --sam2-preset sam2.1_hiera_t --threeam-preset 3am_hiera_t
"""
from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

import torch

from threeam.io.synthetic_video import SyntheticVideo, write_mp4
from threeam.predictor.build import build_predictor


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def held_outputs(state) -> int:
    """Per-frame outputs the session holds over all objects (prompted + tracked)."""
    n = 0
    for bank in getattr(state, "output_dict_per_obj", {}).values():
        n += sum(len(v) for v in bank.values())
    return n


def track(predictor, video, box: list[float], device: str, every: int, progress: bool = False) -> list[dict]:
    """Prompt `box` on frame 0, propagate to the end; one record every `every` frames."""
    cuda = torch.device(device).type == "cuda"
    state = predictor.init_state(video)
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=box)
    records = []
    t0 = time.perf_counter()
    for frame_idx, _, masks in predictor.propagate_in_video(state, progress=progress):
        done = frame_idx + 1
        if done % every == 0 or done == state.num_frames:
            del masks
            gc.collect()
            rec = {"frame": done, "rss_mib": rss_mib(), "outputs": held_outputs(state),
                   "seconds": time.perf_counter() - t0}
            geo = getattr(state, "three_am", None)
            if geo is not None:
                rec["merged"] = len(geo.merged)
            if cuda:
                torch.cuda.synchronize()
                rec["cuda_alloc_mib"] = torch.cuda.memory_allocated() / 2**20
            records.append(rec)
    return records


def frames_only(video, image_size: int, device: str, every: int) -> list[dict]:
    """Index every frame of a streaming load once, in order; one record every `every` frames."""
    from threeam.io.video import load_video_frames

    cuda = torch.device(device).type == "cuda"
    images = load_video_frames(video, image_size, device=device).images
    records = []
    t0 = time.perf_counter()
    for t in range(len(images)):
        images[t]
        done = t + 1
        if done % every == 0 or done == len(images):
            gc.collect()
            rec = {"frame": done, "rss_mib": rss_mib(), "outputs": images.cache_info()["cached"],
                   "seconds": time.perf_counter() - t0}
            if cuda:
                torch.cuda.synchronize()
                rec["cuda_alloc_mib"] = torch.cuda.memory_allocated() / 2**20
            records.append(rec)
    images.close()
    return records


def _report(records: list[dict], start: int) -> None:
    cuda = "cuda_alloc_mib" in records[-1]
    merged = "merged" in records[-1]
    print(f"  {'frame':>7} {'RSS MiB':>9} {'CUDA MiB':>9} {'held':>8}" + (f" {'merged':>7}" if merged else "")
          + f" {'s':>8}")
    for r in records:
        c = f"{r['cuda_alloc_mib']:9.1f}" if cuda else f"{'-':>9}"
        m = f" {r['merged']:7d}" if merged else ""
        print(f"  {r['frame']:7d} {r['rss_mib']:9.1f} {c} {r['outputs']:8d}{m} {r['seconds']:8.1f}")
    line = f"  growth frame {start} -> {records[-1]['frame']}: RSS {100 * growth(records, start, 'rss_mib'):+.1f}%"
    if cuda:
        line += f", CUDA allocated {100 * growth(records, start, 'cuda_alloc_mib'):+.1f}%"
    line += f", held at the end: {records[-1]['outputs']}"
    print(line)


def growth(records: list[dict], start: int, key: str) -> float:
    """Relative growth of `key` from the first record at or after frame `start` to the last."""
    base = next((r for r in records if r["frame"] >= start), records[0])
    return (records[-1][key] - base[key]) / max(base[key], 1e-9)


def _build(name: str, args):
    from threeam.models.three_am import debug_sam2_config

    opts = dict(device=args.device, random_weights=True, seed=0, progress=False)
    if name == "sam2":
        preset = args.sam2_preset or debug_sam2_config()
        return build_predictor("sam2", preset=preset, **opts)
    return build_predictor("3am", preset=args.three_am_preset, **opts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["frames", "sam2", "3am"], choices=["frames", "sam2", "3am"],
                    help="'frames': the streaming loader alone (no model), at --frames-size")
    ap.add_argument("--frames-size", type=int, default=1024, help="model input size S for the 'frames' run")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1_000)
    ap.add_argument("--from", dest="start", type=int, default=1_000, help="growth is measured from this frame")
    ap.add_argument("--size", default="256x256", help="HxW of the generated video")
    ap.add_argument("--mp4", action="store_true", help="stream from a generated mp4 instead of the lazy array")
    ap.add_argument("--sam2-preset", default=None, help="SAM 2 preset (default: the debug config)")
    ap.add_argument("--threeam-preset", dest="three_am_preset", default="3am_tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    synth = SyntheticVideo(args.frames, h, w, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        source = synth
        if args.mp4:
            t0 = time.perf_counter()
            source = write_mp4(os.path.join(tmp, "long.mp4"), (synth[t] for t in range(args.frames)), fps=30)
            print(f"wrote {args.frames} frames to an mp4 in {time.perf_counter() - t0:.1f} s")
        for name in args.models:
            if name == "frames":
                print(f"\n[frames only] {args.frames} frames {h}x{w} -> {args.frames_size}, streamed, no model")
                records = frames_only(source, args.frames_size, args.device, args.every)
                _report(records, args.start)
                continue
            predictor = _build(name, args)
            print(f"\n[{name}] {args.frames} frames {h}x{w} -> {predictor.image_size}, device {args.device}, "
                  f"source {'mp4' if args.mp4 else 'lazy array'}")
            records = track(predictor, source, synth.box(0), args.device, args.every, progress=args.progress)
            _report(records, args.start)
            del predictor
            gc.collect()


if __name__ == "__main__":
    main()
