"""`ServeConfig` and `threeam serve` agree: every field is set by an option, and each option's
default is the field's default (defined once, in ServeConfig)."""
from __future__ import annotations

import dataclasses

import pytest
import typer.main
from typer.testing import CliRunner

from threeam.cli import app
from threeam.serve.config import ServeConfig

# field -> option (the fields whose option has another name)
RENAMED = {"idle_timeout_s": "--idle-timeout", "sweep_interval_s": "--sweep-interval",
           "offload_video_to_cpu": "--offload", "offload_state_to_cpu": "--offload", "allowed_hosts": "--allowed-host"}


def _serve_options() -> dict[str, object]:
    command = typer.main.get_command(app).commands["serve"]
    return {opt: p.default for p in command.params for opt in p.opts}


def test_every_field_has_an_option_with_the_fields_default():
    options = _serve_options()
    defaults = ServeConfig()
    for f in dataclasses.fields(ServeConfig):
        opt = RENAMED.get(f.name, "--" + f.name.replace("_", "-"))
        assert opt in options, f"ServeConfig.{f.name} has no option {opt}"
        if f.name in ("root", "allowed_hosts"):
            continue
        assert options[opt] == getattr(defaults, f.name), f.name
    assert ServeConfig().idle_timeout_s == 1800.0  # the documented default


@pytest.mark.parametrize("args, words", [
    (["--jpeg-quality", "0"], "--jpeg-quality must be 1..95"),
    (["--sweep-interval", "0"], "--sweep-interval must be > 0"),
    (["--max-upload-files", "0"], "--max-upload-files must be >= 1"),
    (["--max-side", "20000"], "--max-side must be 1..16384"),
])
def test_bad_values_are_one_line(served, args, words):
    root, _ = served
    res = CliRunner().invoke(app, ["serve", "--random-weights", "--root", str(root), *args])
    assert res.exit_code == 2, res.output
    assert words in res.output
