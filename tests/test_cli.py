from typer.testing import CliRunner

from threeam import __version__
from threeam.cli import app


def test_version_command() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == __version__


def test_format_help_lists_every_data_format() -> None:
    from threeam.data.discovery import DATA_FORMATS

    for command in ("eval", "precompute"):
        result = CliRunner().invoke(app, [command, "--help"], terminal_width=400)
        assert result.exit_code == 0, result.output
        line = " ".join(result.output.split())
        assert "Dataset format: " + ", ".join(DATA_FORMATS) in line, (command, line)
        assert {"ase", "mose"} <= set(DATA_FORMATS)


def test_train_help_lists_every_training_preset() -> None:
    from threeam.commands.train import TRAIN_PRESET_NAMES
    from threeam.train.recipes import train_presets

    assert list(TRAIN_PRESET_NAMES) == train_presets()
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split())
    assert "Training preset: " + ", ".join(train_presets()) in line, line
