"""Scene lists: the official split files (``Tasks/Benchmark/scannetv2_{train,val,test}.txt``,
1201 / 312 / 100 scenes) are not shipped with threeam; the user points to one."""
from __future__ import annotations

import os
from pathlib import Path

from threeam.errors import InputError

__all__ = ["read_split", "write_split"]


def read_split(path: str | os.PathLike) -> list[str]:
    """Scene ids of a split file: one per line; blank lines and ``#`` comments are skipped,
    duplicates keep their first place.

    Raises:
        InputError: missing or empty file, or a line holding more than one token.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"split file not found: {path}")
    out: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        tok = line.split("#", 1)[0].split()
        if not tok:
            continue
        if len(tok) != 1:
            raise InputError(f"{path}:{n}: expected one scene id per line, got {line.strip()!r}")
        if tok[0] not in seen:
            seen.add(tok[0])
            out.append(tok[0])
    if not out:
        raise InputError(f"split file {path} lists no scenes")
    return out


def write_split(path: str | os.PathLike, scene_ids: list[str]) -> None:
    """Write a split file (one scene id per line), atomically."""
    from threeam.io.atomic import atomic_write_text

    atomic_write_text(path, "".join(f"{s}\n" for s in scene_ids))
