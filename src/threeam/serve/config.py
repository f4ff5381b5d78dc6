"""Settings of `threeam serve` (one typed dataclass). Every field is set by a command-line option
(docs/serve.md lists them; ``--offload`` sets both offload fields, ``--allowed-host`` fills
``allowed_hosts``), and each option's default is the field's default, defined here only."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServeConfig:
    """What the server allows and how long it keeps things.

    root: the only folder whose videos (files and frames folders) can be opened by path.
    host, port: where the server listens (default loopback only).
    max_upload_mb: the largest upload body (one video file or all frames of a folder together).
    max_frames: the most frames a video may have. Frames are streamed (the page's frames and the
        predictor's inputs are decoded on demand, with bounded caches), so memory does not grow
        with the frames; what grows is the predictor's memory bank and one compressed id map per
        frame with a result (see docs/serve.md, Sessions).
    max_side: the largest frame width or height in pixels (at most 16384).
    max_upload_files: the most files in one frames-folder upload.
    idle_timeout_s: a session with no request for this long is closed (its tab may still be open;
        the page then says the session expired); 0: never.
    sweep_interval_s: how often idle sessions are looked for (and how often the tab's WebSocket
        checks that its session still exists).
    max_sessions: the most sessions open at once (a new one beyond that gets 503).
    jpeg_quality: quality (1..95) of the frames sent to the page.
    offload_video_to_cpu, offload_state_to_cpu: passed to ``init_state`` (useful on a GPU for long
        videos); one option, ``--offload``, sets both.
    allowed_hosts: extra Host header values accepted besides the bound host, localhost, 127.0.0.1 and
        ::1 (a guard against DNS rebinding); with a wildcard bind (``0.0.0.0``, ``::``) the bound
        host is replaced by this machine's own names (`threeam.serve.security.allowed_host_names`).
    """

    root: Path = field(default_factory=Path.cwd)
    host: str = "127.0.0.1"
    port: int = 7263
    max_upload_mb: float = 200.0
    max_frames: int = 1000
    max_side: int = 4096
    max_upload_files: int = 2000
    idle_timeout_s: float = 1800.0
    sweep_interval_s: float = 5.0
    max_sessions: int = 8
    jpeg_quality: int = 90
    offload_video_to_cpu: bool = False
    offload_state_to_cpu: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
