"""`threeam precompute --data ... --out ...`: the MUSt3R feature cache for 3AM training."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def precompute(
        data: str = typer.Option(..., "--data", help="Dataset folder, or synthetic:N for N generated scenes."),
        out: Path = typer.Option(..., "--out", help="Cache folder (one sub-folder per scene)."),
        fmt: Optional[str] = typer.Option(None, "--format", help="scannetpp, replica, davis or synthetic (guessed)."),
        preset: str = typer.Option("3am_hiera_l", "--preset", help="3AM preset whose MUSt3R and levels to use."),
        must3r_checkpoint: Optional[str] = typer.Option(None, "--must3r-checkpoint",
                                                        help="Official MUSt3R checkpoint (file or hf://...)."),
        random_weights: bool = typer.Option(False, "--random-weights", help="Random MUSt3R weights (smoke test)."),
        chunk: int = typer.Option(64, "--chunk", help="Frames per cache file."),
        seed: int = typer.Option(0, "--seed", help="Seed of synthetic scenes and random weights."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        synth_frames: Optional[int] = typer.Option(None, "--synth-frames", help="Frames per generated scene."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Run MUSt3R once over every scene (streaming, bounded memory) and store the merger's inputs
        (float16, chunked, resumable: complete scenes are skipped)."""
        import torch

        from threeam.errors import InputError, ThreeAMError
        from threeam.eval.runner import open_scenes
        from threeam.models.three_am import ThreeAM
        from threeam.train.geometry_cache import precompute as run

        try:
            if must3r_checkpoint is None and not random_weights:
                raise InputError("no MUSt3R weights: pass --must3r-checkpoint or --random-weights")
            torch.manual_seed(seed)
            model = ThreeAM(preset)
            if must3r_checkpoint is not None:
                from threeam.models.must3r.checkpoint import read_must3r_checkpoint

                ck = read_must3r_checkpoint(must3r_checkpoint)
                model.must3r.encoder.load_state_dict(ck["encoder"])
                model.must3r.decoder.load_state_dict(ck["decoder"])
            model = model.to(device).eval()
            scenes = open_scenes(data, fmt, synth_preset="tiny", synth_frames=synth_frames, seed=seed, device=device)
            done = run(model, scenes, out, chunk_size=chunk, progress=not quiet)
        except ThreeAMError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        typer.echo(f"computed {len(done)} scene(s), skipped the complete ones; cache in {out}")
