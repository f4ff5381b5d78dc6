"""Sub-commands of the `threeam` CLI. Each module defines `register(app: typer.Typer) -> None`
that adds its command(s); heavy imports happen inside the command functions so `threeam --help`
stays fast."""
