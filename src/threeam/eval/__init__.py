"""Evaluation: the paper's protocol and metrics, SAM2Long / DAM4SAM baselines, the benchmark runner.

* :mod:`threeam.eval.protocol` - ``track_objects``, ``score_object``, ``load_sequence``
* :mod:`threeam.eval.metrics` - per-track scores and their aggregation
* :mod:`threeam.eval.methods` - ``EvalContext``, ``MethodSpec``, ``BUILTIN_METHODS``, ``METHODS``, ``register_method``
* :mod:`threeam.eval.run` - ``EvalConfig``, ``run_evaluation``
* :mod:`threeam.eval.records` - ``TrackRecord``, ``MethodResult``, ``EvalResults``
* :mod:`threeam.eval.tables` - ``TABLE_COLUMNS``, ``table_rows``, ``render_markdown``, the CSV/JSON writers
* :mod:`threeam.eval.overlays`, :mod:`threeam.eval.memory` - worst-track videos, ``PeakMemory``
* :mod:`threeam.eval.baselines` - the memory policies

Datasets are opened with `threeam.data.discovery.open_scenes`. See docs/evaluation.md.
"""
from threeam.eval.memory import PeakMemory
from threeam.eval.methods import BUILTIN_METHODS, METHODS, EvalContext, MethodSpec, register_method, resolve_methods
from threeam.eval.records import EvalResults, MethodResult, TrackRecord
from threeam.eval.run import EvalConfig, run_evaluation
from threeam.eval.tables import PER_SEQUENCE_COLUMNS, TABLE_COLUMNS, render_markdown, table_rows

__all__ = ["EvalContext", "MethodSpec", "BUILTIN_METHODS", "METHODS", "register_method", "resolve_methods",
           "EvalConfig", "run_evaluation", "TrackRecord", "MethodResult", "EvalResults", "PeakMemory",
           "TABLE_COLUMNS", "PER_SEQUENCE_COLUMNS", "table_rows", "render_markdown"]
