"""Video input: frames folders, video files, arrays, and the errors for bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from threeam.errors import VideoError
from threeam.io.video import (
    IMG_MEAN,
    IMG_STD,
    frame_to_model_input,
    list_frame_files,
    load_video_frames,
    read_video,
)


def _frames(t=3, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _write_folder(folder, frames, names, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for frame, name in zip(frames, names):
        Image.fromarray(frame).save(folder / f"{name}{ext}")


def test_folder_sorted_by_number_not_by_text(tmp_path):
    frames = _frames(t=3)
    # "10" sorts before "2" as text; numerically 2 < 10 < 100
    _write_folder(tmp_path / "v", frames, ["frame_2", "frame_10", "frame_100"])
    files = list_frame_files(tmp_path / "v")
    assert [f.stem for f in files] == ["frame_2", "frame_10", "frame_100"]
    video = read_video(tmp_path / "v")
    np.testing.assert_array_equal(video, frames)  # png is lossless


def test_folder_ignores_other_files_and_reads_jpeg(tmp_path):
    yy, xx = np.mgrid[0:24, 0:32]
    smooth = np.stack([yy * 10, xx * 8, (yy + xx) * 4], axis=-1).astype(np.uint8)
    frames = np.stack([smooth, smooth[::-1]])
    _write_folder(tmp_path / "v", frames, ["00000", "00001"], ext=".jpg")
    (tmp_path / "v" / "notes.txt").write_text("not a frame")
    video = read_video(tmp_path / "v")
    assert video.shape == frames.shape and video.dtype == np.uint8
    # jpeg is lossy but close
    assert np.abs(video.astype(int) - frames.astype(int)).mean() < 8


def test_load_normalises_and_resizes(tmp_path):
    frames = _frames(t=2, h=24, w=32)
    video = load_video_frames(frames, image_size=16)
    assert video.images.shape == (2, 3, 16, 16) and video.images.dtype == torch.float32
    assert (video.video_height, video.video_width) == (24, 32)
    assert video.num_frames == 2
    # a constant frame stays constant after resizing and maps to (v/255 - mean)/std
    const = np.full((1, 24, 32, 3), 200, dtype=np.uint8)
    img = load_video_frames(torch.from_numpy(const), image_size=16).images[0]
    expected = (200 / 255 - torch.tensor(IMG_MEAN)) / torch.tensor(IMG_STD)
    torch.testing.assert_close(img[:, 5, 7], expected, atol=1e-5, rtol=0)


def test_frames_at_model_size_are_not_resized_and_keep_declared_size():
    frames = _frames(t=2, h=16, w=16)
    video = load_video_frames(frames, image_size=16, video_size=(240, 320))
    assert (video.video_height, video.video_width) == (240, 320)
    expected = (torch.from_numpy(frames[1]).permute(2, 0, 1).float() / 255 - torch.tensor(IMG_MEAN)[:, None, None]) \
        / torch.tensor(IMG_STD)[:, None, None]
    torch.testing.assert_close(video.images[1], expected)
    torch.testing.assert_close(frame_to_model_input(frames[1], 16), expected)


def test_video_file_roundtrip(tmp_path):
    av = pytest.importorskip("av")
    frames = np.zeros((4, 32, 48, 3), dtype=np.uint8)
    for i in range(4):
        frames[i, :, : 12 * (i + 1)] = 255  # a white band growing frame by frame
    path = tmp_path / "clip.mp4"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    video = read_video(path)
    assert video.shape == (4, 32, 48, 3)
    white = (video.mean(axis=(1, 3)) > 128).sum(axis=1)  # white columns per frame
    assert np.abs(white - np.array([12, 24, 36, 48])).max() <= 2
    loaded = load_video_frames(str(path), image_size=16)
    assert loaded.images.shape == (4, 3, 16, 16) and (loaded.video_height, loaded.video_width) == (32, 48)


def test_async_loading_matches_sync(tmp_path):
    frames = _frames(t=4, h=20, w=20)
    _write_folder(tmp_path / "v", frames, range(4))
    sync = load_video_frames(tmp_path / "v", image_size=8)
    lazy = load_video_frames(tmp_path / "v", image_size=8, async_loading_frames=True)
    assert len(lazy.images) == 4 and (lazy.video_height, lazy.video_width) == (20, 20)
    for i in range(4):
        torch.testing.assert_close(lazy.images[i], sync.images[i])


# ---- errors -----------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        load_video_frames(tmp_path / "nope", image_size=16)
    with pytest.raises(VideoError, match="does not exist"):
        load_video_frames(str(tmp_path / "nope.mp4"), image_size=16)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(VideoError, match="no .jpg"):
        load_video_frames(tmp_path / "empty", image_size=16)


def test_corrupt_frame_is_named(tmp_path):
    _write_folder(tmp_path / "v", _frames(t=2), ["0", "1"])
    (tmp_path / "v" / "2.png").write_bytes(b"this is not a png")
    with pytest.raises(VideoError, match=r"2\.png"):  # checked up front on request
        load_video_frames(tmp_path / "v", image_size=16, check_all_frames=True)
    with pytest.raises(VideoError, match=r"2\.png"):  # eager
        load_video_frames(tmp_path / "v", image_size=16, streaming=False)
    video = load_video_frames(tmp_path / "v", image_size=16)  # streaming: when the frame is read
    video.images[1]
    with pytest.raises(VideoError, match=r"2\.png"):
        video.images[2]


def test_corrupt_video_file(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoError, match="broken.mp4"):
        load_video_frames(path, image_size=16)


def test_inconsistent_frame_sizes_name_both_files(tmp_path):
    _write_folder(tmp_path / "v", _frames(t=1, h=24, w=32), ["0"])
    _write_folder(tmp_path / "v", _frames(t=1, h=20, w=32), ["1"])
    with pytest.raises(VideoError, match=r"different sizes.*0\.png.*1\.png"):
        load_video_frames(tmp_path / "v", image_size=16, check_all_frames=True)
    with pytest.raises(VideoError, match=r"different sizes.*0\.png.*1\.png"):
        load_video_frames(tmp_path / "v", image_size=16).images[1]


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "uint8"),
        (torch.zeros(2, 8, 8, 3), "uint8"),
        (np.zeros((2, 3, 8, 8), dtype=np.uint8), r"\(T, H, W, 3\)"),
        (np.zeros((8, 8, 3), dtype=np.uint8), r"\(T, H, W, 3\)"),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), "at least one"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(VideoError, match=message):
        load_video_frames(array, image_size=16)


def test_unsupported_inputs(tmp_path):
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(VideoError, match="unsupported"):
        load_video_frames(tmp_path / "a.gif", image_size=16)
    with pytest.raises(VideoError, match="unsupported"):
        load_video_frames(12, image_size=16)
    with pytest.raises(VideoError, match="video_size"):
        load_video_frames(_frames(), image_size=16, video_size=(0, 5))
