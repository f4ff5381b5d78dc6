"""What the commands share: option names, defaults and help texts (so ``track``, ``eval`` and
``info`` spell them alike), the weights rule and the one-line error exit."""
from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

MODEL_HELP = "sam2 or 3am."
DEFAULT_MODEL = "sam2"
DEFAULT_SAM2_PRESET = "sam2.1_hiera_l"
DEFAULT_3AM_PRESET = "3am_hiera_l"
PRESET_HELP = (f"Model preset: SAM 2 (sam2.1_hiera_t/s/b+/l, default {DEFAULT_SAM2_PRESET}; sam2.1_debug_256, "
               f"shipped tiny weights) or, with --model 3am, 3AM ({DEFAULT_3AM_PRESET}; 3am_tiny_wide, 3am_tiny: shipped tiny weights).")
MODEL_CONFIG_HELP = "SAM 2 model config as an official-style JSON (replaces the SAM 2 preset)."
CHECKPOINT_HELP = "SAM 2 checkpoint (file or hub id) or, with --model 3am, a 3AM checkpoint (folder or hub id)."
RANDOM_WEIGHTS_HELP = "Deterministic random weights from --seed (smoke tests; results are meaningless)."
SEED_HELP = "Seed of --random-weights (and of generated data)."
DEVICE_HELP = "cpu, cuda, cuda:N or auto."
OUT_HELP = "Written as a new folder beside it and swapped in at the end; must be new or empty unless --overwrite."
OVERWRITE_HELP = "Replace an existing output folder that threeam wrote (never any other folder)."
QUIET_HELP = "No progress output."


def format_help() -> str:
    """``--format`` help listing every entry of `threeam.data.discovery.DATA_FORMATS`, in detection order."""
    from threeam.data.discovery import DATA_FORMATS

    return f"Dataset format: {', '.join(DATA_FORMATS)} (detected from the folder if unset)."


def fail(message: Any) -> NoReturn:
    """Exit status 2 with one ``error: ...`` line on stderr."""
    text = " ".join(str(message).split())
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(2)


def check_weights(checkpoint: Optional[str], random_weights: bool, option: str = "--checkpoint",
                  shipped: bool = False) -> None:
    """Exactly one source of weights: a checkpoint, --random-weights, or (``shipped``: the preset has
    weights shipped in the package, `threeam.weights`) neither."""
    from threeam.errors import InputError
    from threeam.weights import shipped_names

    if checkpoint is not None and random_weights:
        raise InputError(f"{option} and --random-weights exclude each other: give a checkpoint for real results, "
                         f"or --random-weights alone for a smoke test ({option} {checkpoint} would be ignored)")
    if checkpoint is None and not random_weights and not shipped:
        names = ", ".join(f"--model {m} --preset {n}" for m in ("3am", "sam2") for n in shipped_names(m))
        raise InputError(f"no weights: pass {option} (a file, folder or hub id), a preset with shipped weights "
                         f"({names}) or --random-weights for a smoke test")


def has_shipped_weights(model: str, spec: Any) -> bool:
    """Whether the resolved preset ``spec`` of ``model`` has weights shipped in the package."""
    from threeam.weights import shipped_weights

    return shipped_weights(model, spec) is not None


def check_model(model: str) -> str:
    from threeam.errors import InputError

    if model not in ("sam2", "3am"):
        raise InputError(f"--model must be sam2 or 3am, got {model!r}")
    return model


def resolve_preset(model: str, preset: Optional[str], model_config: Optional[Path]) -> Any:
    """The ``preset`` argument of `build_predictor` for ``--model``, ``--preset`` and ``--model-config``:
    a checked preset name, or the SAM 2 config read from ``--model-config`` (for 3AM: the 3AM
    preset, default ``3am_tiny``, with that SAM 2 config in place of its own)."""
    from threeam.errors import InputError

    check_model(model)
    if model_config is not None:
        if preset is not None and model == "sam2":
            raise InputError("--preset and --model-config exclude each other (the config file is the SAM 2 preset)")
        sam2 = read_model_config(model_config)
        if model == "sam2":
            return sam2
        from threeam.models.three_am import get_three_am_config

        return get_three_am_config(resolve_preset("3am", preset or "3am_tiny", None), sam2=sam2)
    if preset is None:
        return DEFAULT_SAM2_PRESET if model == "sam2" else DEFAULT_3AM_PRESET
    if model == "sam2":
        from threeam.models.sam2.config import resolve_preset_name
        from threeam.weights import DEBUG_SAM2_NAME, is_debug_sam2_name

        return DEBUG_SAM2_NAME if is_debug_sam2_name(preset) else resolve_preset_name(preset)
    from threeam.models.three_am import THREE_AM_PRESETS
    from threeam.presets import resolve_name

    return resolve_name(THREE_AM_PRESETS, preset, "3AM")


def read_model_config(path: Path) -> Any:
    """``--model-config`` -> `SAM2Config`; any malformed file is one InputError."""
    from threeam.errors import InputError
    from threeam.models.sam2.config import load_sam2_config_file

    if Path(path).is_dir():
        raise InputError(f"--model-config {path} is a folder; give the JSON file")
    try:
        return load_sam2_config_file(path)
    except InputError:
        raise
    except UnicodeDecodeError:
        raise InputError(f"--model-config {path} is not a text (JSON) file") from None
    except (AttributeError, TypeError, KeyError, ValueError, RecursionError) as e:
        raise InputError(f"--model-config {path} is not a SAM 2 config ({type(e).__name__}: {e})") from None
