"""Reproducible experiments built from the library's parts (see docs/evidence.md).

* `threeam.experiments.toy_ablation`: the 3AM paper's Table 6 at toy scale on generated look-alike
  scenes (``threeam experiment toy-ablation --out DIR``).
"""
