"""`threeam lift3d DATA --out DIR`: 3D instance segmentation by lifting 2D masks (docs/lift3d.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from threeam.commands import _common as C


def _overrides(items: List[str]) -> dict:
    """``key=value`` strings -> dict (values parsed as JSON when they can be, else kept as text)."""
    from threeam.errors import InputError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    if "confidence_terms" in out and isinstance(out["confidence_terms"], list):
        out["confidence_terms"] = tuple(out["confidence_terms"])
    return out


def _parse_size(text: str, what: str) -> tuple[int, int]:
    from threeam.errors import InputError

    try:
        h, w = (int(x) for x in text.lower().split("x"))
        if h < 8 or w < 8:
            raise ValueError
    except ValueError:
        raise InputError(f"{what} must look like HxW with both >= 8 (e.g. 96x128), got {text!r}") from None
    return h, w


class _Models:
    """Builds the predictor and MUSt3R lazily, once (a finished run builds nothing). `spec` is the
    checked ``preset`` of `build_predictor` (`_common.resolve_preset`)."""

    def __init__(self, model, spec, checkpoint, random_weights, seed, device, must3r_checkpoint):
        self.args = dict(model=model, preset=spec, checkpoint=checkpoint, random_weights=random_weights, seed=seed,
                         device=device)
        self.must3r_checkpoint = must3r_checkpoint
        self._predictor = None
        self._must3r = None

    def predictor(self):
        if self._predictor is None:
            from threeam.predictor.build import build_predictor

            self._predictor = build_predictor(**self.args, progress=False)
        return self._predictor

    def must3r(self):
        if self._must3r is None:
            from threeam.lift3d.must3r_geometry import build_must3r_model, must3r_from_predictor

            if self.args["model"] == "3am" and self.must3r_checkpoint is None:
                self._must3r = must3r_from_predictor(self.predictor())
            else:
                self._must3r = build_must3r_model(self.must3r_checkpoint, self.args["random_weights"],
                                                  self.args["seed"], self.args["device"])
        return self._must3r


def _jobs(data: str, lift, scenes, split, label_space: str, use_depth: bool, synth_preset: str,
          synth_frames, synth_size, seed: int, device: str, gt_masks: bool = False):
    """SceneJobs for ``synthetic:N`` or a ScanNet root."""
    from threeam.errors import InputError
    from threeam.lift3d.runner import SceneJob
    from threeam.lift3d.scene import from_scannet, from_synthetic

    if data.startswith("synthetic:"):
        try:
            n = int(data.split(":", 1)[1])
            if n < 1:
                raise ValueError
        except ValueError:
            raise InputError(f"synthetic data must be synthetic:N with N >= 1, got {data!r}") from None
        from threeam.data.synth import generate_scene, get_synth_config

        overrides = {"device": device}
        if synth_frames is not None:
            overrides["n_frames"] = synth_frames
        if synth_size is not None:
            overrides["height"], overrides["width"] = _parse_size(synth_size, "--synth-size")
        cfg = get_synth_config(synth_preset, **overrides)
        names = [f"synth_{seed + k:05d}" for k in range(n)]
        if scenes:
            unknown = [s for s in scenes if s not in names]
            if unknown:
                raise InputError(f"scene {unknown[0]!r} is not one of the generated scenes {names[0]}..{names[-1]}")
            names = [s for s in names if s in scenes]

        def opener(name: str):
            def open_scene():
                scene = generate_scene(cfg, seed=int(name.split("_")[1]), name=name)
                return from_synthetic(scene, frame_skip=lift.frame_skip, max_frames=lift.max_frames)
            return open_scene
        return [SceneJob(nm, opener(nm)) for nm in names]
    root = Path(data)
    if not root.is_dir():
        raise InputError(f"DATA must be a ScanNet root folder or synthetic:N, got {data!r} (no such folder)")
    from threeam.data.scannet import open_scannet

    scans = open_scannet(root, split_file=split, scenes=scenes or None, frame_stride=lift.frame_skip)

    def opener_scan(scan):
        return lambda: from_scannet(scan, use_depth=use_depth, work_long_side=lift.work_long_side,
                                    label_space=label_space, max_frames=lift.max_frames, gt_masks=gt_masks)
    return [SceneJob(s.name, opener_scan(s)) for s in scans]


def register(app: typer.Typer) -> None:
    @app.command("lift3d")
    def lift3d(
        data: str = typer.Argument(..., help="A ScanNet root (scans/<scene>/...) or synthetic:N generated scenes."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumable: finished scenes are skipped)."),
        scene: List[str] = typer.Option(None, "--scene", help="Only this scene id (repeatable)."),
        split: Optional[Path] = typer.Option(None, "--split", help="ScanNet split file (e.g. scannetv2_val.txt)."),
        model: str = typer.Option(C.DEFAULT_MODEL, "--model",
                                  help="sam2 or 3am: the tracker (and the SAM 2 of the mask generator)."),
        preset: Optional[str] = typer.Option(None, "--preset", help=C.PRESET_HELP),
        model_config: Optional[Path] = typer.Option(None, "--model-config", metavar="JSON", help=C.MODEL_CONFIG_HELP),
        checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help=C.CHECKPOINT_HELP),
        random_weights: bool = typer.Option(False, "--random-weights", help=C.RANDOM_WEIGHTS_HELP),
        seed: int = typer.Option(0, "--seed", help=C.SEED_HELP),
        device: str = typer.Option("cpu", "--device", help=C.DEVICE_HELP),
        depth: str = typer.Option("sensor", "--depth", help="sensor, or must3r (RGB-only: MUSt3R depth and poses)."),
        must3r_checkpoint: Optional[str] = typer.Option(None, "--must3r-checkpoint",
                                                        help="MUSt3R checkpoint for --depth must3r with --model sam2."),
        gt_masks: bool = typer.Option(False, "--gt-masks",
                                      help="GT 2D masks instead of the mask generator and tracker (generated scenes; "
                                           "on ScanNet rendered from the annotated mesh)."),
        lift_preset: Optional[str] = typer.Option(None, "--lift-preset",
                                                  help="paper, fast or synthetic (default: paper; synthetic for synthetic:N)."),
        set_: List[str] = typer.Option(None, "--set", help="Override a lift option, key=value (repeatable)."),
        benchmark: str = typer.Option("esam", "--benchmark", help="AP variant: esam (ScanNet200 class-agnostic), sai3d, ..."),
        views: int = typer.Option(4, "--views", min=0, help="Rendered PNG views per scene (0: none)."),
        view_size: str = typer.Option("480x640", "--view-size", help="Size HxW of the rendered views."),
        no_ply: bool = typer.Option(False, "--no-ply", help="Do not write the instance-coloured PLY."),
        synth_preset: str = typer.Option("tiny", "--synth-preset", help="Generated scenes: tiny, small, default."),
        synth_frames: Optional[int] = typer.Option(None, "--synth-frames", min=1, help="Frames per generated scene."),
        synth_size: Optional[str] = typer.Option(None, "--synth-size", help="Frame size HxW of generated scenes."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace results made with other options."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Lift 2D masks (mask generator + SAM 2 / 3AM tracking) to 3D instances; write the benchmark
        submission, AP tables, an instance-coloured PLY and rendered views per scene."""
        from threeam.errors import InputError, ThreeAMError

        try:
            from threeam.eval.instance_ap import BENCHMARKS
            from threeam.lift3d.config import get_lift_config
            from threeam.lift3d.runner import RunOptions, run_lift3d

            from threeam.devices import resolve_device

            spec = C.resolve_preset(model, preset, model_config)
            device = str(resolve_device(device))
            if depth not in ("sensor", "must3r"):
                raise InputError(f"--depth must be sensor or must3r, got {depth!r}")
            if not gt_masks and checkpoint is None and not random_weights:
                raise InputError("no weights: pass --checkpoint (SAM 2 file/hub id or 3AM folder), "
                                 "--random-weights for a smoke test, or --gt-masks")
            if benchmark not in BENCHMARKS:
                raise InputError(f"--benchmark must be one of {', '.join(BENCHMARKS)}, got {benchmark!r}")
            synthetic = data.startswith("synthetic:")
            lift = get_lift_config(lift_preset or ("synthetic" if synthetic else "paper"), **_overrides(set_))
            vh, vw = _parse_size(view_size, "--view-size")
            options = RunOptions(model="gt" if gt_masks else model, depth=depth, gt_masks=gt_masks,
                                 benchmark=benchmark, views=views, view_size=(vh, vw), ply=not no_ply)
            jobs = _jobs(data, lift, scene, split, BENCHMARKS[benchmark].label_space, depth == "sensor",
                         synth_preset, synth_frames, synth_size, seed, device, gt_masks)
            models = _Models(model, spec, checkpoint, random_weights, seed, device, must3r_checkpoint)

            def make_sources():
                from threeam.lift3d.propagate import GTTracker, PredictorTracker
                from threeam.lift3d.proposals import AMGProposals, GTProposals

                if gt_masks:
                    return GTProposals(), GTTracker()
                predictor = models.predictor()
                return AMGProposals.from_predictor(predictor, **lift.amg), PredictorTracker(predictor)

            geometry = None
            if depth == "must3r":
                from threeam.lift3d.must3r_geometry import must3r_scene

                def geometry(s):
                    net, stream = models.must3r()
                    return must3r_scene(s, net, stream, min_conf=options.must3r_min_conf)

            record = {"model": None if gt_masks else model, "preset": preset,
                      "model_config": None if model_config is None else str(model_config),
                      "checkpoint": checkpoint, "random_weights": random_weights, "seed": seed,
                      "must3r_checkpoint": must3r_checkpoint, "data": data, "synth_preset": synth_preset,
                      "synth_frames": synth_frames, "synth_size": synth_size}
            summary = run_lift3d(jobs, out, lift, options, make_sources, geometry=geometry, model_record=record,
                                 overwrite=overwrite, progress=not quiet)
        except ThreeAMError as e:
            C.fail(e)
        typer.echo((summary.out_dir / "results.md").read_text(), nl=False)
        ran = len(summary.scenes) - len(summary.skipped)
        typer.echo(f"{ran} scene(s) lifted, {len(summary.skipped)} finished earlier; results in {summary.out_dir}")
