"""The ``eval`` stage for one method only (no prompt-only / sam2-pretrained baselines), e.g. one arm seed.

    python experiments/toy-ablation/diagnostics/eval_arm.py OUT METHOD [experiment options]

METHOD is ``<arm>-s<seed>`` (or a baseline name); the experiment options are those the arms were trained
with (``--sam2-weights``, ``--must3r-weights``, ...: they name the pretrained weights a baseline uses).
Writes ``OUT/eval/METHOD.json`` as the stage does (skipped when it exists) and prints its seconds.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from threeam.experiments.toy_ablation import _load_or_eval, config_from_args, eval_scenes, parse_args

torch.set_num_threads(1)
out, method = Path(sys.argv[1]), sys.argv[2]
cfg = config_from_args(parse_args(["--out", str(out)] + sys.argv[3:]))
t0 = time.time()
rows = _load_or_eval(out, method, eval_scenes(out, cfg), cfg)
print(f'{{"method": "{method}", "tracks": {len(rows)}, "seconds": {time.time() - t0:.0f}}}')
