"""Datasets: synthetic wide-baseline scenes, ScanNet++ / Replica / ASE / DAVIS readers, FoV-aware
clip sampling and evaluation-sequence building. See docs/data.md.

Every reader returns a :class:`~threeam.data.types.Scene` of :class:`~threeam.data.types.PosedFrame`.
"""
from threeam.data.types import InMemoryScene, PosedFrame, Scene, SceneMesh, check_frame

__all__ = ["InMemoryScene", "PosedFrame", "Scene", "SceneMesh", "check_frame"]
