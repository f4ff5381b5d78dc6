"""`track_video` (the library side of `threeam track`) holds no per-frame masks: id maps go to
disk as each frame is tracked and the overlay streams frames and id maps back one at a time, so
its memory does not grow with the video's length (issue 11); the whole video is never decoded at
once; `check_all_frames` / `--check-frames` report a corrupt frame before any model runs."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from threeam.errors import VideoError
from threeam.io.masks import read_palette_png, read_rle_json
from threeam.predictor.track_job import ObjectPrompt, track_video

H, W = 96, 128


class _State:
    def __init__(self, n):
        self.num_frames = n
        self.obj_ids: list[int] = []


class StubPredictor:
    """The predictor calls `track_video` makes, with masks computed from the frame index (no model):
    object k is a disc that moves with the frame."""

    device = torch.device("cpu")

    def __init__(self):
        self.init_calls = 0

    def init_state(self, video):
        self.init_calls += 1
        return _State(len(video))

    def add_new_points_or_box(self, state, frame, obj_id, points=None, labels=None, box=None):
        if obj_id not in state.obj_ids:
            state.obj_ids.append(obj_id)

    def propagate_in_video(self, state, start_frame_idx=0, reverse=False):
        order = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, state.num_frames)
        yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                                indexing="ij")
        for t in order:
            logits = torch.stack([12.0 - ((yy - 20 - 3 * k) ** 2 + (xx - 10 - (t * (k + 1)) % 100) ** 2).sqrt()
                                  for k in range(len(state.obj_ids))])[:, None]
            yield t, list(state.obj_ids), logits


def _video(n):
    rng = np.random.default_rng(0)
    return (rng.random((n, H, W, 3)) * 255).astype(np.uint8)


def _prompts():
    return [ObjectPrompt(obj_id=1, frame=2, box=[5, 5, 30, 30]), ObjectPrompt(obj_id=2, frame=2, box=[40, 5, 90, 40])]


def test_outputs_are_written_frame_by_frame_and_agree(tmp_path, monkeypatch):
    import threeam.io.video as video_io

    def no_whole_video(*args, **kwargs):
        raise AssertionError("read_video decodes the whole video")

    monkeypatch.setattr(video_io, "read_video", no_whole_video)
    video = _video(7)
    res = track_video(StubPredictor(), video, _prompts(), tmp_path / "out", direction="both", fps=5)
    assert res.frames == list(range(7)) and res.obj_ids == [1, 2]
    out = tmp_path / "out"
    rle = read_rle_json(out / "masks.json")
    for t in range(7):
        ids = read_palette_png(out / "masks" / f"{t:05d}.png")
        assert {1, 2} <= set(np.unique(ids).tolist())
        for oid in (1, 2):
            assert np.array_equal(rle[t][oid].mask, ids == oid)
    with av.open(str(out / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _peak_bytes(tmp_path, n):
    video = _video(n)  # allocated before tracing starts
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        track_video(StubPredictor(), video, _prompts(), tmp_path / f"out{n}", direction="both")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_video_length(tmp_path):
    short, long = 8, 40
    _peak_bytes(tmp_path, 3)  # imports, codec set-up
    a, b = _peak_bytes(tmp_path, short), _peak_bytes(tmp_path, long)
    per_frame = (b - a) / (long - short)
    # holding the id maps (12 KiB a frame here) and the per-object masks would cost > 36 KiB a frame
    assert per_frame < 2048, f"track_video's peak grew by {per_frame:.0f} bytes per frame ({a} -> {b})"


def _corrupt_folder(tmp_path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(_video(4)):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    (folder / "00002.png").write_bytes(b"not a png at all")
    return folder


def test_check_all_frames_reports_a_corrupt_frame_before_the_model_runs(tmp_path):
    folder = _corrupt_folder(tmp_path)
    stub = StubPredictor()
    with pytest.raises(VideoError, match="00002.png"):
        track_video(stub, str(folder), _prompts(), tmp_path / "out", check_all_frames=True)
    assert stub.init_calls == 0 and not (tmp_path / "out").exists()


def test_cli_check_frames(tmp_path):
    from threeam.cli import app

    folder = _corrupt_folder(tmp_path)
    debug = str(Path(__file__).resolve().parents[2] / "examples" / "sam2.1_debug_256.json")
    res = CliRunner().invoke(app, ["track", str(folder), "--point", "10,10", "--out", str(tmp_path / "o"),
                                   "--model-config", debug, "--random-weights", "--quiet", "--check-frames"])
    assert res.exit_code == 2 and "00002.png" in res.output and "Traceback" not in res.output, res.output
    assert "building" not in res.output and not (tmp_path / "o").exists()
