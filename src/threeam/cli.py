"""The `threeam` command line. Each sub-command lives in its own module under `threeam.commands`
and registers itself on `app` there; this module only assembles them."""
from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="3AM: geometry-consistent video object segmentation.")


@app.callback()
def _root() -> None:
    """3AM: geometry-consistent video object segmentation (SAM 2.1 + MUSt3R)."""


def _register_commands() -> None:
    from threeam import commands

    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        module = importlib.import_module(f"threeam.commands.{mod}")
        module.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
