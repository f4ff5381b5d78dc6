"""MUSt3R tests use tiny tensors: intra-op threads only add overhead (and spin badly on a busy machine)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
