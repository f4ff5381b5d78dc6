"""`threeam track VIDEO --out DIR --point x,y | --box x0,y0,x1,y1 | --mask PNG | --prompts JSON`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _numbers(text: str, count: int, what: str, form: str) -> list[float]:
    """``"x,y"``-style text -> ``count`` floats; InputError naming the option otherwise."""
    from threeam.errors import InputError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise InputError(f"{what} must be '{form}' ({count} numbers in video pixels), got {text!r}")
    return values


def build_cli_predictor(model: str, preset: Optional[str], model_config: Optional[Path], checkpoint: Optional[str],
                        random_weights: bool, seed: int, device: str, progress: bool = True):
    """The predictor for `threeam track` / `threeam info`: SAM 2 or 3AM, from presets, configs, weights."""
    import torch

    from threeam.errors import InputError

    if model not in ("sam2", "3am"):
        raise InputError(f"--model must be sam2 or 3am, got {model!r}")
    if checkpoint is None and not random_weights:
        raise InputError("no weights: pass --checkpoint (a file, folder or hub id) or --random-weights for a smoke test")
    sam2_config = None
    if model_config is not None:
        from threeam.models.sam2.config import load_sam2_config_file

        sam2_config = load_sam2_config_file(model_config)
    torch.manual_seed(seed)
    if model == "sam2":
        from threeam.predictor.video_predictor import VideoPredictor

        return VideoPredictor.from_pretrained(sam2_config or preset or "sam2.1_hiera_l",
                                              checkpoint=None if random_weights else checkpoint,
                                              device=device, progress=progress)
    from threeam.models.sam2.config import VideoPredictorConfig
    from threeam.models.three_am import ThreeAM, get_threeam_config, threeam_presets
    from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor

    if random_weights:
        if sam2_config is not None:
            import dataclasses

            config = dataclasses.replace(get_threeam_config("3am_tiny"), sam2=sam2_config)
        else:
            config = get_threeam_config(preset or "3am_hiera_l")
        net = ThreeAM(config)  # SAM 2 is built first from the same seed as --model sam2
    else:
        from threeam.models.three_am_weights import load_threeam

        if preset and preset not in threeam_presets():
            raise InputError(f"unknown 3AM preset {preset!r}")
        net = load_threeam(checkpoint)
    return ThreeAMVideoPredictor(net.to(device).eval(), VideoPredictorConfig(), progress=progress)


def register(app: typer.Typer) -> None:
    @app.command()
    def track(
        video: str = typer.Argument(..., help="Frames folder (jpg/png) or a video file (mp4, mov, ...)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (masks/, masks.json, overlay.mp4)."),
        point: List[str] = typer.Option(None, "--point", help="Positive click x,y in video pixels (repeatable)."),
        neg_point: List[str] = typer.Option(None, "--neg-point", help="Negative click x,y (repeatable)."),
        box: Optional[str] = typer.Option(None, "--box", help="Box x0,y0,x1,y1 in video pixels."),
        mask: Optional[Path] = typer.Option(None, "--mask", help="Mask PNG (binary: one object; palette: one per id)."),
        prompts: Optional[Path] = typer.Option(None, "--prompts",
                                               help="JSON list of prompts for several objects (see docs/3am.md)."),
        frame: int = typer.Option(0, "--frame", help="Frame of the --point/--box/--mask prompt."),
        obj_id: Optional[int] = typer.Option(None, "--obj-id", help="Object id of the prompt (default 1)."),
        model: str = typer.Option("sam2", "--model", help="sam2 or 3am."),
        preset: Optional[str] = typer.Option(None, "--preset",
                                             help="SAM 2 preset (sam2.1_hiera_l, ...) or 3AM preset (3am_hiera_l, 3am_tiny)."),
        model_config: Optional[Path] = typer.Option(None, "--model-config", help="SAM 2 config JSON (official tree)."),
        checkpoint: Optional[str] = typer.Option(None, "--checkpoint",
                                                 help="SAM 2 checkpoint (file or hub id) or 3AM checkpoint (folder or hub id)."),
        random_weights: bool = typer.Option(False, "--random-weights", help="Deterministic random weights (smoke test)."),
        seed: int = typer.Option(0, "--seed", help="Seed of --random-weights."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda (bf16 autocast on cuda)."),
        direction: str = typer.Option("both", "--direction", help="forward, backward or both (from the prompt frame)."),
        no_overlay: bool = typer.Option(False, "--no-overlay", help="Do not write overlay.mp4."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Track objects from a click, a box or a mask and write masks (PNG + COCO RLE) and an overlay video."""
        from threeam.errors import ThreeAMError
        from threeam.predictor.track_job import ObjectPrompt, prompts_from_json, prompts_from_mask_png, track_video

        try:
            items: list[ObjectPrompt] = []
            if prompts is not None:
                items += prompts_from_json(prompts)
            if mask is not None:
                items += prompts_from_mask_png(mask, frame=frame, obj_id=obj_id)
            if point or neg_point or box:
                pts = ([_numbers(p, 2, "--point", "x,y") for p in point or []]
                       + [_numbers(p, 2, "--neg-point", "x,y") for p in neg_point or []])
                labels = [1] * len(point or []) + [0] * len(neg_point or [])
                b = None if box is None else _numbers(box, 4, "--box", "x0,y0,x1,y1")
                items.append(ObjectPrompt(obj_id=obj_id or 1, frame=frame, points=pts or None,
                                          labels=labels or None, box=b))
            predictor = build_cli_predictor(model, preset, model_config, checkpoint, random_weights, seed, device,
                                            progress=not quiet)
            result = track_video(predictor, video, items, out, direction=direction, overlay=not no_overlay,
                                 overwrite=overwrite)
        except ThreeAMError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        typer.echo(f"tracked objects {result.obj_ids} on {len(result.frames)} frames; results in {result.out_dir}")
