"""`threeam track VIDEO --out DIR --point x,y | --box x0,y0,x1,y1 | --mask PNG | --prompts JSON`.

Every input (weights, device, prompts against the video's frames and size, object ids, the output
folder) is checked before a model is built; then the predictor comes from
`threeam.predictor.build.build_predictor`, the one builder."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from threeam.commands import _common as C


def _numbers(text: str, count: int, what: str, form: str) -> list[float]:
    """``"x,y"``-style text -> ``count`` finite floats; InputError naming the option otherwise."""
    import math

    from threeam.errors import InputError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise InputError(f"{what} must be '{form}' ({count} finite numbers in video pixels), got {text!r}")
    return values


def cli_prompts(point, neg_point, box, mask, prompts, frame: int, obj_id: Optional[int]) -> list:
    """The `ObjectPrompt` list of the track options (``--obj-id`` defaults to 1; 0 stays 0 and is refused)."""
    from threeam.predictor.track_job import ObjectPrompt, prompts_from_json, prompts_from_mask_png

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
        items.append(ObjectPrompt(obj_id=1 if obj_id is None else obj_id, frame=frame, points=pts or None,
                                  labels=labels or None, box=b))
    return items


def register(app: typer.Typer) -> None:
    @app.command()
    def track(
        video: str = typer.Argument(..., metavar="VIDEO", help="Frames folder (jpg/png) or a video file (mp4, mov, ...)."),
        out: Path = typer.Option(..., "--out", "-o", metavar="DIR",
                                 help="Output folder (masks/, masks.json, overlay.mp4). " + C.OUT_HELP),
        point: List[str] = typer.Option(None, "--point", metavar="X,Y",
                                        help="Positive click in video pixels (repeatable)."),
        neg_point: List[str] = typer.Option(None, "--neg-point", metavar="X,Y", help="Negative click (repeatable)."),
        box: Optional[str] = typer.Option(None, "--box", metavar="X0,Y0,X1,Y1", help="Box in video pixels."),
        mask: Optional[Path] = typer.Option(None, "--mask", metavar="PNG",
                                            help="Mask PNG (binary: one object; palette: one per id)."),
        prompts: Optional[Path] = typer.Option(None, "--prompts", metavar="JSON",
                                               help="JSON list of prompts for several objects (see docs/3am.md)."),
        frame: int = typer.Option(0, "--frame", help="Frame of the --point/--box/--mask prompt."),
        obj_id: Optional[int] = typer.Option(None, "--obj-id", help="Object id of the prompt, 1..254 (default 1)."),
        model: str = typer.Option(C.DEFAULT_MODEL, "--model", help=C.MODEL_HELP),
        preset: Optional[str] = typer.Option(None, "--preset", help=C.PRESET_HELP),
        model_config: Optional[Path] = typer.Option(None, "--model-config", metavar="JSON", help=C.MODEL_CONFIG_HELP),
        checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help=C.CHECKPOINT_HELP),
        random_weights: bool = typer.Option(False, "--random-weights", help=C.RANDOM_WEIGHTS_HELP),
        seed: int = typer.Option(0, "--seed", help=C.SEED_HELP),
        device: str = typer.Option("cpu", "--device", help=C.DEVICE_HELP + " bf16 autocast on cuda."),
        direction: str = typer.Option("both", "--direction", help="forward, backward or both (from the prompt frame)."),
        fps: Optional[float] = typer.Option(None, "--fps",
                                            help="Frame rate of overlay.mp4 (default: the source's; 24 for frames "
                                                 "folders)."),
        no_overlay: bool = typer.Option(False, "--no-overlay", help="Do not write overlay.mp4."),
        check_frames: bool = typer.Option(False, "--check-frames",
                                          help="Open every file of a frames folder before tracking, so a corrupt "
                                               "frame is reported up front (default: when tracking reaches it)."),
        overwrite: bool = typer.Option(False, "--overwrite", help=C.OVERWRITE_HELP),
        quiet: bool = typer.Option(False, "--quiet", help=C.QUIET_HELP),
    ) -> None:
        """Track objects from a click, a box or a mask and write masks (PNG + COCO RLE) and an overlay video."""
        from threeam.devices import resolve_device
        from threeam.errors import ThreeAMError
        from threeam.predictor.build import build_predictor
        from threeam.predictor.track_job import check_track_inputs, track_video

        def say(msg: str) -> None:
            if not quiet:
                typer.echo(msg, err=True)

        try:
            C.check_model(model)
            spec = C.resolve_preset(model, preset, model_config)
            shipped = checkpoint is None and not random_weights and C.has_shipped_weights(model, spec)
            C.check_weights(checkpoint, random_weights, shipped=shipped)
            dev = resolve_device(device)
            items = cli_prompts(point, neg_point, box, mask, prompts, frame, obj_id)
            check_track_inputs(video, items, out, direction=direction, overwrite=overwrite, fps=fps,
                               check_all_frames=check_frames)
            weights = "random weights" if random_weights else f"shipped weights {spec}" if shipped else checkpoint
            say(f"building {model} ({weights}) on {dev}")
            predictor = build_predictor(model, preset=spec, checkpoint=checkpoint, device=str(dev),
                                        random_weights=random_weights, seed=seed, progress=not quiet)
            result = track_video(predictor, video, items, out, direction=direction, overlay=not no_overlay,
                                 overwrite=overwrite, fps=fps, progress=not quiet, log=say,
                                 check_all_frames=check_frames)
        except ThreeAMError as e:
            C.fail(e)
        typer.echo(f"tracked objects {result.obj_ids} on {len(result.frames)} frames; results in {result.out_dir}")
