"""Drop-in builders for code written against the official SAM 2 package (``sam2.build_sam``).

    from threeam.predictor.sam2_compat import build_sam2_video_predictor
    predictor = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt",
                                           device="cpu")
    state = predictor.init_state(video_path="videos/bedroom")   # the official notebook's calls

Same names, arguments and defaults as the official ``build_sam2``, ``build_sam2_hf``,
``build_sam2_video_predictor`` and ``build_sam2_video_predictor_hf``; the models come from
`threeam.predictor.build` (our presets and checkpoint loading).

* ``config_file``: an official config name (``"configs/sam2.1/sam2.1_hiera_t.yaml"``,
  ``"sam2.1_hiera_t.yaml"``, ``"configs/sam2/sam2_hiera_l.yaml"``; any of the eight official
  SAM 2 / SAM 2.1 variants), a preset name (``"sam2.1_hiera_t"``), an official hub id, a
  `SAM2Config`, or the path of a config file (our JSON, or an official-style YAML tree when
  PyYAML is installed).
* ``ckpt_path``: an official ``.pt`` file, a safetensors file or a hub id; None is an `InputError`
  unless ``random_weights=True`` is given by name (the official code silently keeps random
  weights there).
* ``apply_postprocessing`` (default True) applies what the official builders add: for both, the
  mask decoder's dynamic multimask fallback (``dynamic_multimask_via_stability=true``, delta 0.05,
  threshold 0.98); for the video predictor also ``binarize_mask_from_pts_for_mem_enc=true`` and
  ``fill_hole_area=8``. As in the official code they are applied *after* ``hydra_overrides_extra``,
  so they win over an extra override of the same key. Known difference: hole filling runs
  on every device here, while the official code skips it (with a warning) where its CUDA
  extension is missing.
* ``hydra_overrides_extra``: Hydra-style ``"[+|++]model.<key>=<value>"`` strings, mapped onto
  `SAM2Config` (any field, nested with dots: ``model.image_encoder.trunk.embed_dim``), its
  ``sam_mask_decoder_extra_args`` and `VideoPredictorConfig` (``fill_hole_area``,
  ``non_overlap_masks``, ...); ``model._target_`` may name the official classes;
  ``~model.sam_mask_decoder_extra_args`` removes the fallback. Anything else is an `InputError`
  naming every override that does not map.
* ``vos_optimized=True`` (or ``model._target_`` naming the official VOS predictor) turns on the
  compiled mode (`VideoPredictorConfig.compile`: ``torch.compile`` of the model's parts, compiled
  on first use) and is recorded as ``predictor.vos_optimized``.
* ``device`` defaults to ``"cuda"`` as in the official code; an `InputError` says so clearly on a
  machine without CUDA.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from threeam.errors import InputError

__all__ = [
    "build_sam2",
    "build_sam2_hf",
    "build_sam2_video_predictor",
    "build_sam2_video_predictor_hf",
    "resolve_official_config",
    "apply_hydra_overrides",
    "POSTPROCESSING_OVERRIDES",
    "VIDEO_POSTPROCESSING_OVERRIDES",
]

POSTPROCESSING_OVERRIDES = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
"""What the official ``build_sam2`` adds with ``apply_postprocessing=True``."""

VIDEO_POSTPROCESSING_OVERRIDES = POSTPROCESSING_OVERRIDES + (
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
)
"""What the official ``build_sam2_video_predictor`` adds with ``apply_postprocessing=True``."""

_OFFICIAL_TARGETS = {
    "sam2.modeling.sam2_base.SAM2Base": False,
    "sam2.sam2_video_predictor.SAM2VideoPredictor": False,
    "sam2.sam2_video_predictor.SAM2VideoPredictorVOS": True,  # value: is it the VOS-optimised class
}
_COMPAT_KWARGS = ("random_weights", "seed", "progress")


# --------------------------------------------------------------------------- config names
def resolve_official_config(config_file: Any):
    """``(SAM2Config, VideoPredictorConfig)`` for an official config name, preset, hub id, config
    object or config file, *without* the post-processing the builders add (the official YAML
    configs carry none: no dynamic multimask fallback, no hole filling, no click-mask binarisation).
    """
    from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig, get_sam2_config, resolve_preset_name

    bare_video = VideoPredictorConfig(fill_hole_area=0, binarize_mask_from_pts_for_mem_enc=False)
    if isinstance(config_file, SAM2Config):
        return config_file.copy(), bare_video
    if not isinstance(config_file, (str, os.PathLike)):
        raise InputError(f"config_file must be an official config name (e.g. 'configs/sam2.1/sam2.1_hiera_t.yaml'), "
                         f"a preset name or a config file path, got {type(config_file).__name__}")
    path = Path(os.path.expanduser(str(config_file)))
    if path.is_file() and path.suffix.lower() in (".json", ".yaml", ".yml"):
        return _config_from_file(path, bare_video)
    name = str(config_file)
    try:
        preset = resolve_preset_name(name)
    except InputError:
        raise InputError(
            f"config_file {name!r} is neither an official SAM 2 config name nor a config file; use one of "
            "configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml, configs/sam2/sam2_hiera_{t,s,b+,l}.yaml, a preset "
            "name such as 'sam2.1_hiera_t', or the path of a JSON/YAML config file"
        ) from None
    return get_sam2_config(preset).copy(sam_mask_decoder_extra_args=None), bare_video


def _numbers_in_strings(tree: Any) -> Any:
    """PyYAML reads ``1e-6`` (no dot) as a string, Hydra as a float: follow Hydra."""
    if isinstance(tree, dict):
        return {k: _numbers_in_strings(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_numbers_in_strings(v) for v in tree]
    if isinstance(tree, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", tree.strip()):
        return float(tree)
    return tree


def _config_from_file(path: Path, bare_video):
    import json

    from threeam.models.sam2.config import SAM2Config, VideoPredictorConfig

    if path.suffix.lower() == ".json":
        try:
            tree = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"SAM 2 config file {path} is not valid JSON: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise InputError(f"reading the YAML config {path} needs PyYAML (pip install pyyaml); or give the "
                             "official config name or a JSON config") from None
        try:
            tree = _numbers_in_strings(yaml.safe_load(path.read_text()))
        except yaml.YAMLError as exc:
            raise InputError(f"SAM 2 config file {path} is not valid YAML: {exc}") from None
    if isinstance(tree, dict) and "config" in tree:
        tree = tree["config"]
    cfg = SAM2Config.from_official_dict(tree)
    model_tree = tree.get("model", tree) if isinstance(tree, dict) else {}
    names = {f.name for f in dataclasses.fields(VideoPredictorConfig)}
    video = dataclasses.replace(bare_video, **{k: v for k, v in model_tree.items() if k in names})
    return cfg, video


# --------------------------------------------------------------------------- hydra overrides
def _parse_value(text: str) -> Any:
    """A Hydra override value: true/false/null, int, float, quoted or bare string, [list]."""
    s = text.strip()
    low = s.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low in ("null", "none", "~"):
        return None
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s.startswith("[") and s.endswith("]"):
        inner = s[1:-1].strip()
        return [_parse_value(x) for x in inner.split(",")] if inner else []
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def _coerce(value: Any, current: Any, where: str) -> Any:
    """`value` in the type of the field's `current` value (bool/int/float/tuple kept strict)."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(current, (tuple, list)):
        if isinstance(value, (list, tuple)):
            return type(current)(value)
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(current):
        raise InputError(f"{where} is a group of options; override its fields ({where}.<field>=...)")
    else:
        return value
    raise InputError(f"{where}={value!r} has the wrong type: expected {type(current).__name__} like the "
                     f"current value {current!r}")


