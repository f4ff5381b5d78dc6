"""`threeam experiment toy-ablation --out DIR`: reproducible experiments (see docs/evidence.md)."""
from __future__ import annotations

from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def experiment(
        name: str = typer.Argument(..., help="Experiment: toy-ablation."),
        args: Optional[List[str]] = typer.Argument(None, help="Its options, e.g. --out DIR --size full --stages ..."),
    ) -> None:
        """Run or resume an experiment (toy-ablation: the paper's Table 6 on generated look-alike scenes)."""
        from threeam.errors import ThreeAMError

        if name != "toy-ablation":
            typer.echo(f"error: unknown experiment {name!r}; valid: toy-ablation", err=True)
            raise typer.Exit(2)
        from threeam.experiments.toy_ablation import main

        try:
            code = main(list(args or []))
        except ThreeAMError as e:
            typer.echo(f"error: {' '.join(str(e).split())}", err=True)
            raise typer.Exit(2)
        raise typer.Exit(code)
