from typer.testing import CliRunner

from threeam import __version__
from threeam.cli import app


def test_version_command() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == __version__
