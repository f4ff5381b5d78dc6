"""Loading official MUSt3R checkpoints safely.

An official file is a ``torch.save`` dict with ``encoder`` and ``decoder`` state dicts and ``args``,
an ``argparse.Namespace`` whose ``encoder``/``decoder`` fields are Python constructor strings. Here:

* the file is read with ``torch.load(weights_only=True)``, allow-listing only ``argparse.Namespace``;
* the constructor strings are parsed (:func:`from_checkpoint_args`), never evaluated;
* the feedback MLP is detected from the weights (``feedback_layer.*``), which wins over ``args``;
* key or shape mismatches raise :class:`CheckpointError` naming the keys.

Sources: a local ``.pth``/``.pt`` path, or a Hugging Face hub file ``"hf://owner/repo/file.pth"``
(also ``"owner/repo/file.pth"`` when no such local file exists), fetched with ``huggingface_hub``;
without network :class:`OfflineError` is raised.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from threeam.errors import CheckpointError, OfflineError
from threeam.models.must3r.config import (
    Must3rConfig,
    Must3rDecoderConfig,
    Must3rEncoderConfig,
    from_checkpoint_args,
)
from threeam.models.must3r.model import Must3r

__all__ = [
    "read_must3r_checkpoint",
    "detect_feedback_type",
    "config_from_state_dicts",
    "check_state_dict",
    "resolve_must3r_path",
    "load_must3r",
]

Source = Union[str, Path]


def _download(repo_id: str, filename: str) -> Path:
    advice = (f"Download {filename} from https://huggingface.co/{repo_id} on a machine with network access and "
              f"pass the local file path instead (official MUSt3R files: "
              f"https://download.europe.naverlabs.com/ComputerVision/MUSt3R/).")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub import errors as hf_errors
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise CheckpointError(f"huggingface_hub is needed to fetch {repo_id}/{filename}: {exc}. {advice}") from None
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as exc:
        raise OfflineError(f"cannot download {filename} from the hub repository {repo_id} "
                           f"(offline or no network: {type(exc).__name__}). {advice}") from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.RemoteEntryNotFoundError) as exc:
        raise CheckpointError(f"the hub has no {filename} in {repo_id} ({type(exc).__name__}). {advice}") from None
    except OSError as exc:
        raise OfflineError(f"cannot download {filename} from {repo_id} ({type(exc).__name__}: {exc}). {advice}") from None


def resolve_must3r_path(source: Source) -> Path:
    """A local path for ``source`` (a file path or a hub file id, see the module docstring)."""
    if not isinstance(source, (str, Path)):
        raise CheckpointError(f"checkpoint source must be a path or a hub id, got {type(source).__name__}")
    text = str(source)
    hub = text[len("hf://"):] if text.startswith("hf://") else None
    path = Path(os.path.expanduser(text))
    if hub is None and not path.exists():
        parts = text.split("/")
        if len(parts) >= 3 and all(parts) and not text.startswith((".", "~", "/")):
            hub = text
    if hub is not None:
        parts = hub.split("/")
        if len(parts) < 3 or not all(parts):
            raise CheckpointError(f"hub checkpoint id must be 'owner/repo/file', got {hub!r}")
        return _download("/".join(parts[:2]), "/".join(parts[2:]))
    if not path.exists():
        raise CheckpointError(f"MUSt3R checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"MUSt3R checkpoint path is a folder, expected a .pth file: {path}")
    return path


def read_must3r_checkpoint(source: Source) -> dict[str, Any]:
    """Read an official checkpoint safely: ``{"encoder": sd, "decoder": sd, "args": Namespace|dict|None}``."""
    path = resolve_must3r_path(source)
    try:
        if hasattr(torch.serialization, "safe_globals"):
            with torch.serialization.safe_globals([argparse.Namespace]):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        else:  # torch < 2.5
            torch.serialization.add_safe_globals([argparse.Namespace])
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors, plain values and argparse.Namespace "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read MUSt3R checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path} is not a MUSt3R checkpoint (expected a dict, got {type(ckpt).__name__})")
    missing = [k for k in ("encoder", "decoder") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a MUSt3R checkpoint: missing {missing} (found keys {sorted(ckpt)[:10]})")
    for part in ("encoder", "decoder"):
        if not isinstance(ckpt[part], Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt[part].values()):
            raise CheckpointError(f"{path}: ckpt[{part!r}] is not a state dict of tensors")
    return {"encoder": dict(ckpt["encoder"]), "decoder": dict(ckpt["decoder"]), "args": ckpt.get("args")}


def detect_feedback_type(decoder_sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    """``"single_mlp"``, ``"single_linear"`` or ``None`` from the decoder weights."""
    if "feedback_layer.fc1.weight" in decoder_sd:
        return "single_mlp"
    if "feedback_layer.weight" in decoder_sd:
        return "single_linear"
    return None


def config_from_state_dicts(encoder_sd: Mapping[str, torch.Tensor], decoder_sd: Mapping[str, torch.Tensor],
                            memory_mode: str = "kv") -> Must3rConfig:
    """Infer a config from weight shapes alone (for files without ``args``); assumes 64-wide heads."""
    try:
        patch = encoder_sd["patch_embed.proj.weight"]
        e_dim, p = int(patch.shape[0]), int(patch.shape[-1])
        e_depth = 1 + max(int(k.split(".")[1]) for k in encoder_sd if k.startswith("blocks_enc."))
        e_mlp = encoder_sd["blocks_enc.0.mlp.fc1.weight"].shape[0] / e_dim
        proj = decoder_sd["feat_embed_enc_to_dec.weight"]
        d_dim = int(proj.shape[0])
        d_depth = 1 + max(int(k.split(".")[1]) for k in decoder_sd if k.startswith("blocks_dec."))
        d_mlp = decoder_sd["blocks_dec.0.mlp.fc1.weight"].shape[0] / d_dim
        out_dim = int(decoder_sd["head_dec.proj.weight"].shape[0])
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"cannot infer the MUSt3R configuration from the weights (missing {exc})") from None
    enc = Must3rEncoderConfig(patch_size=p, embed_dim=e_dim, depth=e_depth, num_heads=max(e_dim // 64, 1), mlp_ratio=e_mlp)
    dec = Must3rDecoderConfig(enc_embed_dim=e_dim, patch_size=p, embed_dim=d_dim, depth=d_depth,
                              num_heads=max(d_dim // 64, 1), mlp_ratio=d_mlp, output_dim=out_dim,
                              feedback_type=detect_feedback_type(decoder_sd), memory_mode=memory_mode)
    return Must3rConfig(enc, dec)


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`CheckpointError` naming missing / unexpected keys and shape mismatches."""
    from threeam.models.state_dict_check import check_keys

    check_keys(module.state_dict(), state_dict, what)


