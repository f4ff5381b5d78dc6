"""`threeam eval --data DATASET --methods sam2,sam2long,dam4sam,3am --out DIR`: the benchmark table."""
from __future__ import annotations

from pathlib import Path

import typer

from threeam.commands import _common as C


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        data: str = typer.Option(..., "--data", help="Dataset path, or synthetic:N for N generated scenes."),
        out: Path = typer.Option(..., "--out", "-o", metavar="DIR",
                                 help="Output folder (results.md/csv/json, per-sequence scores, predictions). "
                                      + C.OUT_HELP),
        methods: str = typer.Option("sam2,sam2long,dam4sam", "--methods",
                                    help="Comma-separated methods: sam2, sam2long, dam4sam, 3am, 3am+sam2long, "
                                         "3am+dam4sam (and any registered)."),
        fmt: str = typer.Option(None, "--format", help=C.format_help()),
        split: str = typer.Option(None, "--split", help="ScanNet++/DAVIS split file name."),
        model_preset: str = typer.Option(None, "--preset", "--model-preset",
                                         help=f"SAM 2 preset of the SAM 2 methods (default {C.DEFAULT_SAM2_PRESET})."),
        model_config: Path = typer.Option(None, "--model-config", metavar="JSON", help=C.MODEL_CONFIG_HELP),
        checkpoint: str = typer.Option(None, "--checkpoint", help="SAM 2 checkpoint (file or hub id)."),
        three_am_checkpoint: str = typer.Option(None, "--3am-checkpoint",
                                               help="3AM checkpoint folder or hub id (methods 3am, 3am+...)."),
        three_am_preset: str = typer.Option(None, "--3am-preset",
                                           help="3AM preset: 3am_tiny_wide or 3am_tiny (shipped weights) or, for --random-weights "
                                                "runs, any 3AM preset."),
        random_weights: bool = typer.Option(False, "--random-weights", help=C.RANDOM_WEIGHTS_HELP),
        seed: int = typer.Option(0, "--seed", help=C.SEED_HELP),
        device: str = typer.Option("cpu", "--device", help=C.DEVICE_HELP),
        max_sequences: int = typer.Option(None, "--max-sequences", min=1, help="Evaluate at most N object tracks."),
        averaging: str = typer.Option("per_track", "--averaging", help="per_track or pooled."),
        worst: int = typer.Option(3, "--worst", min=0, help="Overlay videos of the N worst tracks per method."),
        no_predictions: bool = typer.Option(False, "--no-predictions", help="Do not write predicted masks."),
        min_mask_pixels: int = typer.Option(100, "--min-mask-pixels", min=1, help="Visible = at least this many GT pixels."),
        l_min: int = typer.Option(5, "--l-min", min=0,
                                  help="Selected Subset: visibility segments must be longer than this many frames."),
        min_segments: int = typer.Option(2, "--min-segments", min=1,
                                         help="Selected Subset: at least this many such segments."),
        exclude_cond_frame: bool = typer.Option(False, "--exclude-cond-frame",
                                                help="Leave each track's prompt frame out of its scores."),
        stride: int = typer.Option(1, "--stride", min=1, help="Keep every n-th frame (ScanNet++, Replica)."),
        offload_video: bool = typer.Option(False, "--offload-video",
                                           help="Keep normalised frames on the CPU (long videos on GPU)."),
        synth_preset: str = typer.Option("tiny", "--synth-preset", help="Synthetic preset: tiny, small, default."),
        synth_frames: int = typer.Option(None, "--synth-frames", min=1, help="Frames per synthetic scene."),
        overwrite: bool = typer.Option(False, "--overwrite", help=C.OVERWRITE_HELP),
        quiet: bool = typer.Option(False, "--quiet", help=C.QUIET_HELP),
    ) -> None:
        """Run methods on the same object tracks (paper protocol) and write the paper's table."""
        from threeam.devices import resolve_device
        from threeam.errors import InputError, ThreeAMError
        from threeam.data.discovery import open_scenes
        from threeam.eval import EvalConfig, EvalContext, resolve_methods, run_evaluation
        from threeam.io.atomic import check_output_dir

        try:
            names = resolve_methods(methods)
            if random_weights:
                for option, value in (("--checkpoint", checkpoint), ("--3am-checkpoint", three_am_checkpoint)):
                    if value is not None:
                        C.check_weights(value, True, option)
            dev = str(resolve_device(device))
            check_output_dir(out, overwrite=overwrite)
            if model_config is not None:
                if model_preset is not None:
                    raise InputError("--preset and --model-config exclude each other (the config file is the SAM 2 "
                                     "preset)")
                preset = C.read_model_config(model_config)
            else:
                preset = C.resolve_preset("sam2", model_preset, None)
            if three_am_preset is not None:
                C.resolve_preset("3am", three_am_preset, None)
            config = EvalConfig(averaging=averaging, max_sequences=max_sequences, worst_overlays=worst,
                                save_predictions=not no_predictions, min_mask_pixels=min_mask_pixels, l_min=l_min,
                                min_segments=min_segments, exclude_cond_frame=exclude_cond_frame,
                                offload_video_to_cpu=offload_video,
                                overwrite=overwrite, progress=not quiet)
            extra = {k: v for k, v in (("3am_checkpoint", three_am_checkpoint), ("3am_preset", three_am_preset))
                     if v is not None}
            context = EvalContext(model_preset=preset, checkpoint=checkpoint, device=dev,
                                  random_weights=random_weights, seed=seed, extra=extra)
            scenes = open_scenes(data, fmt, split=split, synth_preset=synth_preset, synth_frames=synth_frames,
                                 seed=seed, device=dev, stride=stride)
            results = run_evaluation(scenes, names, out, context, config)
        except ThreeAMError as e:
            C.fail(e)
        typer.echo((results.out_dir / "results.md").read_text(), nl=False)
        typer.echo(f"results written to {results.out_dir}")
