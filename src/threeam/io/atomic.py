"""Atomic output: files and whole output folders.

Files: :func:`atomic_path` yields a temporary path beside the target and renames it onto the
target when the block succeeds (:func:`atomic_write_bytes`, :func:`atomic_write_text`).

Folders (the output contract of every command that writes): :func:`atomic_output_dir`

* writes into a new hidden folder ``.<name>.tmp-<pid>-<random>`` beside the target, holding a
  marker file (:data:`MARKER_NAME`) that says threeam wrote it and, once complete, lists every
  file in it;
* on success swaps it with the target in one step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere
  two renames, the old folder parked as ``.<name>.old-<pid>-<random>`` and put back on failure),
  so at no moment are both the old and the new result missing, then deletes the old result;
* on an exception, SIGINT or SIGTERM removes the temporary folder (the signals are turned into
  ``KeyboardInterrupt`` / ``SystemExit(128 + signum)`` while the block runs, and deferred while
  the swap itself runs);
* on entry removes stale temporary folders of killed runs (their pid is gone) and, if a killed run
  left the target missing between its two renames, puts the parked old result back;
* replaces an existing non-empty target only with ``overwrite=True`` and only if threeam wrote it:
  its marker is present and every file in it is listed there. Anything else is refused, as are
  ``/``, the home folder, the current folder and any folder that contains them;
* creates files and folders with the permissions the umask gives (not 0600/0700).

:func:`check_output_dir` runs the same checks (and that the parent folder is writable) without
writing anything, so commands call it before any model runs.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Optional

from threeam.errors import InputError

__all__ = ["MARKER_NAME", "atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_output_dir",
           "check_output_dir", "check_output_root", "clean_stale", "read_marker", "current_umask", "signals_raise"]

MARKER_NAME = ".threeam-output.json"
MARKER_FORMAT = "threeam-output"
MARKER_VERSION = 1


# ---------------------------------------------------------------------------------- permissions


def current_umask() -> int:
    """The process umask (read from /proc on Linux, else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod_umask(path: Path, base: int) -> None:
    os.chmod(path, base & ~current_umask())


# ---------------------------------------------------------------------------------- signals


class _SignalState:
    """While :func:`signals_raise` is active, SIGINT raises KeyboardInterrupt and SIGTERM
    ``SystemExit(128 + signum)``, except inside :func:`_critical`, where they wait until it ends."""

    def __init__(self) -> None:
        self.critical = 0
        self.pending: Optional[int] = None

    def handler(self, signum: int, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.critical:
            self.pending = signum
            return
        _raise_for(signum)


_SIGNALS = _SignalState()


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into exceptions for the block, so ``finally``/``except`` clean-up
    runs. Only handlers still at their defaults are replaced (a trainer's own handlers stay);
    outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        current = signal.getsignal(sig)
        if current is default:
            saved[sig] = current
            signal.signal(sig, _SIGNALS.handler)
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _critical() -> Iterator[None]:
    """Defer SIGINT/SIGTERM (when handled by :func:`signals_raise`) until the block ends."""
    _SIGNALS.critical += 1
    try:
        yield
    finally:
        _SIGNALS.critical -= 1
        if not _SIGNALS.critical and _SIGNALS.pending is not None:
            signum, _SIGNALS.pending = _SIGNALS.pending, None
            _raise_for(signum)


# ---------------------------------------------------------------------------------- files


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`.

    On an exception the temporary file is removed and `target` is left untouched.
    `suffix` defaults to the target's suffix so that writers that pick a format by
    extension (PIL, PyAV) still work. The file gets the permissions the umask gives.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        _chmod_umask(tmp_path, 0o666)
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `target` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


# ---------------------------------------------------------------------------------- folders


def read_marker(folder: str | os.PathLike) -> Optional[dict]:
    """The marker of a folder threeam wrote, or None (no marker, unreadable, or not ours)."""
    try:
        doc = json.loads((Path(folder) / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != MARKER_FORMAT:
        return None
    return doc


def _write_marker(folder: Path, kind: str, files: Optional[list[str]]) -> None:
    doc = {"format": MARKER_FORMAT, "version": MARKER_VERSION, "kind": kind, "complete": files is not None,
           "files": files}
    if files is None:  # who is writing it, for the stale clean-up; a finished folder names no machine
        doc.update(host=socket.gethostname(), pid=os.getpid())
    path = folder / MARKER_NAME
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _tree(folder: Path) -> list[str]:
    """Relative POSIX paths of every file, link and folder under ``folder`` (the marker excluded)."""
    out = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for name in dirs + files:
            p = (rel / name).as_posix()
            if p != MARKER_NAME:
                out.append(p)
    return sorted(out)


def _protected(path: Path) -> Optional[str]:
    """Why ``path`` (absolute) must never be replaced, or None."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        return "it is the file-system root"
    for name, other in (("the current folder", Path.cwd()), ("the home folder", Path.home())):
        with contextlib.suppress(OSError, RuntimeError):
            other = other.resolve()
            if resolved == other:
                return f"it is {name}"
            if resolved in other.parents:
                return f"it contains {name}"
    return None


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path, what: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".threeam-write-test-", dir=folder)
    except OSError as e:
        raise InputError(f"{what}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output_dir(target: str | os.PathLike, *, overwrite: bool = False, option: str = "--out",
                     overwrite_hint: str = "pass --overwrite to replace it") -> Path:
    """Validate an output folder before any work: InputError (one line) unless it can be written
    under the contract in the module docstring. Returns the target (``~`` expanded).

    * ``target`` may be missing (its parent is then created later) or an empty folder;
    * a non-empty folder needs ``overwrite`` and must be one threeam wrote (marker + only listed files);
    * ``/``, home, the current folder and their ancestors are refused, so are files and links;
    * the nearest existing parent must be a folder we can write in.
    """
    path = Path(target).expanduser()
    label = f"{option} {target}" if option else str(target)
    if str(target).strip() == "":
        raise InputError(f"{option or 'output folder'} must not be empty")
    why = _protected(path.absolute())
    if why is not None:
        raise InputError(f"{label}: refusing to write there because {why}; choose a new folder, e.g. {option} runs/out")
    if path.is_symlink():
        raise InputError(f"{label} is a symbolic link; give the folder itself or a new folder")
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{label} exists and is not a folder; choose a new folder")
        entries = [p for p in path.iterdir()]
        if entries:
            if not overwrite:
                raise InputError(f"{label} already exists and is not empty; {overwrite_hint} or choose another folder")
            marker = read_marker(path)
            if marker is None:
                raise InputError(f"{label} was not written by threeam (no {MARKER_NAME}); refusing to replace it, "
                                 "delete it yourself or choose another folder")
            listed = marker.get("files")
            if not isinstance(listed, list):
                raise InputError(f"{label} is an incomplete or growing threeam folder ({marker.get('kind')}); "
                                 "refusing to replace it, delete it yourself or choose another folder")
            foreign = sorted(set(_tree(path)) - set(listed))
            if foreign:
                more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
                raise InputError(f"{label} holds files threeam did not write ({foreign[0]}{more}); refusing to "
                                 "replace it, move them away or choose another folder")
        _probe_writable(path.parent if path.parent.exists() else _nearest_existing(path.parent), label)
        return path
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise InputError(f"{label}: {base} is a file, not a folder")
    _probe_writable(base, label)
    return path


def check_output_root(target: str | os.PathLike, *, option: str = "--out") -> Path:
    """A folder that commands add to (a dataset root, a feature cache, a training run) rather than
    replace: it may exist and hold anything, but it must be a folder (or missing) that we can write
    in. Whatever it holds is never deleted; what is added follows :func:`atomic_output_dir`."""
    path = Path(target).expanduser()
    label = f"{option} {target}" if option else str(target)
    if str(target).strip() == "":
        raise InputError(f"{option or 'output folder'} must not be empty")
    if path.exists() and not path.is_dir():
        raise InputError(f"{label} exists and is not a folder")
    base = path if path.is_dir() else _nearest_existing(path.parent)
    if not base.is_dir():
        raise InputError(f"{label}: {base} is a file, not a folder")
    _probe_writable(base, label)
    return path


_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|old)-(?P<pid>\d+)-[0-9a-f]+$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def clean_stale(target: str | os.PathLike, *, every: bool = False) -> list[Path]:
    """Remove ``.<name>.tmp-*`` / ``.<name>.old-*`` folders beside ``target`` left by runs that were
    killed (pid no longer alive on this host). If the target itself is missing and a parked old
    result exists, it is renamed back first. ``every=True`` treats ``target`` as a folder and
    cleans the leftovers of every name inside it. Returns what was removed or restored."""
    target = Path(target)
    parent = target if every else target.parent
    if not parent.is_dir():
        return []
    host = socket.gethostname()
    done = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        m = _STALE.match(entry.name)
        if m is None or (not every and m.group("name") != target.name):
            continue
        marker = read_marker(entry)
        if marker is not None and marker.get("host") not in (None, host):
            continue  # another machine's run (shared file system): not ours to judge
        if _pid_alive(int(m.group("pid"))):
            continue
        final = parent / m.group("name")
        if m.group("what") == "old" and not final.exists() and not final.is_symlink():
            with contextlib.suppress(OSError):
                os.rename(entry, final)
                done.append(final)
                continue
        _remove(entry)
        done.append(entry)
    return done


def _load_renameat2():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2() if os.name == "posix" else None
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the OS or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target``; the previous target (if any) is deleted afterwards."""
    if not target.exists():
        os.rename(tmp, target)
        return
    if _exchange(tmp, target):
        _remove(tmp)  # now holds the old result
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_output_dir(target: str | os.PathLike, *, overwrite: bool = False, kind: str = "output",
                      option: str = "--out", overwrite_hint: str = "pass --overwrite to replace it") -> Iterator[Path]:
    """Yield a new temporary folder beside ``target``; when the block succeeds it replaces ``target``
    in one swap (see the module docstring for the whole contract).

    Args:
        target: the final output folder (``~`` expanded).
        overwrite: allow replacing an existing non-empty folder that threeam wrote.
        kind: recorded in the marker (``"track"``, ``"eval"``, ``"checkpoint"``, ...).
        option, overwrite_hint: how error messages name the folder and the way to replace it.
    Raises:
        InputError: the target may not be written (see :func:`check_output_dir`); nothing is created.
    """
    path = Path(target).expanduser()
    clean_stale(path)
    check_output_dir(path, overwrite=overwrite, option=option, overwrite_hint=overwrite_hint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{option} {target}: cannot create {path.parent} ({e.strerror or e})") from None
    with signals_raise():
        with _critical():
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
            tmp.mkdir()
        try:
            _chmod_umask(tmp, 0o777)
            _write_marker(tmp, kind, None)
            yield tmp
            with _critical():
                # the target may have changed while we worked: the same rules again, at the last moment
                check_output_dir(path, overwrite=overwrite, option=option, overwrite_hint=overwrite_hint)
                _write_marker(tmp, kind, _tree(tmp))
                _swap_in(tmp, path)
        except BaseException:
            with _critical():
                _remove(tmp)
            raise
