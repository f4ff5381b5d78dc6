"""Which dataset a folder holds, and its scenes: :func:`open_scenes` and the :data:`DATA_FORMATS` table.

Layouts recognised (checked in the table's order; the first that matches wins)::

    davis      <root>/JPEGImages/[480p/]<seq>/00000.jpg + Annotations/...   (DAVIS 2017, or one MOSE split)
    mose       <root>/{train,valid}/JPEGImages/<seq>/00000.jpg + Annotations/...   (the MOSE download)
    replica    <seq>/rgb/rgb_<i>.png + traj_w_c.txt, <root> itself or up to two levels below
               (e.g. <root>/room0/Sequence_1)
    ase        <scene>/rgb/vignette%07d.jpg + trajectory.csv (or .txt), <root> itself or up to two
               levels below (the ASE download: <root>/<scene_id>/...)
    scannetpp  <root>/data/<scene>/... (dataset root) or one scene folder (iphone/ or dslr/)
    synthetic  not a folder: ``synthetic:N`` generates N scenes

The readers themselves live in `threeam.data.davis`, `.replica`, `.ase` and `.scannetpp`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from threeam.errors import InputError

__all__ = ["DataFormat", "SceneOptions", "DATA_FORMATS", "open_scenes", "detect_format", "find_scene_dirs"]


@dataclass(frozen=True)
class SceneOptions:
    """Reader options shared by the formats.

    Attributes:
        split: DAVIS ``ImageSets/2017/<split>.txt``, ScanNet++ ``splits/<split>.txt``, or the MOSE
            sub-folder (``train`` / ``valid``; default ``train``). Ignored by Replica and ASE.
        stride: keep every ``stride``-th frame (ScanNet++, Replica, ASE).
        device: torch device of the ScanNet++ mesh rasteriser.
    """

    split: str | None = None
    stride: int = 1
    device: str = "cpu"


@dataclass(frozen=True)
class DataFormat:
    """One entry of :data:`DATA_FORMATS`.

    Attributes:
        name: the ``--format`` value.
        layout: one line saying what a folder of this format looks like (used in error messages).
        detect: ``detect(root) -> bool``; None for formats that are not folders (synthetic).
        open: ``open(root, options) -> list[Scene]``.
    """

    name: str
    layout: str
    detect: Callable[[Path], bool] | None
    open: Callable[[Path, SceneOptions], list]


def find_scene_dirs(root: Path, is_scene: Callable[[Path], bool], depth: int = 2,
                    key: Callable[[Path], object] | None = None) -> list[Path]:
    """Folders for which ``is_scene`` holds: ``root`` itself, else its children, else grandchildren
    (up to ``depth`` levels), the shallowest level that has any, sorted by ``key`` (default: path)."""
    if is_scene(root):
        return [root]
    level = [root]
    for _ in range(depth):
        level = sorted((c for d in level for c in d.iterdir() if c.is_dir()), key=key)
        found = [d for d in level if is_scene(d)]
        if found:
            return found
    return []


def _natural(p: Path) -> list:
    """Sort key that orders ``2`` before ``10`` (ASE scene ids are integers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


# ------------------------------------------------------------------------------------- DAVIS / MOSE

def _is_davis(root: Path) -> bool:
    return (root / "JPEGImages").is_dir()


def _open_davis(root: Path, opts: SceneOptions) -> list:
    from threeam.data.davis import DavisSequence, list_davis_sequences

    return [DavisSequence(root, s) for s in list_davis_sequences(root, split=opts.split)]


_MOSE_SPLITS = ("train", "valid")


def _is_mose(root: Path) -> bool:
    return any((root / s / "JPEGImages").is_dir() for s in _MOSE_SPLITS)


def _open_mose(root: Path, opts: SceneOptions) -> list:
    from threeam.data.davis import DavisSequence, list_davis_sequences

    if _is_davis(root):  # --format mose on one split's folder
        return [DavisSequence(root, s) for s in list_davis_sequences(root)]
    present = [s for s in sorted(p.name for p in root.iterdir() if (p / "JPEGImages").is_dir())]
    split = opts.split or ("train" if "train" in present else present[0] if present else "train")
    if split not in present:
        raise InputError(f"MOSE split {split!r} not found in {root}: it has {', '.join(present) or 'no'} "
                         "split folders (<split>/JPEGImages)")
    base = root / split
    return [DavisSequence(base, s) for s in list_davis_sequences(base)]


# ------------------------------------------------------------------------------------- Replica

def _is_replica_seq(d: Path) -> bool:
    return (d / "rgb").is_dir() and (d / "traj_w_c.txt").is_file()


def _replica_dirs(root: Path) -> list[Path]:
    return find_scene_dirs(root, _is_replica_seq)


def _open_replica(root: Path, opts: SceneOptions) -> list:
    from threeam.data.replica import ReplicaScene

    seqs = _replica_dirs(root)
    if not seqs:
        raise InputError(f"no Replica sequence (folder with rgb/ and traj_w_c.txt) in {root} or two levels below")
    return [ReplicaScene(p, stride=opts.stride) for p in seqs]


# ------------------------------------------------------------------------------------- ASE

def _is_ase_scene(d: Path) -> bool:
    if not (d / "rgb").is_dir() or not ((d / "trajectory.csv").is_file() or (d / "trajectory.txt").is_file()):
        return False
    return next((d / "rgb").glob("vignette*.jpg"), None) is not None


def _ase_dirs(root: Path) -> list[Path]:
    return find_scene_dirs(root, _is_ase_scene, key=_natural)


def _open_ase(root: Path, opts: SceneOptions) -> list:
    from threeam.data.ase import AseScene

    scenes = _ase_dirs(root)
    if not scenes:
        raise InputError(f"no ASE scene (folder with rgb/vignette*.jpg and trajectory.csv) in {root} "
                         "or two levels below")
    return [AseScene(p, stride=opts.stride) for p in scenes]


# ------------------------------------------------------------------------------------- ScanNet++

def _is_scannetpp(root: Path) -> bool:
    return (root / "data").is_dir() or (root / "iphone").is_dir() or (root / "dslr").is_dir()


def _open_scannetpp(root: Path, opts: SceneOptions) -> list:
    from threeam.data.scannetpp import ScanNetPPScene, list_scannetpp_scenes

    if (root / "data").is_dir():
        return [ScanNetPPScene(root, s, stride=opts.stride, device=opts.device)
                for s in list_scannetpp_scenes(root, split=opts.split)]
    return [ScanNetPPScene(root, stride=opts.stride, device=opts.device)]


def _open_synthetic_folder(root: Path, opts: SceneOptions) -> list:
    raise InputError("--format synthetic goes with --data synthetic:N")


DATA_FORMATS: dict[str, DataFormat] = {f.name: f for f in (
    DataFormat("davis", "DAVIS/MOSE split: JPEGImages/ + Annotations/", _is_davis, _open_davis),
    DataFormat("mose", "MOSE: train/ or valid/ holding JPEGImages/ + Annotations/", _is_mose, _open_mose),
    DataFormat("replica", "Replica: <seq>/rgb/ + traj_w_c.txt", lambda r: bool(_replica_dirs(r)), _open_replica),
    DataFormat("ase", "ASE: <scene>/rgb/vignette*.jpg + trajectory.csv", lambda r: bool(_ase_dirs(r)), _open_ase),
    DataFormat("scannetpp", "ScanNet++: data/<scene>/ or one scene with iphone/ or dslr/", _is_scannetpp,
               _open_scannetpp),
    DataFormat("synthetic", "synthetic:N (generated scenes)", None, _open_synthetic_folder),
)}
"""The formats by name, in detection order."""


def detect_format(root: str | os.PathLike) -> str:
    """The name of the first :data:`DATA_FORMATS` entry whose layout `root` has; `InputError` if none."""
    root = Path(root)
    for f in DATA_FORMATS.values():
        if f.detect is not None and f.detect(root):
            return f.name
    layouts = "; ".join(f.layout for f in DATA_FORMATS.values() if f.detect is not None)
    raise InputError(f"cannot tell the dataset format of {root} (looked for {layouts}); pass --format "
                     f"({', '.join(n for n, f in DATA_FORMATS.items() if f.detect is not None)})")


def _synthetic(data: str, fmt: str | None, synth_preset: str, synth_frames: int | None, seed: int,
               device: str) -> list:
    m = re.fullmatch(r"synthetic(?::(\d+))?", data)
    if not m:
        raise InputError(f"use --data synthetic:N (N scenes), got {data!r}")
    if fmt not in (None, "synthetic"):
        raise InputError(f"--data {data} generates synthetic scenes; --format {fmt} does not apply")
    from threeam.data.synth import generate_scene, get_synth_config

    n = int(m.group(1) or 1)
    if n < 1:
        raise InputError("synthetic:N needs N >= 1")
    over = {"device": device}
    if synth_frames is not None:
        over["n_frames"] = synth_frames
    cfg = get_synth_config(synth_preset, **over)
    return [generate_scene(cfg, seed=seed + k, name=f"synth_{seed + k:05d}") for k in range(n)]


def open_scenes(data: str | os.PathLike, fmt: str | None = None, *, split: str | None = None,
                synth_preset: str = "tiny", synth_frames: int | None = None, seed: int = 0, device: str = "cpu",
                stride: int = 1) -> list:
    """The scenes of a dataset as `threeam.data.types.Scene` objects.

    Args:
        data: ``synthetic:N`` (N generated scenes, seeds ``seed .. seed+N-1``) or a folder in one of
            the layouts of the module docstring.
        fmt: a :data:`DATA_FORMATS` name; detected from the folder when None.
        split: see :class:`SceneOptions`.
        synth_preset, synth_frames: synthetic generator preset and frames per scene.
        seed: seed of the first synthetic scene.
        device: torch device (synthetic renderer, ScanNet++ rasteriser).
        stride: keep every ``stride``-th frame (ScanNet++, Replica and ASE readers).

    Returns:
        a list of Scenes (ASE frames are rectified pinhole views, see `threeam.data.ase.AseScene`).
    """
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    if fmt is not None and fmt not in DATA_FORMATS:
        raise InputError(f"--format must be one of {', '.join(DATA_FORMATS)}, got {fmt!r}")
    data = os.fspath(data)
    if data.startswith("synthetic"):
        return _synthetic(data, fmt, synth_preset, synth_frames, seed, device)
    root = Path(data)
    if not root.exists():
        raise InputError(f"--data {data}: no such file or folder (or use synthetic:N)")
    name = fmt if fmt is not None else detect_format(root)
    return DATA_FORMATS[name].open(root, SceneOptions(split=split, stride=stride, device=device))

