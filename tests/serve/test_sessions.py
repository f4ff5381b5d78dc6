"""Sessions on one model: two at once do not interfere, and memory returns after they close
(the real tiny SAM 2 with random weights; results are compared with themselves, not with truth)."""
from __future__ import annotations

import asyncio
import gc

import numpy as np

from threeam.serve.config import ServeConfig
from threeam.serve.sessions import SessionManager


async def _drain(queue, log=None, tag=None):
    events = []
    while (e := await queue.get()) is not None:
        events.append(e)
        if log is not None and e["type"] == "frame":
            log.append(tag)
    return events


def test_two_sessions_on_two_videos_at_once_do_not_interfere(predictor, served):
    root, _ = served

    async def run():
        m = SessionManager(predictor, ServeConfig(root=root))
        try:
            # session A alone: the reference
            a = await m.open(root / "square")
            await m.add_prompt(a, 0, 1, [[20, 30]], [1], None, None)
            await _drain(m.start_propagation(a, "forward"))
            ref = {t: x.copy() for t, x in a.id_maps.items()}
            await m.close(a.id)
            # A again, with B on another video prompted and propagating at the same time
            a = await m.open(root / "square")
            b = await m.open(root / "disc")
            assert a.state is not b.state
            await m.add_prompt(b, 2, 1, [[48, 24]], [1], [30, 10, 70, 40], None)
            await m.add_prompt(a, 0, 1, [[20, 30]], [1], None, None)
            order: list[str] = []
            ea, eb = await asyncio.gather(_drain(m.start_propagation(a, "forward"), order, "a"),
                                          _drain(m.start_propagation(b, "both"), order, "b"))
            assert ea[-1]["type"] == eb[-1]["type"] == "end"
            assert sorted(a.id_maps) == sorted(ref) and sorted(b.id_maps) == list(range(b.video.num_frames))
            for t in ref:  # A's masks are exactly those of A alone
                assert np.array_equal(a.id_maps[t], ref[t]), t
            # the two propagations took turns on the model thread (neither waited for the other to end)
            first_b = order.index("b")
            assert "a" in order[first_b:], order
            assert b.id_maps[0].shape == (b.video.height, b.video.width)
        finally:
            await m.close_all()

    asyncio.run(run())


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_returns_after_sessions_close(predictor, served):
    """Open, use and close 5 sessions; the process RSS must come back near its baseline
    (a generous leak check: the numbers are printed; see benchmarks/bench_serve_sessions.py)."""
    root, _ = served

    async def cycle(m):
        s = await m.open(root / "square")
        await m.add_prompt(s, 0, 1, [[20, 30]], [1], None, None)
        await _drain(m.start_propagation(s, "forward", max_frames=3))
        await m.export(s, ["png"])
        await m.close(s.id)

    async def run():
        m = SessionManager(predictor, ServeConfig(root=root))
        try:
            await cycle(m)  # warm-up: lazily built caches and allocator pools
            gc.collect()
            base = _rss_mib()
            for _ in range(5):
                await cycle(m)
            gc.collect()
            after = _rss_mib()
            print(f"RSS baseline {base:.1f} MiB, after 5 sessions {after:.1f} MiB ({after - base:+.1f} MiB)")
            assert not m.sessions and not any(m.workdir.iterdir())
            assert after - base < 200, (base, after)
        finally:
            await m.close_all()

    asyncio.run(run())
