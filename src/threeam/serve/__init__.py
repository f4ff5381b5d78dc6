"""`threeam serve`: a local click-to-track web app (FastAPI + uvicorn, plain HTML/JS, no build step).

`create_app(predictor, ServeConfig(root=...))` gives the ASGI app; `threeam.commands.serve` runs it.
See docs/serve.md.
"""
from __future__ import annotations

from threeam.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(*args, **kwargs):
    """See `threeam.serve.app.create_app` (imported lazily: FastAPI is an optional extra)."""
    from threeam.serve.app import create_app as _create

    return _create(*args, **kwargs)
