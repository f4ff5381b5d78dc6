"""Datasets: synthetic wide-baseline scenes, ScanNet++ / Replica / ASE / DAVIS readers, FoV-aware
clip sampling and evaluation-sequence building. See docs/data.md.

Every reader returns a :class:`~threeam.data.types.Scene` of :class:`~threeam.data.types.PosedFrame`:

* :mod:`threeam.data.synth` - ``generate_scene(config, seed)``, ``get_synth_config(preset, **overrides)``
* :mod:`threeam.data.scannetpp` - ``ScanNetPPScene``, ``write_scannetpp_scene``
* :mod:`threeam.data.replica` - ``ReplicaScene``, ``write_replica_sequence``
* :mod:`threeam.data.ase` - ``AseScene``, ``write_ase_scene``
* :mod:`threeam.data.davis` - ``DavisSequence``, ``write_davis_sequence``
* :mod:`threeam.data.sampling` - ``ClipSampler``, ``SamplerConfig``, ``sample_fov_clip``, ...
* :mod:`threeam.data.eval_sequences` - ``build_eval_sequences``, ``EvalSequenceConfig``, ...
"""
from threeam.data.types import InMemoryScene, PosedFrame, Scene, SceneMesh, check_frame

__all__ = ["InMemoryScene", "PosedFrame", "Scene", "SceneMesh", "check_frame"]
