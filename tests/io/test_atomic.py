from pathlib import Path

import pytest

from threeam.io.atomic import atomic_path, atomic_write_text


def test_atomic_write_replaces_target(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_atomic_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("keep me")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("boom")
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
