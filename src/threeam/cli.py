"""The `threeam` command line. Each sub-command lives in its own module under `threeam.commands`
and registers itself on `app` there; this module only assembles them.

Every bad input ends the same way: exit status 2 and one line ``error: ...`` on stderr, naming the
value and what is allowed (usage errors of the option parser included, which click would print
as a usage block). Help is plain text (no ``<bool>`` type labels on flags)."""
from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import typer
from typer.core import TyperGroup

# click's exception classes, wherever this typer takes click from (a vendored copy in typer >= 0.2x)
_exc = importlib.import_module(typer.BadParameter.__module__)
_NoArgsIsHelpError = getattr(_exc, "NoArgsIsHelpError", None) or type("_Never", (Exception,), {})
_Abort = getattr(_exc, "Abort", typer.Abort)


class _OneLineErrors(TyperGroup):
    """Runs the command line with click's standalone handling replaced by one-line errors."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NoArgsIsHelpError as e:
            typer.echo(e.ctx.get_help() if e.ctx is not None else e.format_message())
            sys.exit(2)
        except _exc.UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            typer.echo(f"error: {_one_line(e.format_message())}{where}", err=True)
            sys.exit(2)
        except _exc.ClickException as e:
            typer.echo(f"error: {_one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except _Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None, cls=_OneLineErrors,
                  pretty_exceptions_enable=False,
                  help="3AM: geometry-consistent video object segmentation.")


@app.callback()
def _root() -> None:
    """3AM: geometry-consistent video object segmentation (SAM 2.1 + MUSt3R)."""


def _register_commands() -> None:
    from threeam import commands

    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        if mod.startswith("_"):
            continue
        module = importlib.import_module(f"threeam.commands.{mod}")
        module.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
