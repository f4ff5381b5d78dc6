"""Loading official SAM 2 / SAM 2.1 weights into a ``SAM2Base`` built by :mod:`threeam.models.sam2.build`.

Sources accepted by :func:`load_sam2_weights`:

- a local ``.pt`` / ``.pth`` file: the official ``{"model": state_dict}`` or a bare state dict
  (always ``torch.load(..., map_location="cpu", weights_only=True)``),
- a local ``.safetensors`` file (a bare state dict),
- a Hugging Face hub id of an official release (``facebook/sam2.1-hiera-large`` ...; see
  :data:`HF_MODEL_FILES`) or a preset name (``sam2.1_hiera_l``), downloaded via ``huggingface_hub``.

Problems raise :class:`threeam.errors.CheckpointError` (missing or unreadable file, keys or shapes
that do not fit the model, with a hint naming the preset the checkpoint does fit) or
:class:`threeam.errors.OfflineError` (hub id without network).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import nn

from threeam.errors import CheckpointError, InputError, OfflineError

__all__ = [
    "HF_MODEL_FILES",
    "PRESET_TO_HF_ID",
    "resolve_checkpoint_path",
    "read_state_dict",
    "check_state_dict",
    "apply_state_dict",
    "load_sam2_weights",
    "matching_presets",
    "preset_shapes",
]

HF_MODEL_FILES: dict[str, tuple[str, str]] = {
    "facebook/sam2-hiera-tiny": ("sam2_hiera_t", "sam2_hiera_tiny.pt"),
    "facebook/sam2-hiera-small": ("sam2_hiera_s", "sam2_hiera_small.pt"),
    "facebook/sam2-hiera-base-plus": ("sam2_hiera_b+", "sam2_hiera_base_plus.pt"),
    "facebook/sam2-hiera-large": ("sam2_hiera_l", "sam2_hiera_large.pt"),
    "facebook/sam2.1-hiera-tiny": ("sam2.1_hiera_t", "sam2.1_hiera_tiny.pt"),
    "facebook/sam2.1-hiera-small": ("sam2.1_hiera_s", "sam2.1_hiera_small.pt"),
    "facebook/sam2.1-hiera-base-plus": ("sam2.1_hiera_b+", "sam2.1_hiera_base_plus.pt"),
    "facebook/sam2.1-hiera-large": ("sam2.1_hiera_l", "sam2.1_hiera_large.pt"),
}
"""Official hub repositories -> (preset name, checkpoint file name in the repository)."""

PRESET_TO_HF_ID: dict[str, str] = {preset: repo for repo, (preset, _) in HF_MODEL_FILES.items()}

from threeam.models.state_dict_check import MAX_LISTED as _MAX_LISTED  # noqa: E402
Source = Union[str, Path]


# --------------------------------------------------------------------------- locating the file
def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not text.startswith((".", "~"))
        and not text.endswith((".pt", ".pth", ".safetensors", ".bin", ".ckpt"))
    )


def _hub_id_for(source: str) -> Optional[str]:
    """The official hub id named by `source` (a hub id or a preset name/alias), else None."""
    if source in HF_MODEL_FILES:
        return source
    lowered = source.lower()
    for repo in HF_MODEL_FILES:
        if repo.lower() == lowered:
            return repo
    if "/" not in source:
        from threeam.models.sam2.config import resolve_preset_name

        try:
            return PRESET_TO_HF_ID.get(resolve_preset_name(source))
        except InputError:
            return None
    return None


def _download(repo_id: str) -> Path:
    filename = HF_MODEL_FILES[repo_id][1]
    url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
    advice = (
        f"Download {url} on a machine with network access and pass the local file path instead "
        f"(e.g. --checkpoint /path/to/{filename}), or fill the Hugging Face cache there with "
        f"`hf download {repo_id} {filename}` (cache folder: $HF_HOME, default ~/.cache/huggingface)."
    )
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub import errors as hf_errors
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise CheckpointError(f"huggingface_hub is needed to fetch {repo_id!r}: {exc}. {advice}") from None
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as exc:
        raise OfflineError(
            f"cannot download {filename} from the Hugging Face hub repository {repo_id} "
            f"(offline or no network: {type(exc).__name__}). {advice}"
        ) from None
    except (hf_errors.RepositoryNotFoundError, hf_errors.RemoteEntryNotFoundError) as exc:
        raise CheckpointError(f"the Hugging Face hub has no {filename} in {repo_id} ({type(exc).__name__}). {advice}") from None
    except OSError as exc:  # connection problems surface as OSError subclasses
        raise OfflineError(
            f"cannot download {filename} from the Hugging Face hub repository {repo_id} ({type(exc).__name__}: {exc}). "
            f"{advice}"
        ) from None


def resolve_checkpoint_path(source: Source) -> Path:
    """A local file path for `source` (downloading official hub ids through ``huggingface_hub``)."""
    if isinstance(source, Path) or not isinstance(source, str):
        path = Path(source)
    else:
        path = Path(os.path.expanduser(source))
        if not path.exists():
            repo = _hub_id_for(source)
            if repo is not None:
                return _download(repo)
            if _looks_like_hub_id(source):
                raise CheckpointError(
                    f"{source!r} is neither a local file nor a known SAM 2 hub id; known hub ids: "
                    f"{', '.join(HF_MODEL_FILES)}"
                )
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, expected a .pt or .safetensors file: {path}")
    return path


# --------------------------------------------------------------------------- reading
def read_state_dict(source: Source) -> dict[str, torch.Tensor]:
    """The official state dict ``{key: tensor}`` (on CPU) stored in `source` (file or hub id)."""
    path = resolve_checkpoint_path(source)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises several error types for corrupt files
            raise CheckpointError(f"cannot read safetensors checkpoint {path}: {exc}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling / zip errors: corrupt file or a pickle with arbitrary objects
        raise CheckpointError(
            f"cannot read checkpoint {path} as a PyTorch weights file (loaded with weights_only=True): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = list(obj)[:_MAX_LISTED] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} does not hold a SAM 2 state dict (expected {{'model': state_dict}} or a bare "
            f"{{key: tensor}} mapping); found {keys}"
        )
    return dict(obj)


# --------------------------------------------------------------------------- checking
@functools.lru_cache(maxsize=None)
def preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of the state dict of a model built for preset `name` (built on the meta device)."""
    from threeam.models.sam2.build import build_sam2

    model = build_sam2(name, device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def matching_presets(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Preset names whose state-dict keys and shapes equal `shapes` exactly."""
    from threeam.models.sam2.config import SAM2_PRESETS

    wanted = {k: tuple(v) for k, v in shapes.items()}
    return [name for name in SAM2_PRESETS if preset_shapes(name) == wanted]


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise CheckpointError unless `state_dict` has exactly the model's keys and shapes.

    The message counts and names (first 10 of each) the missing keys, unexpected keys and shape
    mismatches, and names the preset(s) the checkpoint does fit, if any.
    """
    from threeam.models.state_dict_check import check_keys, compare_keys, shapes_of

    own = model.state_dict()
    if compare_keys(shapes_of(own), shapes_of(state_dict)).ok:
        return
    try:
        fits = matching_presets(shapes_of(state_dict))
    except Exception:  # the hint is best effort; never hide the real error behind it
        fits = []
    hint = None
    if fits:
        hint = (f"hint: the checkpoint matches the preset {' / '.join(repr(f) for f in fits)}; build the model "
                f"with that preset (e.g. build_sam2({fits[0]!r}, checkpoint=...))")
    check_keys(own, state_dict, source, hint=hint)


def apply_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint", *, assign: bool = False
) -> nn.Module:
    """Check `state_dict` against `model` (see :func:`check_state_dict`) and load it.

    Floating-point tensors are cast to the model's dtype. With `assign`, the checkpoint tensors
    replace the model's (use for models built on the meta device).
    """
    check_state_dict(model, state_dict, source)
    own = model.state_dict()
    converted = {}
    for k, v in state_dict.items():
        target = own[k]
        if v.is_floating_point() and target.is_floating_point() and v.dtype != target.dtype:
            v = v.to(target.dtype)
        converted[k] = v
    model.load_state_dict(converted, strict=True, assign=assign)
    return model


def load_sam2_weights(model: nn.Module, source: Source, *, assign: bool = False) -> nn.Module:
    """Load official SAM 2 weights from `source` (local .pt/.safetensors file or hub id) into `model`.

    Returns the model. Raises CheckpointError (missing/unreadable file, key or shape mismatch) or
    OfflineError (hub id without network).
    """
    state_dict = read_state_dict(source)
    return apply_state_dict(model, state_dict, source=f"checkpoint {source}", assign=assign)