def _split_override(item: Any) -> tuple[str, str, Optional[str]]:
    """``(prefix, key, value)`` of one override string (value None for a ``~key`` deletion)."""
    if not isinstance(item, str):
        raise InputError(f"a hydra override must be a string like '++model.fill_hole_area=0', got {item!r}")
    m = re.fullmatch(r"\s*(\+\+|\+|~)?([A-Za-z_][\w.+]*)\s*(?:=(.*))?", item, flags=re.S)
    if m is None or (m.group(3) is None and m.group(1) != "~"):
        raise InputError(f"cannot read the hydra override {item!r}: expected '[+|++]model.<key>=<value>'")
    return m.group(1) or "", m.group(2), m.group(3)


def apply_hydra_overrides(cfg, video, overrides: Sequence[str]):
    """Apply Hydra-style overrides to ``(SAM2Config, VideoPredictorConfig)``; returns
    ``(cfg, video, vos_target)`` where `vos_target` says that ``model._target_`` named the official
    VOS-optimised predictor. Every override that does not map raises one `InputError` naming them."""
    from threeam.models.sam2.config import MaskDecoderExtraArgs

    if isinstance(overrides, str):
        raise InputError("hydra_overrides_extra must be a list of strings, got one string")
    cfg = cfg.copy()
    video = dataclasses.replace(video)
    video_fields = {f.name for f in dataclasses.fields(video)}
    vos_target = False
    unknown: list[str] = []
    for item in overrides or []:
        prefix, key, raw = _split_override(item)
        parts = key.split(".")
        if parts[0] != "model" or len(parts) < 2:
            unknown.append(item)
            continue
        parts = parts[1:]
        value = None if raw is None else _parse_value(raw)
        if parts == ["_target_"]:
            if value not in _OFFICIAL_TARGETS:
                unknown.append(item)
            else:
                vos_target = vos_target or _OFFICIAL_TARGETS[value]
            continue
        if prefix == "~":
            if parts == ["sam_mask_decoder_extra_args"]:
                cfg.sam_mask_decoder_extra_args = None
            else:
                unknown.append(item)
            continue
        name = ".".join(parts)
        if len(parts) == 1 and parts[0] in video_fields:
            setattr(video, parts[0], _coerce(value, getattr(video, parts[0]), f"model.{name}"))
            if parts[0] == "binarize_mask_from_pts_for_mem_enc":
                cfg.binarize_mask_from_pts_for_mem_enc = getattr(video, parts[0])
            continue
        if parts[0] == "sam_mask_decoder_extra_args" and len(parts) == 2:
            if cfg.sam_mask_decoder_extra_args is None:
                cfg.sam_mask_decoder_extra_args = MaskDecoderExtraArgs()
            target = cfg.sam_mask_decoder_extra_args
        else:
            target = cfg
            for p in parts[:-1]:
                target = getattr(target, p, None) if not p.startswith("_") else None
                if target is None or not dataclasses.is_dataclass(target):
                    break
            if target is None or not dataclasses.is_dataclass(target):
                unknown.append(item)
                continue
        leaf = parts[-1]
        if leaf.startswith("_") or leaf not in {f.name for f in dataclasses.fields(target)}:
            unknown.append(item)
            continue
        setattr(target, leaf, _coerce(value, getattr(target, leaf), f"model.{name}"))
    if unknown:
        from threeam.models.sam2.config import SAM2Config

        top = sorted(f.name for f in dataclasses.fields(SAM2Config))
        raise InputError(
            f"hydra override(s) {unknown} do not map onto this SAM 2 implementation; supported: "
            f"model.<SAM2Config field> (nested with dots), model.sam_mask_decoder_extra_args.<field>, "
            f"model.<predictor option> ({', '.join(sorted(video_fields))}) and model._target_ naming an official "
            f"class; SAM2Config fields: {', '.join(top)}"
        )
    return cfg, video, vos_target


