"""`threeam synth OUT --scenes N`: write synthetic wide-baseline scenes in the ScanNet++ layout."""
from __future__ import annotations

from pathlib import Path

import typer


def _parse_size(size: str) -> tuple[int, int]:
    from threeam.errors import InputError

    try:
        h, w = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like HxW (e.g. 256x256), got {size!r}") from None
    return h, w


def register(app: typer.Typer) -> None:
    @app.command()
    def synth(
        out: Path = typer.Argument(..., help="Output dataset root (scenes go to OUT/data/<scene_id>)."),
        scenes: int = typer.Option(1, "--scenes", "-n", min=1, help="Number of scenes."),
        frames: int = typer.Option(None, "--frames", "-f", min=1, help="Frames per scene (preset default: 100)."),
        size: str = typer.Option(None, "--size", help="Frame size HxW (preset default: 256x256)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the first scene; scene k uses seed + k."),
        preset: str = typer.Option("default", "--preset", help="Synthetic preset: default, small, tiny."),
        trajectory: str = typer.Option(None, "--trajectory", help="orbit, walk, turn or mixed."),
        device: str = typer.Option("cpu", "--device", help="Torch device for ray casting: cpu, cuda, cuda:N or auto."),
        dslr_every: int = typer.Option(0, "--dslr-every", min=0,
                                       help="Also write every n-th frame as an undistorted DSLR image."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace scene folders that already exist (only ones threeam wrote)."),
        layout: str = typer.Option("scannetpp", "--layout",
                                   help="scannetpp, or scannet (dense mesh, superpoints, GT per vertex; "
                                        "scans/scene9SSS_00, for threeam lift3d)."),
    ) -> None:
        """Generate synthetic scenes (RGB, depth, poses, instance-labelled mesh) readable by the ScanNet++ reader."""
        import json
        import shutil
        import time

        from threeam.data.scannetpp import write_scannetpp_scene
        from threeam.data.synth import generate_scene, get_synth_config
        from threeam.devices import resolve_device
        from threeam.errors import InputError, ThreeAMError
        from threeam.io.atomic import atomic_output_dir, atomic_write_text, check_output_dir, check_output_root

        try:
            check_output_root(out, option="OUT")
            overrides = {"device": str(resolve_device(device))}
            if frames is not None:
                overrides["n_frames"] = frames
            if size is not None:
                overrides["height"], overrides["width"] = _parse_size(size)
            if trajectory is not None:
                overrides["trajectory"] = trajectory
            cfg = get_synth_config(preset, **overrides)
            if layout not in ("scannetpp", "scannet"):
                raise InputError(f"--layout must be scannetpp or scannet, got {layout!r}")
            if layout == "scannet":
                from threeam.data.synth_scannet import synth_scene_id

                ids = [synth_scene_id(seed + k) for k in range(scenes)]
                existing = [i for i in ids if (out / "scans" / i).exists()]
                if existing and not overwrite:
                    raise InputError(f"{len(existing)} scene folder(s) already exist under {out / 'scans'} "
                                     f"(e.g. {existing[0]}); pass --overwrite to replace them")
                for sid in existing:  # only scene folders threeam wrote, before any scene is generated
                    check_output_dir(out / "scans" / sid, overwrite=True, option="scene")
            ids = [f"synth_{seed + k:05d}" for k in range(scenes)] if layout == "scannetpp" else ids
            existing = [i for i in ids if (out / "data" / i).exists()] if layout == "scannetpp" else []
            if existing and not overwrite:
                raise InputError(f"{len(existing)} scene folder(s) already exist under {out / 'data'} "
                                 f"(e.g. {existing[0]}); pass --overwrite to replace them")
            for sid in existing:  # only scene folders threeam wrote, before any scene is generated
                check_output_dir(out / "data" / sid, overwrite=True, option="scene")
        except ThreeAMError as e:
            typer.echo(f"error: {' '.join(str(e).split())}", err=True)
            raise typer.Exit(2)
        if layout == "scannet":
            from threeam.data.scannet.splits import write_split
            from threeam.data.synth_scannet import write_synth_scannet

            for k, sid in enumerate(ids):
                t0 = time.perf_counter()
                scene = generate_scene(cfg, seed=seed + k, name=sid)
                sdir = out / "scans" / sid
                with atomic_output_dir(sdir, overwrite=overwrite, kind="synth-scene", option="scene") as tmp:
                    # the writer lays out ROOT/scans/<id>: stage it inside the temporary folder, then lift it up
                    staged = write_synth_scannet(scene, tmp / ".stage", sid)
                    for item in staged.iterdir():
                        item.rename(tmp / item.name)
                    table = tmp / ".stage" / "scannetv2-labels.combined.tsv"
                    if table.is_file():  # the label table lives at the dataset root (one rename)
                        table.replace(out / table.name)
                    shutil.rmtree(tmp / ".stage")
                typer.echo(f"{sid}: {len(scene)} frames {cfg.height}x{cfg.width}, {len(scene.meta['objects'])} "
                           f"objects ({time.perf_counter() - t0:.1f} s) -> {sdir}")
            split = out / "splits" / "synth.txt"
            listed = set(split.read_text().split()) if split.is_file() else set()
            write_split(split, sorted(listed | set(ids)))
            return
        for k, sid in enumerate(ids):
            t0 = time.perf_counter()
            scene = generate_scene(cfg, seed=seed + k, name=sid)
            names = {o["id"]: o["shape"] for o in scene.meta["objects"]}
            sdir = out / "data" / sid
            with atomic_output_dir(sdir, overwrite=overwrite, kind="synth-scene", option="scene") as tmp:
                # the writer lays out ROOT/data/<id>: stage it inside the temporary folder, then lift it up
                staged = write_scannetpp_scene(scene, tmp / ".stage", sid, dslr_every=dslr_every, labels=names)
                for item in staged.iterdir():
                    item.rename(tmp / item.name)
                shutil.rmtree(tmp / ".stage")
                meta = {key: v for key, v in scene.meta.items() if key != "primitives"}
                atomic_write_text(tmp / "synth_meta.json", json.dumps(meta, indent=1) + "\n")
            typer.echo(f"{sid}: {len(scene)} frames {cfg.height}x{cfg.width}, {len(scene.meta['objects'])} objects, "
                       f"{scene.meta['trajectory']} trajectory ({time.perf_counter() - t0:.1f} s) -> {sdir}")
        split = out / "splits" / "synth.txt"
        listed = set(split.read_text().split()) if split.is_file() else set()
        atomic_write_text(split, "\n".join(sorted(listed | set(ids))) + "\n")
