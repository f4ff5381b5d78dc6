"""`threeam train --preset NAME [key.sub=value ...] [--out DIR] [--resume]`: run the training engine.

Multi-GPU: ``torchrun --nproc_per_node N -m threeam.cli train --preset ...`` (torchrun needs a Python
file or ``-m``; the ``threeam`` launcher may be a shell shim).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


TRAIN_PRESET_NAMES = ("paper-scannetpp-ase-mose", "tiny-synthetic", "toy-engine", "sam2-pretrain-synthetic",
                      "must3r-pretrain-synthetic", "toy-ablation-3am", "toy-ablation-sam2")
"""`threeam.train.recipes.train_presets()`, written out so that ``--help`` does not import torch
(a test keeps the two equal)."""
PRESET_HELP = (f"Training preset: {', '.join(TRAIN_PRESET_NAMES)} "
               "(optional with --resume: the checkpoint's config is used).")


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        overrides: Optional[List[str]] = typer.Argument(
            None, help="Config overrides key.sub=value, e.g. run.max_steps=100 optim.groups.merger.lr=2e-5."),
        preset: Optional[str] = typer.Option(
            None, "--preset", "-p", help=PRESET_HELP),
        out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR",
                                           help="Run folder (checkpoints/, tb/, config.json); default runs/PRESET. "
                                                "Ctrl-C or SIGTERM finishes the step, writes a checkpoint and stops."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
        print_config: bool = typer.Option(False, "--print-config",
                                          help="Print the resolved config as JSON and exit."),
        list_keys: bool = typer.Option(False, "--list-keys", help="List the override keys of the config and exit."),
    ) -> None:
        """Train with a named preset (see docs/training.md)."""
        import logging

        from threeam.errors import CheckpointError, InputError
        from threeam.train import checkpointing
        from threeam.train.config import apply_overrides, config_from_dict, config_to_json, override_keys
        from threeam.train.recipes import get_train_config, train_presets

        def fail(msg: str) -> None:
            typer.echo(f"error: {' '.join(str(msg).split())}", err=True)
            raise typer.Exit(2)

        try:
            if resume:
                if out is None:
                    fail("--resume needs --out (the run folder to continue)")
                latest = checkpointing.find_latest(out)
                if latest is None:
                    fail(f"--resume: no checkpoint under {checkpointing.checkpoint_dir(out)}")
                cfg = config_from_dict(checkpointing.read_state(latest)["config"])
                if preset is not None and preset != cfg.name:
                    fail(f"--preset {preset!r} differs from the checkpoint's preset {cfg.name!r}")
            else:
                if preset is None:
                    fail(f"--preset is required; valid presets: {', '.join(train_presets())}")
                cfg = get_train_config(preset)
            cfg = apply_overrides(cfg, overrides or [])
            if list_keys:
                typer.echo("\n".join(override_keys(cfg)))
                return
            if print_config:
                typer.echo(config_to_json(cfg))
                return
            run_dir = out if out is not None else Path("runs") / cfg.name
            from threeam.io.atomic import check_output_root

            check_output_root(run_dir)
            if not resume and checkpointing.list_checkpoints(run_dir):
                fail(f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another --out")
        except (InputError, CheckpointError) as e:
            fail(str(e))

        from threeam.train.distributed import cleanup, init_distributed
        from threeam.train.recipes import run_training
        from threeam.train.trainer import TrainingInterrupted

        try:
            ctx = init_distributed(cfg.run.device)
        except InputError as e:
            fail(str(e))
        logging.basicConfig(level=logging.INFO if ctx.is_main else logging.WARNING,
                            format="%(asctime)s %(name)s %(levelname)s: %(message)s")
        try:
            trainer = run_training(cfg, run_dir, resume=resume, ctx=ctx)
        except (InputError, CheckpointError) as e:
            fail(str(e))
        except TrainingInterrupted as e:
            if ctx.is_main:
                typer.echo(f"{e}; continue with: threeam train --out {run_dir} --resume", err=True)
            raise typer.Exit(128 + e.signum)
        finally:
            cleanup(ctx)
        if ctx.is_main:
            last = trainer.history[-1]["loss"] if trainer.history else float("nan")
            typer.echo(f"trained {cfg.name} ({cfg.task}) to step {trainer.step}; last loss {last:.6g}; "
                       f"checkpoint {checkpointing.find_latest(run_dir)}")
