"""Streaming frames: bit-identical model inputs, seeking, read-ahead, bounded cache, errors."""
from __future__ import annotations

import gc
import random
import threading
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from threeam.errors import InputError, VideoError
from threeam.io.frame_prep import IMG_MEAN, IMG_STD, normalisation_table, prepare_frame, reference_model_input
from threeam.io.frame_sources import VideoFileSource
from threeam.io.frame_stream import FrameCacheConfig, StreamingFrames
from threeam.io.video import load_video_frames, read_video

av = pytest.importorskip("av")


def _frames(t=12, h=24, w=32, seed=0):
    """Frames that differ from each other (a moving band plus noise), uint8 (T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)
    for i in range(t):
        out[i, :, (3 * i) % w] = 255
    return out


def _write_folder(folder, frames, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}{ext}")
    return folder


def _write_video(path, frames, codec="libx264", rate=10, pts=None, gop=5):
    """Encode frames; `pts` (milliseconds) gives variable frame timing."""
    t, h, w, _ = frames.shape
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"g": str(gop), "bf": "2", "keyint_min": str(gop)}
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts is not None:
                vf.pts, vf.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _official_recipe(frame: np.ndarray, s: int) -> torch.Tensor:
    """The official SAM 2 loader's steps, written out: PIL resize (default filter) of the RGB
    image, numpy float64 /255, stored as float32, then in-place mean/std in float32."""
    img = np.array(Image.fromarray(frame).convert("RGB").resize((s, s)))
    img = img / 255.0
    out = torch.zeros(3, s, s, dtype=torch.float32)
    out[:] = torch.from_numpy(img).permute(2, 0, 1)
    out -= torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    out /= torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return out


# ---- preparation ------------------------------------------------------------------------------

def test_normalisation_table_matches_float64_division_then_float32_ops():
    v = np.arange(256)
    official = ((v / 255.0).astype(np.float32)[None, :] - np.float32(IMG_MEAN)[:, None]) / np.float32(IMG_STD)[:, None]
    np.testing.assert_array_equal(normalisation_table(), official.astype(np.float32))


def test_every_uint8_value_normalises_to_its_table_entry():
    frame = np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16)] * 3, axis=-1)
    frame[..., 1] = frame[..., 1][::-1]
    out = prepare_frame(frame, 16).numpy()
    table = normalisation_table()
    for c in range(3):
        np.testing.assert_array_equal(out[c], table[c][frame[..., c]])


@pytest.mark.parametrize("h, w, s", [(24, 32, 16), (20, 20, 20), (9, 13, 32), (48, 17, 24)])
def test_prepare_frame_is_bit_identical_to_the_official_recipe(h, w, s):
    frame = _frames(t=1, h=h, w=w, seed=h * w)[0]
    ours = prepare_frame(frame, s)
    assert ours.dtype == torch.float32 and ours.shape == (3, s, s)
    assert torch.equal(ours, _official_recipe(frame, s))
    assert torch.equal(ours, reference_model_input(frame, s))
    assert torch.equal(prepare_frame(Image.fromarray(frame), s), ours)  # PIL input, same values


# ---- streaming == eager, bit for bit ----------------------------------------------------------

def _sources(tmp_path):
    frames = _frames()
    yield "png", _write_folder(tmp_path / "png", frames, ".png")
    yield "jpg", _write_folder(tmp_path / "jpg", frames, ".jpg")
    yield "mp4", _write_video(tmp_path / "v.mp4", frames)
    yield "array", frames


@pytest.mark.parametrize("order", ["forward", "backward", "shuffled"])
def test_streaming_inputs_equal_the_eager_path(tmp_path, order):
    for kind, src in _sources(tmp_path):
        eager = load_video_frames(src, 16, streaming=False)
        lazy = load_video_frames(src, 16, cache=FrameCacheConfig(max_frames=4, read_ahead=2))
        n = eager.num_frames
        assert lazy.num_frames == n == 12, kind
        assert (lazy.video_height, lazy.video_width) == (eager.video_height, eager.video_width) == (24, 32)
        idx = list(range(n))
        if order == "backward":
            idx.reverse()
        elif order == "shuffled":
            random.Random(3).shuffle(idx)
        raw = read_video(src)
        for t in idx:
            assert torch.equal(lazy.images[t], eager.images[t]), (kind, t)
            # and the eager path is the one-frame recipe on the decoded frames
            assert torch.equal(eager.images[t], reference_model_input(raw[t], 16)), (kind, t)
            np.testing.assert_array_equal(lazy.images.raw(t), raw[t])
        assert lazy.images.cache_info()["cached"] <= 4
        lazy.images.close()


def test_video_file_seeking_matches_sequential_decoding(tmp_path):
    frames = _frames(t=40, h=32, w=48)
    path = _write_video(tmp_path / "long.mp4", frames, gop=6)
    sequential = read_video(path)  # decoded once from the start
    src = VideoFileSource(path)
    assert src.num_frames == 40 and src.fps == pytest.approx(10.0)
    order = list(range(40))
    random.Random(0).shuffle(order)
    for t in order + list(reversed(range(40))):
        np.testing.assert_array_equal(src.read(t), sequential[t], err_msg=f"frame {t}")
    src.close()


def test_video_without_frame_count_is_counted_exactly(tmp_path):
    frames = _frames(t=17, h=32, w=48)
    path = _write_video(tmp_path / "clip.mkv", frames, codec="mpeg4")
    src = VideoFileSource(path)
    assert src.num_frames == len(read_video(path)) == 17
    np.testing.assert_array_equal(src.read(16), read_video(path)[16])


def test_variable_frame_rate_video_is_numbered_in_decode_order(tmp_path):
    frames = _frames(t=30, h=32, w=48)
    pts = [0]
    for i in range(1, 30):
        pts.append(pts[-1] + (40 if i % 3 else 170))  # irregular gaps
    path = _write_video(tmp_path / "vfr.mp4", frames, pts=pts)
    sequential = read_video(path)
    src = VideoFileSource(path)
    assert src.num_frames == len(sequential) == 30
    for t in random.Random(1).sample(range(30), 30):
        np.testing.assert_array_equal(src.read(t), sequential[t], err_msg=f"frame {t}")


def test_gap_in_the_middle_of_a_constant_rate_video(tmp_path, recwarn):
    frames = _frames(t=30, h=32, w=48)
    pts = [100 * i for i in range(15)] + [100 * i + 300 for i in range(15, 30)]  # two frames missing
    path = _write_video(tmp_path / "gap.mp4", frames, pts=pts)
    sequential = read_video(path)
    src = VideoFileSource(path)
    assert src.num_frames == len(sequential) == 30
    for t in [29, 14, 15, 0, 22, 16]:
        np.testing.assert_array_equal(src.read(t), sequential[t], err_msg=f"frame {t}")
    assert not [w for w in recwarn if "timestamps" in str(w.message)]


def test_video_bytes_are_accepted(tmp_path):
    frames = _frames(t=6)
    path = _write_video(tmp_path / "b.mp4", frames)
    from_bytes = load_video_frames(path.read_bytes(), 16)
    from_path = load_video_frames(path, 16, streaming=False)
    assert from_bytes.num_frames == 6
    for t in (5, 0, 3):
        assert torch.equal(from_bytes.images[t], from_path.images[t])


# ---- read-ahead and cache ---------------------------------------------------------------------

def test_read_ahead_follows_the_direction_of_access(tmp_path):
    folder = _write_folder(tmp_path / "v", _frames(t=30))
    frames = load_video_frames(folder, 16, cache=FrameCacheConfig(max_frames=10, read_ahead=3)).images
    frames[10]
    frames[11]  # forward
    assert frames.wait_read_ahead()
    ahead = set(frames._engine.prepared)
    assert {12, 13, 14} <= ahead and 15 not in ahead
    frames[20]
    frames[19]  # backward
    assert frames.wait_read_ahead()
    assert {18, 17, 16} <= set(frames._engine.prepared)
    info = frames.cache_info()
    assert info["read_ahead"] >= 6 and info["cached"] <= 10


def test_sequential_reads_are_served_by_the_read_ahead(tmp_path):
    path = _write_video(tmp_path / "v.mp4", _frames(t=30))
    frames = load_video_frames(path, 16, cache=FrameCacheConfig(max_frames=6, read_ahead=4)).images
    for t in range(30):
        frames[t]
    info = frames.cache_info()
    assert info["misses"] <= 2  # frame 0 at load, at most one race at the start
    assert info["cached"] <= 6 and info["evicted"] >= 30 - 6


def test_cache_limits(tmp_path):
    frames = _frames(t=20)
    video = load_video_frames(frames, 16, cache=FrameCacheConfig(max_frames=None, max_mib=3 * 16 * 16 * 4 * 5 / 2**20,
                                                                  read_ahead=2))
    assert video.images.capacity == 5
    for t in range(20):
        video.images[t]
    assert video.images.cache_info()["cached"] <= 5
    with pytest.raises(InputError, match="max_mib"):
        load_video_frames(frames, 1024, cache=FrameCacheConfig(max_mib=1))
    for bad in (dict(max_frames=0), dict(read_ahead=-1), dict(max_mib=0), dict(raw_frames=-2)):
        with pytest.raises(InputError):
            FrameCacheConfig(**bad)


def test_no_read_ahead_and_no_raw_cache(tmp_path):
    frames = _frames(t=5)
    video = load_video_frames(frames, 16, cache=FrameCacheConfig(read_ahead=0, raw_frames=0))
    assert video.images._engine.threads == []
    for t in (4, 2, 2):
        assert torch.equal(video.images[t], prepare_frame(frames[t], 16))
        np.testing.assert_array_equal(video.images.raw(t), frames[t])
    assert video.images.cache_info()["cached_raw"] == 0


def test_tensor_like_behaviour():
    frames = _frames(t=5)
    images = load_video_frames(frames, 16).images
    assert len(images) == 5 and images.shape == (5, 3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(images[-1], images[4])
    assert torch.equal(images[1:3], torch.stack([images[1], images[2]]))
    assert sum(1 for _ in images) == 5
    with pytest.raises(IndexError):
        images[5]
    with pytest.raises(TypeError):
        images[1.5]
    raw = images.raw(2)
    assert not raw.flags.writeable
    with pytest.raises(ValueError):
        raw[0, 0, 0] = 1


def test_concurrent_readers_get_correct_frames(tmp_path):
    path = _write_video(tmp_path / "v.mp4", _frames(t=24))
    eager = load_video_frames(path, 16, streaming=False).images
    images = load_video_frames(path, 16, cache=FrameCacheConfig(max_frames=5, read_ahead=2)).images
    failures = []

    def reader(seed):
        rng = random.Random(seed)
        for _ in range(30):
            t = rng.randrange(24)
            if not torch.equal(images[t], eager[t]):
                failures.append(t)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == []


# ---- errors and lifetime ----------------------------------------------------------------------

def test_background_error_is_raised_on_the_caller_naming_the_frame(tmp_path):
    folder = _write_folder(tmp_path / "v", _frames(t=6))
    (folder / "00003.png").write_bytes(b"not a png at all")
    images = load_video_frames(folder, 16, cache=FrameCacheConfig(read_ahead=3)).images
    images[1]
    assert images.wait_read_ahead()
    assert 3 in images._engine.errors  # failed on the read-ahead thread
    assert torch.equal(images[2], images[2])
    with pytest.raises(VideoError, match=r"00003\.png"):
        images[3]
    with pytest.raises(VideoError, match=r"00003\.png"):  # and again when asked again
        images[3]
    assert images[4].shape == (3, 16, 16)  # the frames after it are fine


def test_bad_frame_of_a_lazy_sequence_is_named():
    class Frames:
        def __len__(self):
            return 4

        def __getitem__(self, t):
            if t == 2:
                return np.zeros((8, 8, 3), dtype=np.float32)
            return np.full((8, 8, 3), 10 * t, dtype=np.uint8)

    images = load_video_frames(Frames(), 8).images
    assert torch.equal(images[3], prepare_frame(np.full((8, 8, 3), 30, dtype=np.uint8), 8))
    with pytest.raises(VideoError, match="frame 2 .*uint8"):
        images[2]


def test_close_and_garbage_collection_stop_the_thread(tmp_path):
    images = load_video_frames(_frames(t=10), 16).images
    threads = images._engine.threads
    assert len(threads) == 2 and all(th.is_alive() for th in threads)
    images.close()
    assert not any(th.is_alive() for th in threads)
    with pytest.raises(VideoError, match="closed"):
        images[1]
    images = load_video_frames(_frames(t=10), 16).images
    threads = images._engine.threads
    del images
    gc.collect()
    for th in threads:
        th.join(timeout=10)
    assert not any(th.is_alive() for th in threads)
    path = _write_video(tmp_path / "v.mp4", _frames(t=6))
    assert len(load_video_frames(path, 16, cache=FrameCacheConfig(workers=4)).images._engine.threads) == 1


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    folder = tmp_path / "depth"
    folder.mkdir()
    ramp = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0 .. 65535
    Image.fromarray(ramp).save(folder / "0.png")
    assert Image.open(folder / "0.png").mode.startswith("I;16")
    frame = read_video(folder)[0]
    expected = np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(frame[:, :, c], expected)
    assert frame.min() == 0 and frame.max() == 255 and len(np.unique(frame)) == 256
