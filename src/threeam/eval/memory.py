"""Peak memory of a block of code: CUDA max allocated on a CUDA device, else the peak RSS increase."""
from __future__ import annotations

import math
import os
import threading

import torch

__all__ = ["PeakMemory"]


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak memory of a block: CUDA max allocated on a CUDA device, else peak RSS increase.

    Use as a context manager; afterwards ``mib`` holds the value and ``kind`` says which
    (``"cuda_max_allocated"`` or ``"rss_delta"``; ``"unavailable"`` and nan if neither works).
    On CPU the RSS is sampled every ``interval`` seconds by a background thread.
    """

    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.mib = math.nan
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "rss_delta"
        self._stop = threading.Event()
        self._peak = 0
        self._base = 0

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            r = _rss_bytes()
            if r is not None and r > self._peak:
                self._peak = r

    def __enter__(self) -> "PeakMemory":
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        base = _rss_bytes()
        if base is None:
            self.kind = "unavailable"
            return self
        self._base = self._peak = base
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.kind == "rss_delta":
            self._stop.set()
            self._thread.join()
            r = _rss_bytes()
            if r is not None:
                self._peak = max(self._peak, r)
            self.mib = (self._peak - self._base) / 2**20
