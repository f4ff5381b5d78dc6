"""`threeam serve [--model sam2|3am] [--checkpoint ...] [--host 127.0.0.1] [--port N] [--root DIR]`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from threeam.commands import _common as C
from threeam.serve.config import ServeConfig

_DEFAULTS = ServeConfig(root=Path("."))  # the option defaults are the config's (defined once, there)


def build_serve_predictor(model: str, preset: Optional[str], model_config: Optional[Path], checkpoint: Optional[str],
                          random_weights: bool, seed: int, device: str, corrections_as_cond: bool = True):
    """The predictor behind the web app, through `threeam.predictor.build.build_predictor`.

    With ``random_weights`` and neither ``preset`` nor ``model_config`` it is the bundled tiny model
    (SAM 2: `debug_sam2_config`, 3AM: ``3am_tiny``), so the app runs offline without any download.
    ``corrections_as_cond`` (the app's default, unlike the official predictor's): a click on a frame
    that was already tracked makes it a conditioning frame, so the correction holds when the video
    is propagated again (``add_all_frames_to_correct_as_cond``).

    Returns:
        ``(predictor, description)``.
    """
    from threeam.devices import resolve_device
    from threeam.errors import InputError
    from threeam.predictor.build import build_predictor

    C.check_model(model)
    device = str(resolve_device(device))
    bundled = random_weights and preset is None and model_config is None
    if bundled:  # the tiny models, so that the app runs offline
        from threeam.models.three_am import debug_sam2_config

        spec, preset = (debug_sam2_config(), "debug (tiny)") if model == "sam2" else ("3am_tiny", "3am_tiny")
    else:
        spec = C.resolve_preset(model, preset, model_config)
    shipped = checkpoint is None and not random_weights and C.has_shipped_weights(model, spec)
    if checkpoint is None and not random_weights and not shipped:
        raise InputError("no weights: pass --checkpoint (a file, folder or hub id), a preset with shipped weights "
                         "(--model 3am --preset 3am_tiny, --model sam2 --preset sam2.1_debug_256) or "
                         "--random-weights (the bundled tiny model, random weights: for trying the app out)")
    default = C.DEFAULT_SAM2_PRESET if model == "sam2" else C.DEFAULT_3AM_PRESET
    label = f"{model} {preset or (model_config.name if model_config else default)}"
    predictor = build_predictor(model, preset=spec, checkpoint=None if random_weights else checkpoint,
                                device=device, random_weights=random_weights, seed=seed, progress=False,
                                add_all_frames_to_correct_as_cond=corrections_as_cond)
    if random_weights:
        label += ", random weights"
    elif shipped:
        label += ", shipped weights"
    return predictor, label


def bind_socket(host: str, port: int):
    """A listening TCP socket on ``host:port`` (port 0: a free port)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        model: str = typer.Option(C.DEFAULT_MODEL, "--model", help=C.MODEL_HELP),
        checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help=C.CHECKPOINT_HELP),
        preset: Optional[str] = typer.Option(None, "--preset", help=C.PRESET_HELP),
        model_config: Optional[Path] = typer.Option(None, "--model-config", metavar="JSON", help=C.MODEL_CONFIG_HELP),
        random_weights: bool = typer.Option(False, "--random-weights",
                                            help="Random weights; without --preset/--model-config the bundled tiny model."),
        seed: int = typer.Option(0, "--seed", help=C.SEED_HELP),
        device: str = typer.Option("cpu", "--device", help=C.DEVICE_HELP + " bf16 autocast on cuda."),
        host: str = typer.Option(_DEFAULTS.host, "--host", help="Address to listen on (default: this machine only; "
                                 "0.0.0.0 / ::: every interface, this machine's own names accepted as Host)."),
        port: int = typer.Option(_DEFAULTS.port, "--port", help="Port (0: any free port)."),
        root: Path = typer.Option(Path("."), "--root", help="The only folder whose videos can be opened by path."),
        max_upload_mb: float = typer.Option(_DEFAULTS.max_upload_mb, "--max-upload-mb", help="Largest upload (MiB)."),
        max_upload_files: int = typer.Option(_DEFAULTS.max_upload_files, "--max-upload-files",
                                             help="Most files in one frames-folder upload."),
        max_frames: int = typer.Option(_DEFAULTS.max_frames, "--max-frames", help="Most frames a video may have."),
        max_side: int = typer.Option(_DEFAULTS.max_side, "--max-side",
                                     help="Largest frame width or height (pixels, at most 16384)."),
        max_sessions: int = typer.Option(_DEFAULTS.max_sessions, "--max-sessions", help="Most sessions (tabs) open at once."),
        idle_timeout: float = typer.Option(_DEFAULTS.idle_timeout_s, "--idle-timeout",
                                           help="Close a session after this many seconds without use (0: never)."),
        sweep_interval: float = typer.Option(_DEFAULTS.sweep_interval_s, "--sweep-interval",
                                             help="Seconds between looks for idle sessions."),
        jpeg_quality: int = typer.Option(_DEFAULTS.jpeg_quality, "--jpeg-quality",
                                         help="JPEG quality (1..95) of the frames sent to the page."),
        offload: bool = typer.Option(False, "--offload", help="Keep frames and memories on the CPU (long videos on a GPU)."),
        allowed_host: List[str] = typer.Option(None, "--allowed-host",
                                               help="Extra Host header name to accept (repeatable), e.g. a LAN name."),
        corrections_as_cond: bool = typer.Option(True, "--corrections-as-cond/--official-corrections",
                                                 help="A corrected frame becomes a conditioning frame (kept when "
                                                      "propagating again); --official-corrections keeps SAM 2's default."),
        threads: Optional[int] = typer.Option(None, "--threads",
                                              help="CPU threads for the model (torch.set_num_threads); default: torch's."),
        log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    ) -> None:
        """Start the click-to-track web app and print its URL."""
        from threeam.errors import ThreeAMError

        try:
            import fastapi  # noqa: F401
            import uvicorn
        except ImportError:
            C.fail("threeam serve needs the 'serve' extra: pip install 'threeam[serve]'")
        from threeam.serve.app import create_app

        try:
            if threads is not None:
                if threads < 1:
                    raise ThreeAMError(f"--threads must be >= 1, got {threads}")
                import torch

                torch.set_num_threads(threads)
            if not root.is_dir():
                raise ThreeAMError(f"--root {root} is not a folder")
            config = ServeConfig(root=root.resolve(), host=host, port=port, max_upload_mb=max_upload_mb,
                                 max_upload_files=max_upload_files, max_frames=max_frames, max_side=max_side,
                                 max_sessions=max_sessions, idle_timeout_s=idle_timeout,
                                 sweep_interval_s=sweep_interval, jpeg_quality=jpeg_quality,
                                 offload_video_to_cpu=offload, offload_state_to_cpu=offload,
                                 allowed_hosts=tuple(allowed_host or ()))
            predictor, label = build_serve_predictor(model, preset, model_config, checkpoint, random_weights, seed,
                                                     device, corrections_as_cond)
            asgi = create_app(predictor, config, model_name=label)
        except ThreeAMError as e:
            C.fail(e)
        try:
            sock = bind_socket(host, port)
        except OSError as e:
            C.fail(f"cannot listen on {host}:{port}: {e}")
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"warning: listening on {host}: anyone who can reach this machine can open the videos "
                       f"under {config.root}", err=True)
        typer.echo(f"threeam serve: {label}; videos under {config.root}")
        typer.echo(f"open http://{shown}:{bound}/", )
        server = uvicorn.Server(uvicorn.Config(asgi, log_level=log_level, ws="websockets-sansio"
                                               if _has_sansio() else "auto", lifespan="on"))
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()


def _has_sansio() -> bool:
    try:
        import websockets  # noqa: F401
        from uvicorn.protocols.websockets import websockets_sansio_impl  # noqa: F401
        return True
    except ImportError:
        return False
