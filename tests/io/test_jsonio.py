"""`threeam.io.jsonio.read_json`: missing, undecodable and malformed files are one line of the asked error."""
from __future__ import annotations

import pytest

from threeam.errors import CheckpointError, InputError
from threeam.io.jsonio import read_json


def test_read_json_parses_and_names_what_failed(tmp_path):
    good = tmp_path / "a.json"
    good.write_text('{"x": [1, 2]}', encoding="utf-8")
    assert read_json(good, "demo file") == {"x": [1, 2]}
    with pytest.raises(InputError, match="demo file not found: "):
        read_json(tmp_path / "none.json", "demo file")
    with pytest.raises(CheckpointError, match="^no state here$"):
        read_json(tmp_path / "none.json", "state", error=CheckpointError, missing="no state here")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="demo file .*bad.json is not valid JSON"):
        read_json(bad, "demo file")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CheckpointError, match="demo file .*bin.json is not a text"):
        read_json(binary, "demo file", error=CheckpointError)
    folder = tmp_path / "dir.json"
    folder.mkdir()
    with pytest.raises(InputError, match="not found"):
        read_json(folder, "demo file")
