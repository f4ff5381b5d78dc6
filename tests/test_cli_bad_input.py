"""The bad-input corpus: every CLI command on every kind of bad value.

Each case must end with exit status 2, exactly one line ``error: ...`` that names the problem, no
traceback, and no change anywhere in the workspace (its whole tree is hashed before and after;
the workspace is also the current folder and HOME, so stray writes would show)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from threeam.cli import app
from threeam.io.atomic import MARKER_NAME
from threeam.io.masks import write_palette_png

REPO = Path(__file__).resolve().parents[1]
DEBUG = str(REPO / "examples" / "sam2.1_debug_256.json")
H, W, T = 32, 48, 3


def _mp4(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _workspace(ws: Path) -> None:
    """Inputs every case may point at (small, written fresh per case)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    (ws / "frames").mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(ws / "frames" / f"{i:05d}.jpg")
    _mp4(ws / "video.mp4", frames)
    (ws / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (ws / "empty_frames").mkdir()
    (ws / "notes.txt").write_text("not a video")
    (ws / "binary.bin").write_bytes(bytes(range(256)) * 4)
    (ws / "a_folder").mkdir()
    (ws / "home").mkdir()
    ok = np.zeros((H, W), dtype=np.uint8)
    ok[5:15, 5:20] = 1
    write_palette_png(ws / "mask.png", ok)
    write_palette_png(ws / "small_mask.png", np.ones((10, 10), dtype=np.uint8))
    write_palette_png(ws / "empty_mask.png", np.zeros((H, W), dtype=np.uint8))
    Image.fromarray(frames[0]).save(ws / "rgb.png")
    (ws / "list.json").write_text("[1, 2]")
    (ws / "bad.json").write_text("{not json")
    (ws / "foreign").mkdir()
    (ws / "foreign" / "thesis.tex").write_text("years of work")
    mine = ws / "mine"  # a threeam result the user added a file to
    mine.mkdir()
    (mine / "masks.json").write_text("{}")
    (mine / MARKER_NAME).write_text(json.dumps({"format": "threeam-output", "version": 1, "kind": "track",
                                                "complete": True, "files": ["masks.json"]}))
    (mine / "my_notes.txt").write_text("keep")
    for name, meta in (("ck_list", [1]), ("ck_version", {"format": "threeam", "version": "1", "config": {}})):
        (ws / name).mkdir()
        (ws / name / "config.json").write_text(json.dumps(meta))
        (ws / name / "model.safetensors").write_bytes(b"")
    for name, item in {
        "p_str_id": [{"obj_id": "1", "points": [[5, 5]]}],
        "p_float_id": [{"obj_id": 1.0, "points": [[5, 5]]}],
        "p_bool_id": [{"obj_id": True, "points": [[5, 5]]}],
        "p_zero_id": [{"obj_id": 0, "points": [[5, 5]]}],
        "p_big_id": [{"obj_id": 300, "points": [[5, 5]]}],
        "p_float_frame": [{"obj_id": 1, "frame": 1.5, "points": [[5, 5]]}],
        "p_str_frame": [{"obj_id": 1, "frame": "0", "points": [[5, 5]]}],
        "p_neg_frame": [{"obj_id": 1, "frame": -1, "points": [[5, 5]]}],
        "p_far_frame": [{"obj_id": 1, "frame": 99, "points": [[5, 5]]}],
        "p_dict": {"obj_id": 1},
        "p_empty": [],
        "p_no_id": [{"points": [[5, 5]]}],
        "p_unknown_key": [{"obj_id": 1, "points": [[5, 5]], "colour": "red"}],
        "p_point_shape": [{"obj_id": 1, "points": [[5, 5, 5]]}],
        "p_point_str": [{"obj_id": 1, "points": [["5", 5]]}],
        "p_point_out": [{"obj_id": 1, "points": [[500, 5]]}],
        "p_labels": [{"obj_id": 1, "points": [[5, 5]], "labels": [2]}],
        "p_labels_len": [{"obj_id": 1, "points": [[5, 5]], "labels": [1, 0]}],
        "p_box_zero": [{"obj_id": 1, "box": [5, 5, 5, 20]}],
        "p_box_short": [{"obj_id": 1, "box": [5, 5, 20]}],
        "p_box_flip": [{"obj_id": 1, "box": [20, 5, 5, 20]}],
        "p_nothing": [{"obj_id": 1}],
        "p_mask_missing": [{"obj_id": 1, "mask": "nope.png"}],
        "p_mask_number": [{"obj_id": 1, "mask": 3}],
        "p_mask_and_box": [{"obj_id": 1, "mask": "mask.png", "box": [1, 1, 9, 9]}],
        "p_duplicate": [{"obj_id": 1, "points": [[5, 5]]}, {"obj_id": 1, "box": [1, 1, 9, 9]}],
        "p_item_not_object": [[1, 2]],
    }.items():
        (ws / f"{name}.json").write_text(json.dumps(item))


def _tree_hash(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{p.stat().st_mode:o}"
        else:
            out[rel] = f"dir:{p.stat().st_mode:o}"
    return out


TRACK = ["track", "{ws}/frames", "--out", "{ws}/out", "--model-config", DEBUG, "--random-weights", "--quiet"]
PT = ["--point", "10,10"]
EVAL = ["eval", "--data", "synthetic:1", "--synth-frames", "4", "--methods", "sam2", "--model-config", DEBUG,
        "--random-weights", "--quiet", "--out", "{ws}/out"]
PRE = ["precompute", "--data", "synthetic:1", "--synth-frames", "2", "--preset", "3am_tiny", "--random-weights",
       "--quiet", "--out", "{ws}/out"]
TRAIN = ["train", "--preset", "toy-engine", "--out", "{ws}/out", "run.progress=false"]


def _replace(args, flag, value):
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def _video(value):
    return [value if a == "{ws}/frames" else a for a in TRACK]


def _drop(args, *flags):
    return [a for a in args if a not in flags]


CASES = [
    # ----------------------------------------------------------------------- track: weights, model, device
    ("track-device-gpu", TRACK + PT + ["--device", "gpu"], "not a device"),
    ("track-device-cuda-index", TRACK + PT + ["--device", "cuda:7"], "cuda:7"),
    ("track-device-empty", TRACK + PT + ["--device", ""], "not a device"),
    ("track-checkpoint-and-random", TRACK + PT + ["--checkpoint", "x.pt"], "exclude each other"),
    ("track-no-weights", _drop(TRACK, "--random-weights") + PT, "no weights"),
    ("track-model", TRACK + PT + ["--model", "sam3"], "sam2 or 3am"),
    ("track-preset", _drop(TRACK, "--model-config", DEBUG) + PT + ["--preset", "nope"], "unknown SAM 2 preset"),
    ("track-3am-preset", _drop(TRACK, "--model-config", DEBUG) + PT + ["--model", "3am", "--preset", "nope"],
     "unknown 3AM preset"),
    ("track-preset-and-config", TRACK + PT + ["--preset", "sam2.1_hiera_t"], "exclude each other"),
    ("track-config-folder", _replace(TRACK, "--model-config", "{ws}/a_folder") + PT, "is a folder"),
    ("track-config-list", _replace(TRACK, "--model-config", "{ws}/list.json") + PT, "list"),
    ("track-config-binary", _replace(TRACK, "--model-config", "{ws}/binary.bin") + PT, "not a text"),
    ("track-config-missing", _replace(TRACK, "--model-config", "{ws}/nope.json") + PT, "no such file"),
    ("track-3am-config-list", _drop(TRACK, "--random-weights", "--model-config", DEBUG) + PT
     + ["--model", "3am", "--checkpoint", "{ws}/ck_list"], "must hold a JSON object"),
    ("track-3am-config-version", _drop(TRACK, "--random-weights", "--model-config", DEBUG) + PT
     + ["--model", "3am", "--checkpoint", "{ws}/ck_version"], "version must be an integer"),
    ("track-3am-checkpoint-missing", _drop(TRACK, "--random-weights", "--model-config", DEBUG) + PT
     + ["--model", "3am", "--checkpoint", "{ws}/nowhere"], "not found"),
    ("track-sam2-checkpoint-missing", _drop(TRACK, "--random-weights") + PT + ["--checkpoint", "{ws}/nope.pt"],
     "nope.pt"),
    # ----------------------------------------------------------------------- track: click / box / ids / frames
    ("track-obj-id-0", TRACK + PT + ["--obj-id", "0"], "1..254"),
    ("track-obj-id-255", TRACK + PT + ["--obj-id", "255"], "1..254"),
    ("track-obj-id-negative", TRACK + PT + ["--obj-id", "-3"], "1..254"),
    ("track-obj-id-text", TRACK + PT + ["--obj-id", "one"], "--obj-id"),
    ("track-point-one-number", TRACK + ["--point", "3"], "x,y"),
    ("track-point-text", TRACK + ["--point", "a,b"], "x,y"),
    ("track-point-nan", TRACK + ["--point", "nan,1"], "finite"),
    ("track-point-inf", TRACK + ["--point", "inf,1"], "finite"),
    ("track-point-outside", TRACK + ["--point", "500,10"], "outside the frame"),
    ("track-point-negative", TRACK + ["--point", "-1,10"], "outside the frame"),
    ("track-neg-point-only-bad", TRACK + ["--neg-point", "1"], "--neg-point"),
    ("track-box-flipped", TRACK + ["--box", "40,10,20,30"], "x1 > x0"),
    ("track-box-zero-area", TRACK + ["--box", "10,10,10,30"], "positive area"),
    ("track-box-three", TRACK + ["--box", "1,2,3"], "x0,y0,x1,y1"),
    ("track-box-outside", TRACK + ["--box", "1,1,100,20"], "outside the frame"),
    ("track-frame-too-far", TRACK + PT + ["--frame", "99"], "out of range"),
    ("track-frame-negative", TRACK + PT + ["--frame", "-1"], "out of range"),
    ("track-frame-text", TRACK + PT + ["--frame", "abc"], "--frame"),
    ("track-no-prompts", TRACK, "no prompts"),
    ("track-direction", TRACK + PT + ["--direction", "sideways"], "forward, backward or both"),
    ("track-fps-zero", TRACK + PT + ["--fps", "0"], "--fps"),
    ("track-unknown-option", TRACK + PT + ["--bogus"], "--bogus"),
    # ----------------------------------------------------------------------- track: masks
    ("track-mask-size", TRACK + ["--mask", "{ws}/small_mask.png"], "mask"),
    ("track-mask-empty", TRACK + ["--mask", "{ws}/empty_mask.png"], "empty"),
    ("track-mask-rgb", TRACK + ["--mask", "{ws}/rgb.png"], "palette"),
    ("track-mask-missing", TRACK + ["--mask", "{ws}/nope.png"], "not found"),
    ("track-mask-binary", TRACK + ["--mask", "{ws}/binary.bin"], "binary.bin"),
    ("track-mask-obj-id-0", TRACK + ["--mask", "{ws}/mask.png", "--obj-id", "0"], "1..254"),
    # ----------------------------------------------------------------------- track: the video
    ("track-video-missing", _video("{ws}/nope") + PT, "does not exist"),
    ("track-video-text-file", _video("{ws}/notes.txt") + PT, "unsupported video input"),
    ("track-video-empty-folder", _video("{ws}/empty_frames") + PT, "no .jpg"),
    ("track-video-corrupt-mp4", _video("{ws}/corrupt.mp4") + PT, "corrupt.mp4"),
    ("track-video-mp4-frame", _video("{ws}/video.mp4") + PT + ["--frame", "3"],
     "out of range"),
    # ----------------------------------------------------------------------- track: prompts files
    ("track-prompts-missing", TRACK + ["--prompts", "{ws}/nope.json"], "not found"),
    ("track-prompts-folder", TRACK + ["--prompts", "{ws}/a_folder"], "not a file"),
    ("track-prompts-binary", TRACK + ["--prompts", "{ws}/binary.bin"], "not a text file"),
    ("track-prompts-invalid-json", TRACK + ["--prompts", "{ws}/bad.json"], "not valid JSON"),
    ("track-prompts-dict", TRACK + ["--prompts", "{ws}/p_dict.json"], "non-empty JSON list"),
    ("track-prompts-empty", TRACK + ["--prompts", "{ws}/p_empty.json"], "non-empty JSON list"),
    ("track-prompts-item", TRACK + ["--prompts", "{ws}/p_item_not_object.json"], "with an obj_id"),
    ("track-prompts-no-id", TRACK + ["--prompts", "{ws}/p_no_id.json"], "with an obj_id"),
    ("track-prompts-str-id", TRACK + ["--prompts", "{ws}/p_str_id.json"], "obj_id must be an integer"),
    ("track-prompts-float-id", TRACK + ["--prompts", "{ws}/p_float_id.json"], "obj_id must be an integer"),
    ("track-prompts-bool-id", TRACK + ["--prompts", "{ws}/p_bool_id.json"], "obj_id must be an integer"),
    ("track-prompts-zero-id", TRACK + ["--prompts", "{ws}/p_zero_id.json"], "1..254"),
    ("track-prompts-big-id", TRACK + ["--prompts", "{ws}/p_big_id.json"], "1..254"),
    ("track-prompts-float-frame", TRACK + ["--prompts", "{ws}/p_float_frame.json"], "frame must be an integer"),
    ("track-prompts-str-frame", TRACK + ["--prompts", "{ws}/p_str_frame.json"], "frame must be an integer"),
    ("track-prompts-neg-frame", TRACK + ["--prompts", "{ws}/p_neg_frame.json"], "frame must be an integer >= 0"),
    ("track-prompts-far-frame", TRACK + ["--prompts", "{ws}/p_far_frame.json"], "out of range"),
    ("track-prompts-unknown-key", TRACK + ["--prompts", "{ws}/p_unknown_key.json"], "unknown keys"),
    ("track-prompts-point-shape", TRACK + ["--prompts", "{ws}/p_point_shape.json"], "[x, y]"),
    ("track-prompts-point-str", TRACK + ["--prompts", "{ws}/p_point_str.json"], "[x, y]"),
    ("track-prompts-point-out", TRACK + ["--prompts", "{ws}/p_point_out.json"], "outside the frame"),
    ("track-prompts-labels", TRACK + ["--prompts", "{ws}/p_labels.json"], "labels must be 1"),
    ("track-prompts-labels-len", TRACK + ["--prompts", "{ws}/p_labels_len.json"], "one per point"),
    ("track-prompts-box-zero", TRACK + ["--prompts", "{ws}/p_box_zero.json"], "positive area"),
    ("track-prompts-box-short", TRACK + ["--prompts", "{ws}/p_box_short.json"], "[x0, y0, x1, y1]"),
    ("track-prompts-box-flip", TRACK + ["--prompts", "{ws}/p_box_flip.json"], "x1 > x0"),
    ("track-prompts-nothing", TRACK + ["--prompts", "{ws}/p_nothing.json"], "give points, a box or a mask"),
    ("track-prompts-mask-missing", TRACK + ["--prompts", "{ws}/p_mask_missing.json"], "not found"),
    ("track-prompts-mask-number", TRACK + ["--prompts", "{ws}/p_mask_number.json"], "mask must be a PNG path"),
    ("track-prompts-mask-and-box", TRACK + ["--prompts", "{ws}/p_mask_and_box.json"], "cannot be combined"),
    ("track-prompts-duplicate", TRACK + ["--prompts", "{ws}/p_duplicate.json"], "two prompts on frame 0"),
    ("track-prompts-and-point-same", TRACK + PT + ["--prompts", "{ws}/p_box_flip.json"], "x1 > x0"),
    # ----------------------------------------------------------------------- track: the output folder
    ("track-out-dot", _replace(TRACK, "--out", ".") + PT, "current folder"),
    ("track-out-dot-overwrite", _replace(TRACK, "--out", ".") + PT + ["--overwrite"], "current folder"),
    ("track-out-home", _replace(TRACK, "--out", "~") + PT + ["--overwrite"], "home folder"),
    ("track-out-root", _replace(TRACK, "--out", "/") + PT + ["--overwrite"], "root"),
    ("track-out-parent", _replace(TRACK, "--out", "..") + PT + ["--overwrite"], "current folder"),
    ("track-out-is-file", _replace(TRACK, "--out", "{ws}/notes.txt") + PT, "not a folder"),
    ("track-out-under-file", _replace(TRACK, "--out", "{ws}/notes.txt/out") + PT, "is a file"),
    ("track-out-exists", _replace(TRACK, "--out", "{ws}/foreign") + PT, "already exists"),
    ("track-out-foreign-overwrite", _replace(TRACK, "--out", "{ws}/foreign") + PT + ["--overwrite"],
     "not written by threeam"),
    ("track-out-user-file-overwrite", _replace(TRACK, "--out", "{ws}/mine") + PT + ["--overwrite"],
     "did not write (my_notes.txt)"),
    # ----------------------------------------------------------------------- eval
    ("eval-out-dot", _replace(EVAL, "--out", ".") + ["--overwrite"], "current folder"),
    ("eval-out-foreign", _replace(EVAL, "--out", "{ws}/foreign") + ["--overwrite"], "not written by threeam"),
    ("eval-out-file", _replace(EVAL, "--out", "{ws}/notes.txt"), "not a folder"),
    ("eval-device-gpu", EVAL + ["--device", "gpu"], "not a device"),
    ("eval-checkpoint-and-random", EVAL + ["--checkpoint", "x.pt"], "exclude each other"),
    ("eval-3am-checkpoint-and-random", EVAL + ["--3am-checkpoint", "x"], "exclude each other"),
    ("eval-preset", _drop(EVAL, "--model-config", DEBUG) + ["--preset", "nope"], "unknown SAM 2 preset"),
    ("eval-preset-and-config", EVAL + ["--preset", "sam2.1_hiera_t"], "exclude each other"),
    ("eval-3am-preset", EVAL + ["--3am-preset", "nope"], "unknown 3AM preset"),
    ("eval-config-binary", _replace(EVAL, "--model-config", "{ws}/binary.bin"), "not a text"),
    ("eval-methods", _replace(EVAL, "--methods", "sam2,nope"), "unknown method"),
    ("eval-data-synthetic", _replace(EVAL, "--data", "synthetic:x"), "synthetic:N"),
    ("eval-data-missing", _replace(EVAL, "--data", "{ws}/nope"), "nope"),
    ("eval-max-sequences", EVAL + ["--max-sequences", "0"], "--max-sequences"),
    # ----------------------------------------------------------------------- info
    ("info-model", ["info", "--model", "sam3"], "sam2 or 3am"),
    ("info-preset", ["info", "--preset", "nope"], "unknown SAM 2 preset"),
    ("info-3am-preset", ["info", "--model", "3am", "--preset", "nope"], "unknown 3AM preset"),
    ("info-config-list", ["info", "--model-config", "{ws}/list.json"], "list"),
    ("info-config-folder", ["info", "--model-config", "{ws}/a_folder"], "is a folder"),
    ("info-config-binary", ["info", "--model-config", "{ws}/binary.bin"], "not a text"),
    # ----------------------------------------------------------------------- precompute
    ("precompute-no-weights", _drop(PRE, "--random-weights"), "no weights"),
    ("precompute-checkpoint-and-random", PRE + ["--must3r-checkpoint", "x.pth"], "exclude each other"),
    ("precompute-device", PRE + ["--device", "gpu"], "not a device"),
    ("precompute-out-file", _replace(PRE, "--out", "{ws}/notes.txt"), "not a folder"),
    ("precompute-preset", _replace(PRE, "--preset", "nope"), "unknown 3AM preset"),
    ("precompute-data-missing", _replace(PRE, "--data", "{ws}/nope"), "nope"),
    ("precompute-chunk", PRE + ["--chunk", "0"], "--chunk"),
    # ----------------------------------------------------------------------- synth
    ("synth-size", ["synth", "{ws}/out", "--size", "banana"], "HxW"),
    ("synth-device", ["synth", "{ws}/out", "--device", "gpu"], "not a device"),
    ("synth-out-file", ["synth", "{ws}/notes.txt"], "not a folder"),
    ("synth-preset", ["synth", "{ws}/out", "--preset", "nope"], "nope"),
    ("synth-trajectory", ["synth", "{ws}/out", "--trajectory", "spiral", "--preset", "tiny"], "spiral"),
    ("synth-scenes-zero", ["synth", "{ws}/out", "--scenes", "0"], "--scenes"),
    # ----------------------------------------------------------------------- train
    ("train-preset", _replace(TRAIN, "--preset", "nope"), "nope"),
    ("train-no-preset", _drop(TRAIN, "--preset", "toy-engine"), "--preset is required"),
    ("train-resume-no-out", ["train", "--resume"], "--resume needs --out"),
    ("train-resume-nothing", TRAIN + ["--resume"], "no checkpoint"),
    ("train-override-key", TRAIN + ["nope.x=1"], "unknown config key 'nope.x'"),
    ("train-override-int", TRAIN + ["run.max_steps=abc"], "expected an integer"),
    ("train-override-float", TRAIN + ["run.max_steps=1.5"], "expected an integer"),
    ("train-override-form", TRAIN + ["run.max_steps"], "key.sub=value"),
    ("train-override-choice", TRAIN + ["run.amp=fp8"], "expected one of"),
    ("train-device", TRAIN + ["run.device=gpu"], "gpu"),
    ("train-out-file", _replace(TRAIN, "--out", "{ws}/notes.txt"), "not a folder"),
]

if torch.cuda.is_available():  # "cuda without CUDA" can only be asked where there is none
    CASES = [c for c in CASES if c[0] != "track-device-cuda-index"]
else:
    CASES.append(("track-device-cuda", TRACK + PT + ["--device", "cuda"], "CUDA is not available"))
    CASES.append(("eval-device-cuda", EVAL + ["--device", "cuda"], "CUDA is not available"))


def _run(ws: Path, monkeypatch, args):
    monkeypatch.chdir(ws)
    monkeypatch.setenv("HOME", str(ws / "home"))
    argv = [a.replace("{ws}", str(ws)) for a in args]
    return CliRunner().invoke(app, argv)


@pytest.mark.parametrize("name, args, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(tmp_path, monkeypatch, name, args, message):
    ws = tmp_path / "ws"
    ws.mkdir()
    _workspace(ws)
    before = _tree_hash(ws)
    res = _run(ws, monkeypatch, args)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2, (name, res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output and not isinstance(res.exception, (AssertionError, TypeError))
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert message in lines[0], (message, lines[0])
    assert _tree_hash(ws) == before  # nothing changed: not the inputs, not --out, no temporary folders


def test_an_unwritable_out_is_reported_before_any_work(tmp_path, monkeypatch):
    """Also as root (who may write anywhere): the folder is read-only AND the write probe of
    `threeam.io.atomic` is told "permission denied" there, as it would be for another user."""
    import errno
    import tempfile

    import threeam.io.atomic as atomic

    ws = tmp_path / "ws"
    ws.mkdir()
    _workspace(ws)
    locked = ws / "locked"
    locked.mkdir()
    real_mkstemp = tempfile.mkstemp
    probed = []

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == locked.resolve():
            probed.append(dir)
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    locked.chmod(0o500)
    try:
        before = _tree_hash(ws)
        res = _run(ws, monkeypatch, _replace(TRACK, "--out", "{ws}/locked/out") + PT)
        after = _tree_hash(ws)
    finally:
        locked.chmod(0o700)
    assert res.exit_code == 2 and "cannot write" in res.output, res.output
    assert "Permission denied" in res.output and probed
    assert after == before and not (locked / "out").exists()  # nothing was written


def test_help_texts_have_no_bool_noise_and_share_option_names():
    helps = {}
    for cmd in ("track", "eval", "info", "precompute", "synth", "train"):
        res = CliRunner().invoke(app, [cmd, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert "<bool>" not in res.output
        helps[cmd] = res.output
    for cmd in ("track", "eval", "info"):
        for opt in ("--preset", "--model-config"):
            assert opt in helps[cmd], (cmd, opt)
    for cmd in ("track", "eval"):
        for opt in ("--checkpoint", "--random-weights", "--seed", "--device", "--overwrite", "--quiet", "-o, --out"):
            assert opt in helps[cmd], (cmd, opt)
