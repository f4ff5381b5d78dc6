"""Frame preparation: our loader against a re-implementation of the official SAM 2 recipe.

Measured in the same run, interleaved (official, ours, official, ours, ...), on a generated video
written as a JPEG folder and as an mp4:

1. Whole-video loading: the official recipe (`official_recipe.py`: decode, PIL bicubic resize,
   float64 / 255, float32 store, in-place mean/std) against ours, eager (``streaming=False``) and
   streaming (every frame indexed in order, read-ahead on its background thread). Prints seconds
   per frame and the official/ours ratio (> 1: ours is faster), and checks that every model
   input is bit-identical.
2. Loading plus a stand-in model step per frame (a torch matmul, ``--step-size``): the official
   recipe loads the whole video, then steps; ours streams and steps, the read-ahead overlapping
   with the steps (what tracking sees).
3. Per-frame preparation only (the decoded image already in memory): the official steps against
   `threeam.io.frame_prep.prepare_frame`.
4. Time to the first frame (``load_video_frames`` + ``images[0]``) against video length
   (default 500 and 5000 frames, folder and mp4): flat for the streaming loader; the official
   recipe's (it decodes everything first) is shown for the shortest length.

Usage:
  python benchmarks/bench_frames.py                       # 60 frames 540x960 -> 1024, lengths 500/5000
  python benchmarks/bench_frames.py --frames 200 --repeats 5 --lengths 500 5000 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_recipe import MEAN, STD, load_jpeg_folder_official_style, load_video_file_official_style  # noqa: E402

from threeam.io.frame_prep import prepare_frame  # noqa: E402
from threeam.io.frame_stream import FrameCacheConfig  # noqa: E402
from threeam.io.synthetic_video import SyntheticVideo, write_mp4  # noqa: E402
from threeam.io.video import load_video_frames  # noqa: E402


def _write_jpegs(folder: Path, video, n: int, quality: int = 90) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    first = video[0]
    for t in range(n):
        # long videos: reuse a few frames (the file count is what matters for time to first frame)
        frame = video[t] if n <= 1000 or t < 8 else first
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=quality)
    return folder


def _stream_all(source, s: int, cache: FrameCacheConfig | None = None, keep: bool = False) -> list[torch.Tensor]:
    """Index every frame in order (as a tracking loop does); `keep` returns them (for checking)."""
    images = load_video_frames(source, s, cache=cache).images
    out = []
    for t in range(len(images)):
        x = images[t]
        if keep:
            out.append(x)
    images.close()
    return out


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _interleaved(first, second, repeats: int):
    """Time `first` and `second` alternately, `repeats` times each: ``(median s of first, median s of
    second, first's result, second's result)``."""
    a, b = [], []
    for _ in range(repeats):
        dt, ra = _timed(first)
        a.append(dt)
        dt, rb = _timed(second)
        b.append(dt)
    return statistics.median(a), statistics.median(b), ra, rb


def _whole_video(name: str, source: str, official, s: int, repeats: int) -> None:
    times = {"official": [], "ours eager": [], "ours streaming": [], "streaming, 4 cached": []}
    small_cache = FrameCacheConfig(max_frames=4, read_ahead=2)
    checked = False
    official(source, s)  # warm-up (imports, file cache), not timed
    load_video_frames(source, s, streaming=False)
    for _ in range(repeats):
        dt, (ref, _, _) = _timed(lambda: official(source, s))
        times["official"].append(dt)
        dt, eager = _timed(lambda: load_video_frames(source, s, streaming=False).images)
        times["ours eager"].append(dt)
        dt, streamed = _timed(lambda: _stream_all(source, s))
        small = None
        times["ours streaming"].append(dt)
        dt, _ = _timed(lambda: _stream_all(source, s, small_cache))
        times["streaming, 4 cached"].append(dt)
        if not checked:
            streamed = _stream_all(source, s, keep=True)
            small = _stream_all(source, s, small_cache, keep=True)
            assert ref.shape == eager.shape, (ref.shape, eager.shape)
            assert torch.equal(ref, eager), f"{name}: eager inputs differ from the official recipe"
            assert all(torch.equal(ref[t], streamed[t]) for t in range(len(ref))), f"{name}: streamed inputs differ"
            assert all(torch.equal(ref[t], small[t]) for t in range(len(ref))), f"{name}: streamed inputs differ"
            checked = True
        del ref, eager, streamed, small
    n = len(load_video_frames(source, s).images)
    base = statistics.median(times["official"])
    print(f"\n[{name}] {n} frames -> {s}x{s}, median of {repeats} (interleaved); inputs bit-identical: yes")
    print(f"  {'loader':<20} {'ms/frame':>9} {'official/ours':>14}")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:<20} {1e3 * med / n:9.2f} {base / med:14.2f}")


def _with_model_step(name: str, source: str, official, s: int, repeats: int, step_n: int) -> None:
    """Loading plus a stand-in model step per frame (a torch matmul, which releases the GIL like a
    real forward pass): the official recipe loads everything, then steps; streaming overlaps the
    read-ahead with the steps."""
    a = torch.randn(step_n, step_n)

    def step(x):
        return float((a @ a)[0, 0]) + float(x[0, 0, 0])

    def official_then_step():
        images, _, _ = official(source, s)
        return [step(images[t]) for t in range(len(images))]

    def streaming_with_step():
        images = load_video_frames(source, s).images
        out = [step(images[t]) for t in range(len(images))]
        images.close()
        return out

    t0 = time.perf_counter()
    for _ in range(5):
        step(torch.zeros(1, 1, 1))
    step_ms = (time.perf_counter() - t0) / 5 * 1e3
    a, b, ra, rb = _interleaved(official_then_step, streaming_with_step, repeats)
    assert ra == rb
    n = len(ra)
    print(f"\n[{name} + a {step_ms:.0f} ms model step per frame] median of {repeats} (interleaved)")
    print(f"  official recipe, then steps {1e3 * a / n:8.1f} ms/frame")
    print(f"  ours streaming with steps   {1e3 * b / n:8.1f} ms/frame   official/ours {a / b:5.2f}")


def _per_frame(video, s: int, repeats: int, count: int = 20) -> None:
    count = min(count, len(video))
    imgs = [Image.fromarray(video[t]) for t in range(count)]
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]

    def official():
        out = []
        for img in imgs:
            x = torch.zeros(3, s, s)
            x[:] = torch.from_numpy(np.array(img.convert("RGB").resize((s, s))) / 255.0).permute(2, 0, 1)
            x -= mean
            x /= std
            out.append(x)
        return out

    def ours():
        return [prepare_frame(img, s) for img in imgs]

    a, b, ra, rb = _interleaved(official, ours, repeats)
    assert all(torch.equal(x, y) for x, y in zip(ra, rb))
    h, w = video.height, video.width
    print(f"\n[preparation only] {h}x{w} decoded image -> {s}x{s} input, median of {repeats} x {count} frames")
    print(f"  official {1e3 * a / count:7.2f} ms/frame   ours {1e3 * b / count:7.2f} ms/frame   "
          f"official/ours {a / b:5.2f}   (bit-identical)")


def _ttff(tmp: Path, lengths: list[int], s: int, size: tuple[int, int], repeats: int) -> None:
    video = SyntheticVideo(max(lengths), size[0], size[1], seed=1)
    print(f"\n[time to first frame] load_video_frames + images[0], {size[0]}x{size[1]} frames -> {s}x{s}, "
          f"median of {repeats}")
    print(f"  {'source':<8} {'frames':>7} {'ours (s)':>9} {'official recipe (s)':>20}")
    for n in lengths:
        folder = _write_jpegs(tmp / f"ttff_{n}", video, n)
        mp4 = write_mp4(tmp / f"ttff_{n}.mp4", (video[t] for t in range(n)), fps=30)
        for kind, src, official in (("folder", str(folder), load_jpeg_folder_official_style),
                                    ("mp4", mp4, load_video_file_official_style)):
            ours = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                v = load_video_frames(src, s)
                v.images[0]
                ours.append(time.perf_counter() - t0)
                v.images.close()
            off = ""
            if n == min(lengths):
                dt, _ = _timed(lambda: official(src, s))
                off = f"{dt:20.2f}"
            print(f"  {kind:<8} {n:7d} {statistics.median(ours):9.3f} {off:>20}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60, help="frames of the whole-video comparison")
    ap.add_argument("--size", default="540x960", help="HxW of the generated video")
    ap.add_argument("--image-size", type=int, default=1024, help="model input size S")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lengths", type=int, nargs="*", default=[500, 5000], help="video lengths for time to first frame")
    ap.add_argument("--ttff-size", default="256x256", help="HxW of the time-to-first-frame videos")
    ap.add_argument("--ttff-image-size", type=int, default=256, help="model input size for time to first frame "
                    "(the official recipe holds every frame at this size)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--step-size", type=int, default=1024, help="matrix size of the stand-in model step "
                    "(0: skip that section)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    video = SyntheticVideo(args.frames, h, w, seed=0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        folder = _write_jpegs(tmp / "frames", video, args.frames)
        mp4 = write_mp4(tmp / "video.mp4", (video[t] for t in range(args.frames)), fps=30)
        _whole_video("jpeg folder", str(folder), load_jpeg_folder_official_style, args.image_size, args.repeats)
        _whole_video("mp4 (PyAV decode)", mp4, load_video_file_official_style, args.image_size, args.repeats)
        if args.step_size > 0:
            _with_model_step("jpeg folder", str(folder), load_jpeg_folder_official_style, args.image_size,
                             args.repeats, args.step_size)
        _per_frame(video, args.image_size, args.repeats)
        if args.lengths:
            th, tw = (int(v) for v in args.ttff_size.lower().split("x"))
            _ttff(tmp, sorted(args.lengths), args.ttff_image_size, (th, tw), args.repeats)


if __name__ == "__main__":
    main()
