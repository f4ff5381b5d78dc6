"""ScanNet v2 / ScanNet200 readers. See docs/scannet.md.

* :func:`open_scannet` - the scenes of a dataset root (optionally those of a split file).
* :class:`~threeam.data.scannet.scene.ScanNetScene` - one scene: frames (``.sens`` or exported
  ``color/ depth/ pose/ intrinsic/``), ``_vh_clean_2.ply``, superpoints, per-vertex GT.
* :mod:`~threeam.data.scannet.sens` - lazy ``.sens`` reader and writer.
* :mod:`~threeam.data.scannet.exported` - the exported-frames layout.
* :mod:`~threeam.data.scannet.labels` - class tables and the label-table reader.
* :mod:`~threeam.data.scannet.splits` - split files.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from threeam.data.scannet.exported import ExportedFrames, export_sens, write_exported_frames
from threeam.data.scannet.labels import (SCANNET18_IDS, SCANNET18_NAMES, SCANNET20_IDS, SCANNET20_NAMES,
                                         SCANNET198_IDS, SCANNET198_NAMES, SCANNET200_IDS, SCANNET200_NAMES,
                                         LabelTable, read_label_table, write_label_table)
from threeam.data.scannet.scene import ScanNetFrame, ScanNetScene, write_scannet_scene
from threeam.data.scannet.sens import SensFile, write_sens
from threeam.data.scannet.splits import read_split, write_split
from threeam.errors import InputError

__all__ = ["open_scannet", "scannet_scene_dirs", "ScanNetScene", "ScanNetFrame", "SensFile", "write_sens",
           "ExportedFrames", "export_sens", "write_exported_frames", "write_scannet_scene", "LabelTable",
           "read_label_table", "write_label_table", "read_split", "write_split", "SCANNET20_IDS", "SCANNET20_NAMES",
           "SCANNET18_IDS", "SCANNET18_NAMES", "SCANNET200_IDS", "SCANNET200_NAMES", "SCANNET198_IDS",
           "SCANNET198_NAMES"]

_SCENE = re.compile(r"^scene\d{4}_\d{2}$")


def _scans_root(root: Path) -> Path:
    """``root/scans`` when it exists (the download layout), else ``root`` itself."""
    return root / "scans" if (root / "scans").is_dir() else root


def scannet_scene_dirs(root: str | os.PathLike, split_file: str | os.PathLike | None = None,
                       scenes: Iterable[str] | None = None) -> list[Path]:
    """Scene folders under ``root`` (``root/scans/<id>`` or ``root/<id>``).

    ``scenes`` wins over ``split_file``; with neither, every ``sceneXXXX_YY`` folder, sorted.
    A listed scene without a folder raises InputError naming it (and how many are missing).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"ScanNet root not found: {root}")
    base = _scans_root(root)
    if scenes is not None:
        ids = [str(s) for s in scenes]
    elif split_file is not None:
        ids = read_split(split_file)
    else:
        ids = sorted(p.name for p in base.iterdir() if p.is_dir() and _SCENE.match(p.name))
        if not ids:
            raise InputError(f"no sceneXXXX_YY folders in {base}")
    missing = [s for s in ids if not (base / s).is_dir()]
    if missing:
        raise InputError(f"{len(missing)} of {len(ids)} scenes are not in {base}, e.g. {missing[0]}")
    return [base / s for s in ids]


def open_scannet(root: str | os.PathLike, split_file: str | os.PathLike | None = None,
                 scenes: Iterable[str] | None = None, label_table: str | os.PathLike | LabelTable | None = None,
                 **scene_kwargs) -> list[ScanNetScene]:
    """Open the scenes of a ScanNet root as lazy :class:`ScanNetScene` objects (nothing large is read).

    Args:
        root: the dataset root (holding ``scans/`` or the scene folders themselves).
        split_file: a split list the user points to (e.g. ``scannetv2_val.txt``).
        scenes: explicit scene ids (win over ``split_file``).
        label_table: ``scannetv2-labels.combined.tsv``; default: ``root/`` or beside the scenes.
        scene_kwargs: passed to :class:`ScanNetScene` (``frames``, ``frames_dir``, ``frame_stride``, ``align``).
    """
    dirs = scannet_scene_dirs(root, split_file, scenes)
    if label_table is None:
        for cand in (Path(root) / "scannetv2-labels.combined.tsv", dirs[0].parent / "scannetv2-labels.combined.tsv"):
            if cand.is_file():
                label_table = cand
                break
    if label_table is not None and not isinstance(label_table, LabelTable):
        label_table = read_label_table(label_table)
    return [ScanNetScene(d, label_table=label_table, **scene_kwargs) for d in dirs]
