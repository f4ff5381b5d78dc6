"""What a benchmark run produces: one :class:`TrackRecord` per method and object track, a
:class:`MethodResult` per method, and :class:`EvalResults` for the run."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from threeam.eval.metrics import PaperScores, TrackScores, aggregate

__all__ = ["TrackRecord", "MethodResult", "EvalResults"]


@dataclass(frozen=True)
class TrackRecord:
    """One method's scores on one object track.

    Attributes:
        method, scene, object_id: which track.
        selected: the track is in the Selected Subset (`threeam.data.eval_sequences`).
        cond_frame: the frame the method was prompted on.
        scores: the per-track scores (`threeam.eval.metrics.TrackScores`).
    """

    method: str
    scene: str
    object_id: int
    selected: bool
    cond_frame: int
    scores: TrackScores


@dataclass
class MethodResult:
    """One method's results: its track records, the two subsets' paper scores, speed and memory.

    Attributes:
        name: method name.
        records: one :class:`TrackRecord` per object track, in evaluation order.
        seconds, frames: tracking time and frames tracked (FPS = frames / seconds).
        mem_mib, mem_kind: peak memory over the method's runs and how it was measured
            (`threeam.eval.memory.PeakMemory`); nan / "" before any run.
        whole, subset: Whole Set and Selected Subset scores (set by :meth:`finish`).
    """

    name: str
    records: list[TrackRecord] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0
    mem_mib: float = math.nan
    mem_kind: str = ""
    whole: PaperScores | None = None
    subset: PaperScores | None = None

    @property
    def tracks(self) -> list[TrackScores]:
        """The per-track scores, in record order."""
        return [r.scores for r in self.records]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.nan

    def add_run(self, seconds: float, frames: int, mem_mib: float, mem_kind: str) -> None:
        """Count one tracking run: time, frames, and its peak memory (the kind of the first run is kept)."""
        self.seconds += seconds
        self.frames += frames
        if not self.mem_kind:
            self.mem_kind = mem_kind
        if not math.isnan(mem_mib):
            self.mem_mib = mem_mib if math.isnan(self.mem_mib) else max(self.mem_mib, mem_mib)

    def finish(self, averaging: str) -> None:
        """Aggregate the records into :attr:`whole` and :attr:`subset`."""
        self.whole = aggregate(self.tracks, averaging)
        self.subset = aggregate([r.scores for r in self.records if r.selected], averaging)


@dataclass
class EvalResults:
    """A finished run: the methods' results (in the order run), the output folder, the averaging."""

    methods: dict[str, MethodResult]
    out_dir: Path
    averaging: str
