"""The output-folder contract of `threeam.io.atomic.atomic_output_dir`."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from threeam.errors import InputError
from threeam.io import atomic
from threeam.io.atomic import (MARKER_NAME, atomic_output_dir, atomic_write_text, check_output_dir, clean_stale,
                               read_marker)

SRC = str(Path(atomic.__file__).resolve().parents[2])


def _write(target: Path, files: dict[str, str], **kw) -> None:
    with atomic_output_dir(target, **kw) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_new_folder_gets_files_and_a_marker_listing_them(tmp_path):
    out = tmp_path / "a" / "out"
    _write(out, {"x.txt": "1", "sub/y.txt": "2"}, kind="test")
    assert (out / "sub" / "y.txt").read_text() == "2"
    marker = read_marker(out)
    assert marker["kind"] == "test" and marker["complete"] is True
    assert marker["files"] == ["sub", "sub/y.txt", "x.txt"]
    assert _listing(out.parent) == ["out"]  # no temporary folder left


def test_existing_output_needs_overwrite_and_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    _write(out, {"old.txt": "old"})
    with pytest.raises(InputError, match="--overwrite"):
        _write(out, {"new.txt": "new"})
    assert _listing(out) == [MARKER_NAME, "old.txt"]
    _write(out, {"new.txt": "new"}, overwrite=True)
    assert _listing(out) == [MARKER_NAME, "new.txt"]
    assert _listing(tmp_path) == ["out"]


def test_an_empty_existing_folder_is_used_without_overwrite(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    _write(out, {"a": "1"})
    assert (out / "a").read_text() == "1"


@pytest.mark.parametrize("case", ["foreign", "extra_file", "incomplete", "file"])
def test_overwrite_refuses_what_threeam_did_not_write(tmp_path, case):
    out = tmp_path / "out"
    if case == "foreign":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    elif case == "extra_file":
        _write(out, {"masks.json": "{}"})
        (out / "notes.txt").write_text("mine")
    elif case == "incomplete":
        out.mkdir()
        (out / MARKER_NAME).write_text(json.dumps({"format": "threeam-output", "files": None}))
        (out / "x").write_text("?")
    else:
        out.write_text("a file")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(InputError) as err:
        _write(out, {"new": "1"}, overwrite=True)
    assert "\n" not in str(err.value) and str(out) in str(err.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_dangerous_targets_are_refused(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "deep").mkdir(parents=True)
    monkeypatch.chdir(work / "deep")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for target in (".", "..", str(work), "~", "/", os.sep.join(["", ""])):
        with pytest.raises(InputError, match="refusing"):
            check_output_dir(target, overwrite=True)
    check_output_dir("new_folder")  # inside the current folder is fine


def test_a_failing_block_leaves_the_old_result_and_no_temporary(tmp_path):
    out = tmp_path / "out"
    _write(out, {"keep": "old"})
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out, overwrite=True) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("boom")
    assert (out / "keep").read_text() == "old"
    assert _listing(tmp_path) == ["out"]


def test_the_swap_never_leaves_the_target_missing(tmp_path, monkeypatch):
    """When the old result is deleted, the new one is already in place (both with the one-step
    exchange and with the two-rename fallback)."""
    seen = []
    real_remove = atomic._remove

    def spy(path):
        seen.append((out / "v").read_text())
        real_remove(path)

    monkeypatch.setattr(atomic, "_remove", spy)
    out = tmp_path / "out"
    _write(out, {"v": "1"})
    _write(out, {"v": "2"}, overwrite=True)
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    _write(out, {"v": "3"}, overwrite=True)
    assert seen == ["2", "3"] and (out / "v").read_text() == "3"
    assert _listing(tmp_path) == ["out"]


def test_the_fallback_puts_the_old_result_back_when_the_second_rename_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _write(out, {"v": "old"})
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def rename(a, b):
        if Path(a).name.startswith(".out.tmp-"):
            raise OSError(28, "No space left on device")
        real_rename(a, b)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError):
        _write(out, {"v": "new"}, overwrite=True)
    assert (out / "v").read_text() == "old"
    assert _listing(tmp_path) == ["out"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_killed_runs_are_removed_and_a_parked_result_restored(tmp_path):
    pid = _dead_pid()
    out = tmp_path / "out"
    stale = tmp_path / f".out.tmp-{pid}-0a0b0c0d"
    stale.mkdir()
    (stale / "junk").write_text("x")
    parked = tmp_path / f".out.old-{pid}-01020304"
    parked.mkdir()
    (parked / "result").write_text("the last good result")
    alive = tmp_path / f".out.tmp-{os.getpid()}-deadbeef"
    alive.mkdir()
    other = tmp_path / ".other.tmp-1-00"
    other.mkdir()
    clean_stale(out)
    assert (out / "result").read_text() == "the last good result"
    assert sorted(_listing(tmp_path)) == sorted([".other.tmp-1-00", alive.name, "out"])


def test_files_and_folders_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = tmp_path / "out"
        _write(out, {"a.txt": "1"})
        atomic_write_text(out / "b.txt", "2")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((out / "b.txt").stat().st_mode) == 0o640


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_block_removes_the_temporary(tmp_path, signum):
    out = tmp_path / "out"
    _write(out, {"v": "old"})
    script = textwrap.dedent(f"""
        import os, signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a foreground process (a background job inherits SIG_IGN)
        sys.path.insert(0, {SRC!r})
        from threeam.io.atomic import atomic_output_dir
        with atomic_output_dir({str(out)!r}, overwrite=True) as tmp:
            (tmp / "v").write_text("new")
            os.kill(os.getpid(), {int(signum)})
            print("not interrupted")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "not interrupted" not in res.stdout
    # SIGTERM -> exit 143; SIGINT -> KeyboardInterrupt, which Python ends by re-raising SIGINT (-2)
    assert res.returncode == (143 if signum == signal.SIGTERM else -signal.SIGINT), res.stderr
    assert (out / "v").read_text() == "old"
    assert _listing(tmp_path) == ["out"]


def test_unwritable_parent_is_reported_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_output_dir(blocker / "out")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(InputError, match="cannot write"):
                check_output_dir(ro / "out")
        finally:
            ro.chmod(0o700)


def test_every_stale_temporary_in_a_folder_is_cleaned(tmp_path):
    pid = _dead_pid()
    for name in (f".step_00000010.tmp-{pid}-aa", f".step_00000020.tmp-{pid}-bb"):
        (tmp_path / name).mkdir()
    (tmp_path / "step_00000005").mkdir()
    keep = tmp_path / f".step_00000030.tmp-{os.getpid()}-cc"  # this process: still writing
    keep.mkdir()
    clean_stale(tmp_path, every=True)
    assert _listing(tmp_path) == sorted([keep.name, "step_00000005"])
