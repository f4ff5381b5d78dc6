"""3AM checkpoints: a folder with ``config.json`` and ``model.safetensors``.

Two kinds (``config.json["parts"]``):

* ``"all"``: every weight of the `ThreeAM` module (``sam2.*``, ``must3r.*``, ``merger.*``).
* ``"trained"``: only what 3AM training changes (``merger.*``, ``sam2.memory_attention.*``,
  ``sam2.sam_mask_decoder.*``); ``config.json`` then names the official SAM 2 and MUSt3R files
  (``sam2_checkpoint``, ``must3r_checkpoint``: local paths, relative to the folder or absolute, or
  hub ids) that provide the frozen rest. This keeps a 3AM release at the merger's ~40 M
  parameters plus the SAM 2 heads instead of ~650 M.

``load_three_am(source)`` takes a local folder or a Hugging Face hub repository id (downloaded with
``huggingface_hub.snapshot_download``; without network: `OfflineError`). The folder is written
with `threeam.io.atomic.atomic_output_dir` (a new folder beside the target swapped in at the end;
``overwrite=True`` replaces only a folder threeam wrote).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from threeam.errors import CheckpointError, InputError, OfflineError
from threeam.io.atomic import atomic_output_dir, check_output_dir
from threeam.io.jsonio import read_json
from threeam.models.three_am import TRAINABLE_PREFIXES, ThreeAM, ThreeAMConfig

FORMAT = "threeam"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_three_am(model: ThreeAM, out_dir: str | os.PathLike, *, parts: str = "all",
                 sam2_checkpoint: Optional[str] = None, must3r_checkpoint: Optional[str] = None,
                 overwrite: bool = False) -> Path:
    """Write a 3AM checkpoint folder. ``parts="trained"`` needs the two official sources.
    ``overwrite=True`` replaces only a folder threeam wrote (InputError otherwise)."""
    out = Path(out_dir).expanduser()
    if parts not in ("all", "trained"):
        raise InputError(f"parts must be 'all' or 'trained', got {parts!r}")
    if parts == "trained" and not (sam2_checkpoint and must3r_checkpoint):
        raise InputError("a 'trained'-parts checkpoint must name the official SAM 2 and MUSt3R checkpoints "
                         "(sam2_checkpoint=..., must3r_checkpoint=...) that provide the frozen weights")
    check_output_dir(out, overwrite=overwrite, option="", overwrite_hint="pass overwrite=True to replace it")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()
             if parts == "all" or k.startswith(TRAINABLE_PREFIXES)}
    meta = {"format": FORMAT, "version": VERSION, "parts": parts, "config": model.config.to_dict(),
            "sam2_checkpoint": sam2_checkpoint, "must3r_checkpoint": must3r_checkpoint,
            "num_tensors": len(state)}
    with atomic_output_dir(out, overwrite=overwrite, kind="3am-checkpoint", option="",
                           overwrite_hint="pass overwrite=True to replace it") as tmp:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT, "parts": parts})
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=1))
    return out


def resolve_three_am_dir(source: str | os.PathLike) -> Path:
    """A local checkpoint folder, or a hub repository id fetched into the Hugging Face cache."""
    path = Path(source)
    if path.is_dir():
        return path
    text = str(source)
    if path.exists() or text.startswith((".", "/")) or text.count("/") != 1:
        raise CheckpointError(f"3AM checkpoint folder not found: {source} (expected a folder with "
                              f"{CONFIG_NAME} and {WEIGHTS_NAME}, or a Hugging Face hub id 'owner/name')")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub import errors as hf_errors
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise CheckpointError(f"huggingface_hub is needed to fetch {text!r}: {exc}") from None
    advice = (f"download the repository {text} ({CONFIG_NAME}, {WEIGHTS_NAME}) on a machine with network access "
              f"(`hf download {text}`) and pass the local folder instead")
    try:
        return Path(snapshot_download(repo_id=text, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as exc:
        raise OfflineError(f"cannot download the 3AM checkpoint {text} (offline: {type(exc).__name__}); "
                           f"{advice}") from None
    except hf_errors.RepositoryNotFoundError:
        raise CheckpointError(f"the Hugging Face hub has no repository {text}; {advice}") from None
    except OSError as exc:
        raise OfflineError(f"cannot download the 3AM checkpoint {text} ({type(exc).__name__}: {exc}); {advice}") from None


def read_three_am_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a 3AM checkpoint folder, checked field by field (CheckpointError, one line)."""
    path = folder / CONFIG_NAME
    meta = read_json(path, "3AM config", error=CheckpointError,
                     missing=f"{folder} is not a 3AM checkpoint: {CONFIG_NAME} is missing")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got a {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a 3AM checkpoint config (format {meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    version = meta.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: version must be an integer 1..{VERSION}, got {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{path} has format version {version}; this threeam reads up to {VERSION}")
    parts = meta.get("parts", "all")
    if parts not in ("all", "trained"):
        raise CheckpointError(f"{path}: parts must be 'all' or 'trained', got {parts!r}")
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: 'config' must be a JSON object with the 3AM configuration, "
                              f"got {type(meta.get('config')).__name__}")
    for key in ("sam2_checkpoint", "must3r_checkpoint"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise CheckpointError(f"{path}: {key} must be a path or hub id string, got {meta[key]!r}")
    return meta


def _external(folder: Path, source: Optional[str]) -> Optional[str]:
    """A relative path in config.json is relative to the checkpoint folder; hub ids stay as they are."""
    if source is None:
        return None
    local = folder / source
    return str(local) if local.exists() else source


def load_three_am(source: str | os.PathLike, device: str | torch.device = "cpu") -> ThreeAM:
    """Build a `ThreeAM` from a checkpoint folder or hub id (see the module docstring)."""
    folder = resolve_three_am_dir(source)
    meta = read_three_am_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{folder} is not a complete 3AM checkpoint: {WEIGHTS_NAME} is missing")
    try:
        config = ThreeAMConfig.from_dict(meta["config"])
        model = ThreeAM(config)
    except (KeyError, TypeError, ValueError, AttributeError, InputError) as exc:
        raise CheckpointError(f"{folder / CONFIG_NAME}: invalid 3AM config ({type(exc).__name__}: {exc})") from None
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {weights}: {type(exc).__name__}: {exc}") from None
    own = model.state_dict()
    parts = meta.get("parts", "all")
    expected = [k for k in own if parts == "all" or k.startswith(TRAINABLE_PREFIXES)]
    _check(state, own, expected, weights)
    if parts == "trained":
        from threeam.models.must3r.checkpoint import check_state_dict as check_must3r, read_must3r_checkpoint
        from threeam.models.sam2.checkpoint import check_state_dict, read_state_dict

        sam2_src = _external(folder, meta.get("sam2_checkpoint"))
        must3r_src = _external(folder, meta.get("must3r_checkpoint"))
        if not sam2_src or not must3r_src:
            raise CheckpointError(f"{folder / CONFIG_NAME}: a 'trained' checkpoint must name sam2_checkpoint and "
                                  "must3r_checkpoint")
        sam2_sd = read_state_dict(sam2_src)
        check_state_dict(model.sam2, sam2_sd, f"SAM 2 checkpoint {sam2_src}")
        model.sam2.load_state_dict(sam2_sd)
        ck = read_must3r_checkpoint(must3r_src)
        for part in ("encoder", "decoder"):
            module = getattr(model.must3r, part)
            check_must3r(module, ck[part], f"MUSt3R checkpoint {must3r_src} [{part}]")
            module.load_state_dict(ck[part])
    model.load_state_dict(state, strict=False)
    return model.to(device).eval()


def _check(state: dict, own: dict, expected: list[str], where: Any) -> None:
    from threeam.models.state_dict_check import check_keys

    check_keys({k: own[k] for k in expected}, state, str(where), "the 3AM configuration")
