import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from threeam.errors import InputError
from threeam.io.masks import (TrackMask, davis_palette, decode_rle, encode_rle, id_map_to_masks,
                              masks_to_id_map, read_palette_png, read_rle_json, write_palette_png,
                              write_rle_json)


def test_davis_palette_known_entries() -> None:
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0]
    assert pal[4].tolist() == [0, 0, 128]
    assert pal[8].tolist() == [64, 0, 0]
    assert pal[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in pal.tolist()}) == 256


def test_palette_png_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, size=(17, 23)).astype(np.uint8)
    ids[0, 0] = 255
    target = tmp_path / "a" / "00000.png"
    write_palette_png(target, ids)
    with Image.open(target) as im:
        assert im.mode == "P"
        assert im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    back = read_palette_png(target)
    assert back.dtype == np.uint8 and back.shape == (17, 23)
    np.testing.assert_array_equal(back, ids)
    assert sorted(p.name for p in target.parent.iterdir()) == ["00000.png"]
    # int64 input works too
    write_palette_png(target, ids.astype(np.int64))
    np.testing.assert_array_equal(read_palette_png(target), ids)


def test_palette_png_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="256"):
        write_palette_png(tmp_path / "x.png", np.full((4, 4), 256, dtype=np.int32))
    with pytest.raises(InputError, match="negative"):
        write_palette_png(tmp_path / "x.png", np.full((4, 4), -1, dtype=np.int32))
    with pytest.raises(InputError, match="integer"):
        write_palette_png(tmp_path / "x.png", np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(InputError, match="2-D"):
        write_palette_png(tmp_path / "x.png", np.zeros((4, 4, 3), dtype=np.uint8))
    assert not (tmp_path / "x.png").exists()
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(rgb)
    with pytest.raises(InputError, match="RGB"):
        read_palette_png(rgb)
    with pytest.raises(InputError, match="not found"):
        read_palette_png(tmp_path / "missing.png")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png")
    with pytest.raises(InputError):
        read_palette_png(garbage)


def test_masks_to_id_map_overlap_rules() -> None:
    a = np.zeros((3, 4), bool)
    a[:, :2] = True
    b = np.zeros((3, 4), bool)
    b[:, 1:3] = True
    # later wins without scores
    ids = masks_to_id_map({1: a, 2: b})
    assert ids.tolist() == [[1, 2, 2, 0]] * 3
    ids = masks_to_id_map({2: b, 1: a})
    assert ids.tolist() == [[1, 1, 2, 0]] * 3
    # higher score wins with scores
    ids = masks_to_id_map({1: a, 2: b}, scores={1: 0.9, 2: 0.1})
    assert ids.tolist() == [[1, 1, 2, 0]] * 3
    assert masks_to_id_map({}, shape=(2, 2)).tolist() == [[0, 0], [0, 0]]
    back = id_map_to_masks(masks_to_id_map({1: a, 2: b}))
    assert sorted(back) == [1, 2]
    np.testing.assert_array_equal(back[1], a & ~b)
    np.testing.assert_array_equal(back[2], b)
    assert not id_map_to_masks(np.zeros((2, 2), np.uint8), object_ids=[7])[7].any()


def test_masks_to_id_map_bad_input() -> None:
    m = np.ones((2, 2), bool)
    with pytest.raises(InputError, match="out of range"):
        masks_to_id_map({256: m})
    with pytest.raises(InputError, match="out of range"):
        masks_to_id_map({0: m})
    with pytest.raises(InputError, match="shape"):
        masks_to_id_map({1: m, 2: np.ones((3, 2), bool)})
    with pytest.raises(InputError, match="boolean"):
        masks_to_id_map({1: np.full((2, 2), 0.5)})
    with pytest.raises(InputError, match="shape"):
        masks_to_id_map({})


def test_rle_roundtrip_and_values() -> None:
    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (5, 7), (32, 17)]:
        m = rng.random((h, w)) > 0.5
        rle = encode_rle(m)
        assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
        json.dumps(rle)
        np.testing.assert_array_equal(decode_rle(rle), m)
    # column-major runs: a 2x2 mask with only the bottom-left pixel set -> runs [1, 1, 2]
    m = np.array([[0, 0], [1, 0]], bool)
    np.testing.assert_array_equal(decode_rle({"size": [2, 2], "counts": [1, 1, 2]}), m)
    np.testing.assert_array_equal(decode_rle(encode_rle(m)), m)
    assert decode_rle(encode_rle(np.zeros((0, 3), bool))).shape == (0, 3)


def test_rle_bad_input() -> None:
    with pytest.raises(InputError):
        encode_rle(np.zeros((2, 2, 2), bool))
    with pytest.raises(InputError):
        encode_rle(np.full((2, 2), 0.3))
    with pytest.raises(InputError):
        decode_rle({"size": [2, 2]})
    with pytest.raises(InputError):
        decode_rle({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(InputError):
        decode_rle({"size": [-1, 2], "counts": ""})


def test_rle_json_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    m = [rng.random((6, 9)) > 0.5 for _ in range(3)]
    tracks = {0: {1: m[0], 3: (m[1], 0.75)}, 4: {1: TrackMask(m[2], 0.5)}}
    target = tmp_path / "tracks.json"
    write_rle_json(target, tracks)
    doc = json.loads(target.read_text())
    assert doc["format"] == "threeam-tracks" and doc["height"] == 6 and doc["width"] == 9
    assert [f["frame"] for f in doc["frames"]] == [0, 4]
    assert set(doc["frames"][0]["objects"]) == {"1", "3"}
    assert "score" not in doc["frames"][0]["objects"]["1"]
    back = read_rle_json(target)
    assert sorted(back) == [0, 4]
    np.testing.assert_array_equal(back[0][1].mask, m[0])
    assert back[0][1].score is None
    np.testing.assert_array_equal(back[0][3].mask, m[1])
    assert back[0][3].score == 0.75
    np.testing.assert_array_equal(back[4][1].mask, m[2])
    assert back[4][1].score == 0.5


def test_rle_json_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="shape"):
        write_rle_json(tmp_path / "t.json", {0: {1: np.ones((2, 2), bool)}, 1: {1: np.ones((3, 2), bool)}})
    with pytest.raises(InputError, match="frame"):
        write_rle_json(tmp_path / "t.json", {-1: {1: np.ones((2, 2), bool)}})
    assert not (tmp_path / "t.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"frames": []}))
    with pytest.raises(InputError, match="format"):
        read_rle_json(bad)
    bad.write_text("{")
    with pytest.raises(InputError, match="JSON"):
        read_rle_json(bad)


def test_writers_refuse_overwrite_when_asked(tmp_path: Path) -> None:
    png = tmp_path / "m.png"
    write_palette_png(png, np.ones((2, 2), np.uint8))
    with pytest.raises(InputError, match="already exists"):
        write_palette_png(png, np.zeros((2, 2), np.uint8), overwrite=False)
    assert read_palette_png(png).tolist() == [[1, 1], [1, 1]]
    js = tmp_path / "t.json"
    write_rle_json(js, {0: {1: np.ones((2, 2), bool)}})
    with pytest.raises(InputError, match="already exists"):
        write_rle_json(js, {}, overwrite=False)
    assert sorted(read_rle_json(js)) == [0]