# --------------------------------------------------------------------------- builders
def _check_device(device: Any) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} (the official default) but CUDA is not available on this machine; "
                         "pass device='cpu'")
    return dev


def _check_kwargs(kwargs: dict, fn: str) -> None:
    unknown = sorted(set(kwargs) - set(_COMPAT_KWARGS))
    if unknown:
        raise InputError(f"{fn}: unknown keyword argument(s) {unknown}; besides the official arguments it takes "
                         f"{', '.join(_COMPAT_KWARGS)}")


def _weights(ckpt_path: Any, kwargs: dict, fn: str) -> tuple[Any, bool, int]:
    random_weights = bool(kwargs.get("random_weights", False))
    seed = int(kwargs.get("seed", 0))
    if ckpt_path is None and not random_weights:
        raise InputError(f"{fn}: ckpt_path is None; give the checkpoint (file or hub id), or random_weights=True "
                         "for deterministic random weights (the official code silently keeps random weights here)")
    if ckpt_path is not None and random_weights:
        raise InputError(f"{fn}: give ckpt_path or random_weights=True, not both")
    return ckpt_path, random_weights, seed


def _check_mode(mode: Any) -> str:
    if mode not in ("eval", "train"):
        raise InputError(f"mode must be 'eval' or 'train', got {mode!r}")
    return mode


