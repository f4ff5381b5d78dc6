"""Backward-compatible names of the former single-module runner.

The runner is split into `threeam.eval.methods` (method table), `threeam.eval.run` (run loop),
`threeam.eval.records`, `threeam.eval.tables`, `threeam.eval.overlays` and `threeam.eval.memory`;
dataset discovery moved to `threeam.data.discovery`. Import from `threeam.eval` (or those modules)
and `threeam.data.discovery` in new code; this module only re-exports them.
"""
from threeam.data.discovery import DATA_FORMATS, open_scenes
from threeam.eval import (METHODS, TABLE_COLUMNS, EvalConfig, EvalContext, EvalResults, MethodResult, MethodSpec,
                          PeakMemory, register_method, render_markdown, resolve_methods, run_evaluation, table_rows)

__all__ = ["EvalContext", "MethodSpec", "METHODS", "register_method", "resolve_methods", "EvalConfig",
           "MethodResult", "EvalResults", "run_evaluation", "PeakMemory", "TABLE_COLUMNS", "table_rows",
           "render_markdown", "open_scenes", "DATA_FORMATS"]
