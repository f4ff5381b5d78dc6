"""`threeam track` and `threeam info` end to end on a generated two-object video (CPU, debug models)."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from threeam.cli import app
from threeam.data.synth import generate_scene, get_synth_config
from threeam.io.masks import read_palette_png, read_rle_json, write_palette_png

REPO = Path(__file__).resolve().parents[1]
DEBUG = str(REPO / "examples" / "sam2.1_debug_256.json")
T = 6


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory):
    """A generated scene as a frames folder and an mp4, with its two largest objects' masks on frame 0."""
    scene = generate_scene(get_synth_config("tiny", n_frames=T, height=64, width=96), seed=4)
    root = tmp_path_factory.mktemp("video")
    folder = root / "frames"
    folder.mkdir()
    frames = [scene.frame(i).rgb for i in range(T)]
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", quality=95)
    mp4 = root / "video.mp4"
    with av.open(str(mp4), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    ids = scene.frame(0).instance_ids
    objs = [int(v) for v, _ in sorted(zip(*np.unique(ids[ids > 0], return_counts=True)), key=lambda x: -x[1])[:2]]
    assert len(objs) == 2, "the generated scene must show two objects on frame 0"
    masks = root / "two.png"
    write_palette_png(masks, np.where(np.isin(ids, objs), ids, 0).astype(np.uint8))
    return folder, mp4, masks, objs


def _track(args, out):
    return CliRunner().invoke(app, ["track", *args, "--out", str(out), "--model-config", DEBUG, "--random-weights",
                                    "--quiet"])


def test_two_objects_from_a_palette_mask_writes_pngs_rle_and_overlay(scene_video, tmp_path):
    folder, _, masks, objs = scene_video
    res = _track([str(folder), "--mask", str(masks)], tmp_path / "out")
    assert res.exit_code == 0, res.output
    pngs = sorted((tmp_path / "out" / "masks").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(T)]
    rle = read_rle_json(tmp_path / "out" / "masks.json")
    for i, p in enumerate(pngs):
        ids = read_palette_png(p)
        assert ids.shape == (64, 96)
        assert set(np.unique(ids)) <= {0, *objs}
        for oid in objs:  # the RLE JSON holds exactly the PNGs' masks
            assert np.array_equal(rle[i][oid].mask, ids == oid)
    # the prompt frame returns the prompt masks (mask prompts are the output on their frame)
    ref = read_palette_png(masks)
    assert (read_palette_png(pngs[0]) == ref).mean() > 0.98
    with av.open(str(tmp_path / "out" / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == T


def test_3am_fresh_equals_sam2_on_an_mp4_with_clicks(scene_video, tmp_path):
    _, mp4, _, _ = scene_video
    args = [str(mp4), "--point", "40,30", "--box", "10,10,50,40", "--frame", "2", "--no-overlay"]
    res = _track(args, tmp_path / "sam2")
    assert res.exit_code == 0, res.output
    res = _track(args + ["--model", "3am"], tmp_path / "3am")
    assert res.exit_code == 0, res.output
    a = sorted((tmp_path / "sam2" / "masks").glob("*.png"))
    b = sorted((tmp_path / "3am" / "masks").glob("*.png"))
    assert len(a) == len(b) == T and not (tmp_path / "3am" / "overlay.mp4").exists()
    for x, y in zip(a, b):  # zero-initialised merger: 3AM == SAM 2 with the same SAM 2 weights
        assert np.array_equal(read_palette_png(x), read_palette_png(y))


@pytest.mark.parametrize("args, message", [
    (["--point", "3"], "x,y"),
    (["--point", "500,10"], "outside the frame"),
    (["--box", "50,10,20,40"], "x1 > x0"),
    (["--point", "10,10", "--frame", "99"], "out of range"),
    ([], "no prompts"),
])
def test_bad_input_exits_2_with_a_clear_message(scene_video, tmp_path, args, message):
    folder, _, _, _ = scene_video
    res = _track([str(folder), *args], tmp_path / "o")
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_missing_video_wrong_mask_size_and_no_silent_overwrite(scene_video, tmp_path):
    folder, _, _, _ = scene_video
    res = _track([str(tmp_path / "nope"), "--point", "1,1"], tmp_path / "o")
    assert res.exit_code == 2 and "nope" in res.output
    small = tmp_path / "small.png"
    write_palette_png(small, np.ones((10, 10), dtype=np.uint8))
    res = _track([str(folder), "--mask", str(small)], tmp_path / "o")
    assert res.exit_code == 2 and "mask" in res.output
    out = tmp_path / "keep"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    res = _track([str(folder), "--point", "40,30", "--no-overlay"], out)
    assert res.exit_code == 2 and "--overwrite" in res.output and (out / "mine.txt").read_text() == "user data"
    res = _track([str(folder), "--point", "40,30", "--no-overlay", "--overwrite"], out)  # not threeam's: refused
    assert res.exit_code == 2 and "not written by threeam" in res.output and (out / "mine.txt").read_text() == "user data"
    done = tmp_path / "done"
    assert _track([str(folder), "--point", "40,30", "--no-overlay"], done).exit_code == 0
    first = sorted(p.name for p in (done / "masks").iterdir())
    res = _track([str(folder), "--point", "40,30", "--no-overlay", "--overwrite", "--frame", "1"], done)
    assert res.exit_code == 0, res.output  # a threeam result is replaced whole
    assert sorted(p.name for p in (done / "masks").iterdir()) == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    res = CliRunner().invoke(app, ["track", str(folder), "--point", "40,30", "--out", str(tmp_path / "w")])
    assert res.exit_code == 2 and "--random-weights" in res.output


def test_info_counts_the_merger(tmp_path):
    import json

    from threeam.models.three_am import ThreeAM

    res = CliRunner().invoke(app, ["info", "--model", "3am", "--preset", "3am_tiny", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    net = ThreeAM("3am_tiny")
    assert d["merger_parameters"] == sum(p.numel() for p in net.merger.parameters())
    assert d["total"] == sum(p.numel() for p in net.parameters())
    assert sum(d["parts"].values()) == d["total"]
    res = CliRunner().invoke(app, ["info", "--model", "3am"])  # the paper's 3am_hiera_l
    assert res.exit_code == 0 and "Feature Merger: 39,906,048 parameters" in res.output
    res = CliRunner().invoke(app, ["info"])  # the same default model as `threeam track`: SAM 2.1 Large
    assert res.exit_code == 0 and "preset: sam2.1_hiera_l" in res.output and "Feature Merger" not in res.output


def test_overlay_at_the_source_rate_with_progress_for_every_phase(scene_video, tmp_path):
    _, mp4, _, _ = scene_video  # written at 10 fps
    res = CliRunner().invoke(app, ["track", str(mp4), "--point", "40,30", "--out", str(tmp_path / "o"),
                                   "--model-config", DEBUG, "--random-weights"])
    assert res.exit_code == 0, res.output
    for phase in ("decoding 6 frames", "tracking 1 object", "writing 6 masks", "encoding overlay.mp4 at 10 fps"):
        assert phase in res.output, (phase, res.output)
    with av.open(str(tmp_path / "o" / "overlay.mp4")) as c:
        assert c.streams.video[0].average_rate == 10


def test_16bit_png_frames_are_scaled_not_white(tmp_path):
    """16-bit PNG frames (a quarter-grey scene) reach the model and the overlay as 8-bit values, not 255."""
    folder = tmp_path / "frames16"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 48), 0x4000 + 64 * i, dtype=np.uint16)).save(folder / f"{i:05d}.png")
    res = CliRunner().invoke(app, ["track", str(folder), "--point", "10,10", "--out", str(tmp_path / "o"),
                                   "--model-config", DEBUG, "--random-weights", "--quiet", "--fps", "5"])
    assert res.exit_code == 0, res.output
    with av.open(str(tmp_path / "o" / "overlay.mp4")) as c:
        assert c.streams.video[0].average_rate == 5
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    # grey 64 (0x4000 / 257) under a half-transparent object colour without green: green ~32 or ~64 where
    # no object is drawn; 16-bit values clipped to white would give >= 127
    assert float(np.median(first[..., 1])) < 80
