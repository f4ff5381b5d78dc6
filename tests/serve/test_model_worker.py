"""The model thread runs calls under the predictor's own autocast setting (never a forced one)."""
from __future__ import annotations

import asyncio
import contextlib

import torch

from threeam.serve.sessions import ModelWorker


class _Stub:
    """A predictor on CUDA (as far as the worker can tell) with its own autocast choice."""

    def __init__(self, autocast: bool):
        self.device = torch.device("cuda")
        self.autocast = autocast
        self.entered = 0

    def autocast_enabled(self) -> bool:
        return self.autocast

    @contextlib.contextmanager
    def autocast_context(self):
        if self.autocast:
            self.entered += 1
        yield


def _run(worker, fn):
    async def go():
        return await worker.run(fn)

    try:
        return asyncio.run(go())
    finally:
        worker.shutdown()


def test_a_predictor_built_without_autocast_is_not_autocast(forced_autocast):
    forced = forced_autocast
    off = _Stub(autocast=False)
    assert _run(ModelWorker(off), lambda: 7) == 7
    assert forced == [] and off.entered == 0
    on = _Stub(autocast=True)
    _run(ModelWorker(on), lambda: None)
    assert on.entered == 1  # the predictor's own context, not one the worker chose
    assert forced == []


def test_a_predictor_without_an_autocast_setting_runs_plain():
    class Plain:
        device = torch.device("cpu")

    assert _run(ModelWorker(Plain()), lambda: torch.is_autocast_enabled()) is False
