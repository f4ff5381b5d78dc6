from pathlib import Path

import av
import numpy as np
import pytest

from threeam.errors import InputError
from threeam.io.masks import davis_palette
from threeam.io.overlay import overlay_frame, pick_codec, write_overlay_video


def test_overlay_frame_blend_and_contour() -> None:
    frame = np.full((6, 8, 3), 100, np.uint8)
    ids = np.zeros((6, 8), np.uint8)
    ids[1:5, 2:6] = 1
    out = overlay_frame(frame, ids, alpha=0.5)
    c = davis_palette()[1].astype(float)  # (128, 0, 0)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # background untouched
    np.testing.assert_array_equal(out[2, 3], np.rint(0.5 * 100 + 0.5 * c))  # interior blended
    np.testing.assert_array_equal(out[1, 2], c)  # contour in full colour
    np.testing.assert_array_equal(out[4, 5], c)
    assert frame[2, 3].tolist() == [100, 100, 100]  # input not modified
    plain = overlay_frame(frame, ids, alpha=0.5, contour=False)
    np.testing.assert_array_equal(plain[1, 2], np.rint(0.5 * 100 + 0.5 * c))
    np.testing.assert_array_equal(overlay_frame(frame, ids, alpha=0.0, contour=False), frame)


def test_overlay_frame_bad_input() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(InputError, match="shape"):
        overlay_frame(frame, np.zeros((4, 5), np.uint8))
    with pytest.raises(InputError, match="0..255"):
        overlay_frame(frame, np.full((4, 4), 300, np.int32))
    with pytest.raises(InputError, match="uint8"):
        overlay_frame(frame.astype(np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="alpha"):
        overlay_frame(frame, np.zeros((4, 4), np.uint8), alpha=2)


def read_back(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("h,w,codec", [(48, 64, None), (37, 51, None), (48, 64, "mpeg4")])
def test_write_overlay_video_reads_back(tmp_path: Path, h: int, w: int, codec: str | None) -> None:
    t = 5
    frames = np.full((t, h, w, 3), 128, np.uint8)
    ids = np.zeros((t, h, w), np.uint8)
    ids[:, 8:28, 10:34] = 2  # green (0, 128, 0) in the DAVIS palette
    target = tmp_path / "out" / "overlay.mp4"
    used = write_overlay_video(target, frames, ids, fps=10, alpha=0.6, codec=codec)
    assert used == (codec or pick_codec())
    assert sorted(p.name for p in target.parent.iterdir()) == ["overlay.mp4"]
    video = read_back(target)
    assert video.shape == (t, h + h % 2, w + w % 2, 3)
    inside = video[:, 12:24, 14:30].reshape(-1, 3).mean(0)
    outside = video[:, 34:, 40:].reshape(-1, 3).mean(0)
    assert np.abs(outside - 128).max() < 6  # grey background kept
    expected = 0.4 * 128 + 0.6 * np.array([0, 128, 0])  # (51, 128, 51)
    assert np.abs(inside - expected).max() < 8
    assert inside[1] - inside[0] > 50  # masked pixels turned green


def test_write_overlay_video_bad_input_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(InputError, match="fewer id maps"):
        write_overlay_video(target, frames, np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="more id maps"):
        write_overlay_video(target, frames, np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(InputError, match="no frames"):
        write_overlay_video(target, frames[:0], np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(InputError, match="fps"):
        write_overlay_video(target, frames, np.zeros((3, 8, 8), np.uint8), fps=0)
    with pytest.raises(InputError, match="encoder"):
        write_overlay_video(target, frames, np.zeros((3, 8, 8), np.uint8), codec="no_such_codec")
    assert list(tmp_path.iterdir()) == []


def test_write_overlay_video_refuses_overwrite_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    target.write_bytes(b"keep")
    with pytest.raises(InputError, match="already exists"):
        write_overlay_video(target, np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), np.uint8),
                            overwrite=False)
    assert target.read_bytes() == b"keep"
