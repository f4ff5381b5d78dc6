"""Ranking confidence of a lifted instance.

The benchmark's AP sorts predictions by confidence, so a method that submits 1.0 for every mask
gets a single precision-recall point; a real score must put correct instances before spurious
ones. An instance's confidence is the product of the factors named in
``LiftConfig.confidence_terms`` (default: all but ``size``), each in [0, 1]:

* ``score``: mean predicted IoU of the mask-generator proposals that formed it (2D quality);
* ``stability``: mean tracking stability of its fragments (how sure the tracker's mask logits are);
* ``consistency``: mean multi-view agreement of its fragments' vertices (the fraction of the
  frames seeing a vertex in which the tracked mask covered it) - 3D support;
* ``detection``: of the keyframes that *saw* the instance (they see at least
  ``detection_visible_fraction`` of what its best keyframe sees), the share that also proposed it:
  a real object is proposed again whenever it is in view, a spurious mask is not;
* ``size``: ``1 - exp(-vertices / size_scale)``, a prior against tiny fragments.
"""
from __future__ import annotations

import numpy as np

from threeam.lift3d.config import LiftConfig
from threeam.lift3d.merge import Instance

__all__ = ["detection_rate", "instance_confidence", "score_instances"]


def detection_rate(vertices: np.ndarray, proposed: list[int], key_visible: dict[int, np.ndarray],
                   visible_fraction: float) -> float:
    """Share of the keyframes that saw the vertex set which also proposed it (see module docstring)."""
    if vertices.size == 0 or not key_visible:
        return 0.0
    keys = sorted(key_visible)
    seen = np.array([int(key_visible[k][vertices].sum()) for k in keys])
    best = seen.max()
    if best == 0:
        return 0.0
    saw = {k for k, s in zip(keys, seen) if s >= visible_fraction * best}
    saw |= set(proposed)
    return len(set(proposed) & saw) / len(saw)


def instance_confidence(inst: Instance, config: LiftConfig) -> float:
    """The product of the configured terms for an instance whose ``detection`` is already set."""
    terms = {"score": inst.score, "stability": inst.stability, "consistency": inst.consistency,
             "detection": inst.detection, "size": 1.0 - float(np.exp(-inst.vertices.size / config.size_scale))}
    value = 1.0
    for name in config.confidence_terms:
        value *= float(np.clip(terms[name], 0.0, 1.0))
    return value


def score_instances(instances: list[Instance], key_visible: dict[int, np.ndarray], config: LiftConfig) -> None:
    """Set ``detection`` and ``confidence`` of each instance in place."""
    for inst in instances:
        inst.detection = detection_rate(inst.vertices, inst.keyframes, key_visible, config.detection_visible_fraction)
        inst.confidence = instance_confidence(inst, config)