def _official_call(name: str, config_file: Any, ckpt_path: Any, device: Any, mode: str,
                   hydra_overrides_extra: Sequence[str], postprocessing: Sequence[str], kwargs: dict):
    """The checks and config resolution shared by the official builders: returns ``(mode, device,
    checkpoint, random_weights, seed, SAM2Config, VideoPredictorConfig, vos_optimized_target)``."""
    _check_kwargs(kwargs, name)
    mode = _check_mode(mode)
    dev = _check_device(device)
    ckpt, random_weights, seed = _weights(ckpt_path, kwargs, name)
    cfg, video = resolve_official_config(config_file)
    cfg, video, vos_target = apply_hydra_overrides(cfg, video, list(hydra_overrides_extra) + list(postprocessing))
    return mode, dev, ckpt, random_weights, seed, cfg, video, vos_target


def build_sam2(config_file: Any, ckpt_path: Any = None, device: Any = "cuda", mode: str = "eval",
               hydra_overrides_extra: Sequence[str] = [], apply_postprocessing: bool = True, **kwargs: Any):
    """The official ``build_sam2``: a `SAM2Base` image/video model (not a predictor).

    Extra keywords: ``random_weights=True`` (with ``seed``) when ``ckpt_path`` is None.
    """
    from threeam.predictor.build import build_sam2_model

    mode, dev, ckpt, random_weights, seed, cfg, video, _ = _official_call(
        "build_sam2", config_file, ckpt_path, device, mode, hydra_overrides_extra,
        POSTPROCESSING_OVERRIDES if apply_postprocessing else (), kwargs)
    model = build_sam2_model(cfg, checkpoint=ckpt, device=dev, random_weights=random_weights, seed=seed,
                             video_config=video)
    return model.train(mode == "train")


def build_sam2_video_predictor(config_file: Any, ckpt_path: Any = None, device: Any = "cuda", mode: str = "eval",
                               hydra_overrides_extra: Sequence[str] = [], apply_postprocessing: bool = True,
                               vos_optimized: bool = False, **kwargs: Any):
    """The official ``build_sam2_video_predictor``: a `VideoPredictor` with the official session API.

    Extra keywords: ``random_weights=True`` (with ``seed``) when ``ckpt_path`` is None, and
    ``progress`` (False silences the propagation progress bar). ``vos_optimized=True`` builds the
    predictor with ``compile=True`` (compiled on first use) and sets ``predictor.vos_optimized``.
    """
    from threeam.predictor.build import build_predictor

    mode, dev, ckpt, random_weights, seed, cfg, video, vos_target = _official_call(
        "build_sam2_video_predictor", config_file, ckpt_path, device, mode, hydra_overrides_extra,
        VIDEO_POSTPROCESSING_OVERRIDES if apply_postprocessing else (), kwargs)
    vos = bool(vos_optimized) or vos_target
    if vos and any(f.name == "compile" for f in dataclasses.fields(video)):
        video = dataclasses.replace(video, compile=True)
    options = {"progress": kwargs["progress"]} if "progress" in kwargs else {}
    predictor = build_predictor("sam2", preset=cfg, checkpoint=ckpt, device=dev, random_weights=random_weights,
                                seed=seed, config=video, **options)
    predictor.vos_optimized = vos
    if mode == "train":
        predictor.model.train()
    return predictor


def _hub_config(model_id: Any, fn: str) -> str:
    from threeam.models.sam2.checkpoint import HF_MODEL_FILES

    if model_id not in HF_MODEL_FILES:
        raise InputError(f"{fn}: unknown model id {model_id!r}; the official ones are {', '.join(HF_MODEL_FILES)}")
    return HF_MODEL_FILES[model_id][0]


def build_sam2_hf(model_id: str, **kwargs: Any):
    """The official ``build_sam2_hf``: download the official checkpoint of `model_id` from the
    Hugging Face hub (cached; `threeam.errors.OfflineError` without network) and build it."""
    preset = _hub_config(model_id, "build_sam2_hf")
    if "ckpt_path" in kwargs or "config_file" in kwargs:
        raise InputError("build_sam2_hf takes the model id only (config and checkpoint come from it)")
    return build_sam2(preset, ckpt_path=model_id, **kwargs)


def build_sam2_video_predictor_hf(model_id: str, **kwargs: Any):
    """The official ``build_sam2_video_predictor_hf``: as `build_sam2_hf`, for the video predictor."""
    preset = _hub_config(model_id, "build_sam2_video_predictor_hf")
    if "ckpt_path" in kwargs or "config_file" in kwargs:
        raise InputError("build_sam2_video_predictor_hf takes the model id only (config and checkpoint come from it)")
    return build_sam2_video_predictor(preset, ckpt_path=model_id, **kwargs)