def load_must3r(source: Source, *, img_size: Optional[int] = None, memory_mode: Optional[str] = None,
                config: Optional[Must3rConfig] = None, device: Union[str, torch.device] = "cpu") -> Must3r:
    """Build a :class:`Must3r` for an official checkpoint and load its weights (eval mode).

    Args:
        source: local ``.pth`` path or hub file id.
        img_size: run at this (square) training size (RoPE adaptive frequency), e.g. 768 for a 512 model.
        memory_mode: override the stored memory mode (``kv``, ``norm_y``, ``raw``).
        config: use this configuration instead of the one parsed from ``args``.
    """
    ckpt = read_must3r_checkpoint(source)
    if config is None:
        if ckpt["args"] is not None:
            config = from_checkpoint_args(ckpt["args"], img_size=img_size, memory_mode=memory_mode)
        else:
            warnings.warn("checkpoint has no 'args'; inferring the MUSt3R configuration from weight shapes "
                          "(64-wide attention heads assumed)", stacklevel=2)
            config = config_from_state_dicts(ckpt["encoder"], ckpt["decoder"], memory_mode or "kv")
    elif memory_mode is not None:
        config = config.with_memory_mode(memory_mode)
    found = detect_feedback_type(ckpt["decoder"])
    if found != config.decoder.feedback_type:
        warnings.warn(f"checkpoint args say feedback_type={config.decoder.feedback_type!r} but the weights "
                      f"{'contain' if found else 'lack'} a feedback layer; using {found!r}", stacklevel=2)
        config = dataclasses.replace(config, decoder=dataclasses.replace(config.decoder, feedback_type=found))
    with torch.device("meta"):
        model = Must3r(config)
    check_state_dict(model.encoder, ckpt["encoder"], "ckpt['encoder']")
    check_state_dict(model.decoder, ckpt["decoder"], "ckpt['decoder']")
    model.encoder.load_state_dict(ckpt["encoder"], strict=True, assign=True)
    model.decoder.load_state_dict(ckpt["decoder"], strict=True, assign=True)
    model = model.float().to(device)
    return model.eval()
