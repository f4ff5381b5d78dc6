"""`threeam precompute --data ... --out ...`: the MUSt3R feature cache for 3AM training."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from threeam.commands import _common as C


def register(app: typer.Typer) -> None:
    @app.command()
    def precompute(
        data: str = typer.Option(..., "--data", help="Dataset folder, or synthetic:N for N generated scenes."),
        out: Path = typer.Option(..., "--out", "-o", metavar="DIR",
                                 help="Cache folder (one sub-folder per scene, each written whole; complete scenes "
                                      "are kept)."),
        fmt: Optional[str] = typer.Option(None, "--format", help=C.format_help()),
        preset: str = typer.Option("3am_hiera_l", "--preset", help="3AM preset whose MUSt3R and levels to use."),
        must3r_checkpoint: Optional[str] = typer.Option(None, "--must3r-checkpoint",
                                                        help="Official MUSt3R checkpoint (file or hf://...)."),
        random_weights: bool = typer.Option(False, "--random-weights", help=C.RANDOM_WEIGHTS_HELP),
        chunk: int = typer.Option(64, "--chunk", min=1, help="Frames per cache file."),
        seed: int = typer.Option(0, "--seed", help=C.SEED_HELP),
        device: str = typer.Option("cpu", "--device", help=C.DEVICE_HELP),
        synth_frames: Optional[int] = typer.Option(None, "--synth-frames", min=1, help="Frames per generated scene."),
        quiet: bool = typer.Option(False, "--quiet", help=C.QUIET_HELP),
    ) -> None:
        """Run MUSt3R once over every scene (streaming, bounded memory) and store the merger's inputs
        (float16, chunked, resumable: complete scenes are skipped)."""
        import torch

        from threeam.devices import resolve_device
        from threeam.errors import ThreeAMError
        from threeam.data.discovery import open_scenes
        from threeam.io.atomic import check_output_root
        from threeam.models.three_am import ThreeAM
        from threeam.train.geometry_cache import precompute as run

        try:
            C.check_weights(must3r_checkpoint, random_weights, "--must3r-checkpoint")
            dev = resolve_device(device)
            check_output_root(out)
            C.resolve_preset("3am", preset, None)
            scenes = open_scenes(data, fmt, synth_preset="tiny", synth_frames=synth_frames, seed=seed, device=str(dev))
            torch.manual_seed(seed)
            model = ThreeAM(preset)
            if must3r_checkpoint is not None:
                from threeam.models.must3r.checkpoint import check_state_dict, read_must3r_checkpoint

                ck = read_must3r_checkpoint(must3r_checkpoint)
                for part in ("encoder", "decoder"):  # a mismatch is one CheckpointError, not a torch trace
                    module = getattr(model.must3r, part)
                    check_state_dict(module, ck[part], f"MUSt3R checkpoint {must3r_checkpoint} [{part}]")
                    module.load_state_dict(ck[part])
            model = model.to(dev).eval()
            done = run(model, scenes, out, chunk_size=chunk, progress=not quiet)
        except ThreeAMError as e:
            C.fail(e)
        typer.echo(f"computed {len(done)} scene(s), skipped the complete ones; cache in {out}")
