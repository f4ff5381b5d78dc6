"""The one place that builds predictors (and the models behind them).

Every entry point (the CLI commands, the evaluation methods, the training tasks' model builders,
the tests, `VideoPredictor.from_pretrained`, `ThreeAMVideoPredictor.from_pretrained`) comes here,
so one preset, one checkpoint and one seed always give the same model.

Weights come from exactly one of:

* ``checkpoint``: a SAM 2 checkpoint file / hub id (SAM 2), a 3AM checkpoint folder / hub id (3AM);
  a hub id given as the model name (``"facebook/sam2.1-hiera-tiny"``) is its own checkpoint;
* ``random_weights=True``: the one random-weights rule, :func:`random_init_` with ``seed``
  (deterministic, independent of the global RNG and of the entry point). A 3AM model's SAM 2 part
  gets exactly the weights a SAM 2 model of the same preset and seed gets, and its Feature Merger
  keeps its zero-initialised output layer, so a fresh random 3AM tracks exactly like SAM 2;
* neither, for a preset name with weights shipped in the package (`threeam.weights`: ``3am_tiny``,
  ``sam2.1_debug_256``): those weights.

Asking for both, or for neither with a preset that ships no weights, is an `InputError`.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Optional

import torch
from torch import nn

from threeam.errors import InputError

__all__ = ["build_predictor", "build_sam2_model", "build_three_am_model", "build_eval_predictor", "random_init_",
           "three_am_config_from_sam2", "video_predictor_config"]


def random_init_(module: nn.Module, seed: int = 0, stream: str = "") -> nn.Module:
    """Fill every parameter of `module` in place with deterministic random values.

    Matrices and convolutions: normal / sqrt(fan-in); 1-D ``*weight`` (norm scales): 1 + 0.1 normal;
    other vectors (biases, embeddings): 0.02 normal. The values depend only on ``seed``, ``stream``
    (a name that separates the parts of one model) and the parameters' names and shapes, visited in
    name order. Buffers are left alone: the builders construct models under ``torch.manual_seed(seed)``
    so buffers drawn at construction (SAM 2's random Fourier matrix) follow the seed as well.
    Returns `module`.
    """
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(stream.encode())) % (2 ** 63))
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if p.dim() >= 2:
                values = torch.randn(p.shape, generator=g) / max(1.0, p[0].numel()) ** 0.5
            elif name.endswith("weight"):
                values = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            else:
                values = 0.02 * torch.randn(p.shape, generator=g)
            p.copy_(values.to(p.dtype))
    return module


def _check_weights(checkpoint: Any, random_weights: bool, what: str, model: str) -> None:
    from threeam.weights import shipped_names

    if checkpoint is not None and random_weights:
        raise InputError(f"give either a {what} checkpoint or random_weights=True, not both "
                         f"(checkpoint {checkpoint!r} would be ignored)")
    if checkpoint is None and not random_weights:
        raise InputError(f"no weights: give a {what} checkpoint (file, folder or hub id), a preset with shipped "
                         f"weights ({', '.join(shipped_names(model))}) or random_weights=True (deterministic "
                         "random weights, for smoke tests)")


def _shipped_default(model: str, preset: Any, checkpoint: Any, random_weights: bool) -> Any:
    """``checkpoint``, or the shipped weights of ``preset`` when neither a checkpoint nor random weights is asked for."""
    if checkpoint is not None or random_weights:
        return checkpoint
    from threeam.weights import shipped_weights

    shipped = shipped_weights(model, preset)
    return None if shipped is None else str(shipped)


def _hub_model_id(name: Any) -> Optional[str]:
    from threeam.models.sam2.checkpoint import HF_MODEL_FILES

    return name if isinstance(name, str) and name in HF_MODEL_FILES else None


def build_sam2_model(preset: Any = "sam2.1_hiera_l", checkpoint: Any = None, device: str | torch.device = "cpu",
                     random_weights: bool = False, seed: int = 0, video_config: Any = None):
    """A `SAM2Base` in eval mode.

    Args:
        preset: a preset name (``sam2.1_hiera_t``), an official hub id (``facebook/sam2.1-hiera-tiny``,
            which also names the checkpoint), ``sam2.1_debug_256`` (the debug model, with shipped
            weights) or a `SAM2Config`.
        checkpoint: an official ``.pt`` file, a safetensors file or a hub id.
        random_weights, seed: the random-weights rule (:func:`random_init_`, stream ``"sam2"``).
        video_config: a `VideoPredictorConfig` (the memory encoder's click-mask binarisation flag).
    """
    from threeam.models.sam2.build import build_sam2
    from threeam.models.sam2.checkpoint import HF_MODEL_FILES

    hub = _hub_model_id(preset)
    if hub is not None:
        if checkpoint is None and not random_weights:
            checkpoint = hub
        preset = HF_MODEL_FILES[hub][0]
    checkpoint = _shipped_default("sam2", preset, checkpoint, random_weights)
    _check_weights(checkpoint, random_weights, "SAM 2", "sam2")
    from threeam.models.three_am import resolve_debug_sam2

    preset = resolve_debug_sam2(preset)
    if random_weights:
        with torch.random.fork_rng(devices=[]):  # construction-time random buffers follow the seed too
            torch.manual_seed(seed)
            model = build_sam2(preset, device="cpu", video_config=video_config)
        random_init_(model, seed, "sam2")
        return model.to(device).eval()
    return build_sam2(preset, checkpoint=checkpoint, device=device, video_config=video_config)


def three_am_config_from_sam2(sam2: Any, must3r: Any = None, merger: Any = None):
    """The one "3AM configuration from a SAM 2 configuration" rule.

    Args:
        sam2: a SAM 2 preset name or `SAM2Config`.
        must3r: ``"tiny"`` (the tiny MUSt3R of ``3am_tiny`` at 64 px with its stream options) or
            another tiny MUSt3R name (``tiny-wide``: the same size and stream options), a MUSt3R
            preset name, or None: ``must3r_512`` for an official SAM 2 preset, the tiny one for a
            custom (small) SAM 2 config.
        merger: a merger preset; None: ``tiny`` with the tiny MUSt3R, else the paper's.
    """
    from threeam.models.three_am import ThreeAMConfig, get_three_am_config, is_tiny_must3r, tiny_must3r_config

    if must3r is None:
        must3r = "must3r_512" if isinstance(sam2, str) else "tiny"
    if is_tiny_must3r(must3r):
        tiny = get_three_am_config("3am_tiny")
        return ThreeAMConfig(sam2, tiny_must3r_config(must3r), merger or "tiny", must3r_res=tiny.must3r_res,
                             stream=tiny.stream)
    return ThreeAMConfig(sam2, must3r.lower() if isinstance(must3r, str) else must3r, merger or "paper")


def _three_am_config(preset: Any):
    from threeam.models.three_am import ThreeAMConfig, get_three_am_config, three_am_presets

    if isinstance(preset, ThreeAMConfig):
        return preset
    if isinstance(preset, str) and preset in three_am_presets():
        return get_three_am_config(preset)
    if isinstance(preset, str) and not preset.startswith("3am"):
        return three_am_config_from_sam2(preset)
    if preset is not None and not isinstance(preset, str):
        return three_am_config_from_sam2(preset)
    return get_three_am_config(preset)  # raises with the list of presets


def build_three_am_model(preset: Any = "3am_hiera_l", checkpoint: Any = None, device: str | torch.device = "cpu",
                         random_weights: bool = False, seed: int = 0, sam2_model: Any = None):
    """A `ThreeAM` model in eval mode.

    Args:
        preset: a 3AM preset (``3am_tiny``, ``3am_hiera_l``), a `ThreeAMConfig`, or a SAM 2 preset /
            config (see :func:`three_am_config_from_sam2`).
        checkpoint: a 3AM checkpoint folder or hub id (`threeam.models.three_am_weights`); None with
            a preset that has shipped weights (``3am_tiny``, ``3am_tiny_wide``): those.
        random_weights, seed: SAM 2 gets :func:`random_init_` stream ``"sam2"`` (the weights of
            ``build_sam2_model(same preset, seed)``), MUSt3R stream ``"must3r"``; the merger is
            built under ``torch.manual_seed(seed)`` with its zero-initialised output layer.
        sam2_model: with random weights, copy the SAM 2 weights from this `SAM2Base` instead
            (e.g. a SAM 2 checkpoint shared with other methods).
    """
    from threeam.models.three_am import ThreeAM

    checkpoint = _shipped_default("3am", preset, checkpoint, random_weights)
    _check_weights(checkpoint, random_weights, "3AM", "3am")
    if checkpoint is not None:
        from threeam.models.three_am_weights import load_three_am

        return load_three_am(checkpoint, device=device).eval()
    config = _three_am_config(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ThreeAM(config, device="cpu")
    random_init_(model.sam2, seed, "sam2")
    random_init_(model.must3r, seed, "must3r")
    if sam2_model is not None:
        theirs = sam2_model.state_dict()
        own = model.sam2.state_dict()
        if set(theirs) != set(own) or any(own[k].shape != v.shape for k, v in theirs.items()):
            raise InputError("the SAM 2 model given does not fit this 3AM configuration's SAM 2 part")
        model.sam2.load_state_dict(theirs)
    return model.to(device).eval()


def video_predictor_config(config: Any = None, **options: Any):
    """A `VideoPredictorConfig` (the official video-predictor defaults) with `options` applied;
    unknown option names are an `InputError`."""
    from threeam.models.sam2.config import VideoPredictorConfig

    config = VideoPredictorConfig() if config is None else config
    names = {f.name for f in dataclasses.fields(VideoPredictorConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise InputError(f"unknown predictor option(s) {unknown}; valid: {sorted(names | {'config', 'progress'})}")
    return dataclasses.replace(config, **options)


def build_predictor(model: str = "sam2", preset: Any = None, checkpoint: Any = None,
                    device: str | torch.device = "cpu", random_weights: bool = False, seed: int = 0,
                    **predictor_options: Any):
    """A SAM 2 (``model="sam2"``) or 3AM (``model="3am"``) video predictor.

    Args:
        model: ``"sam2"`` or ``"3am"``.
        preset: SAM 2 preset / hub id / config (default ``sam2.1_hiera_l``), or 3AM preset / config
            (default ``3am_hiera_l``).
        checkpoint: SAM 2 checkpoint file / hub id, or 3AM checkpoint folder / hub id.
        device: ``"cpu"``, ``"cuda"``, ...
        random_weights, seed: deterministic random weights (see the module docstring).
        **predictor_options: `VideoPredictorConfig` fields, ``config=`` a whole one, ``progress=``,
            ``memory_policy=`` and, for 3AM, ``motion_detector=``.
    Raises:
        InputError: unknown model, no weights or two sources of weights, unknown options.
    """
    if model not in ("sam2", "3am"):
        raise InputError(f"model must be 'sam2' or '3am', got {model!r}")
    extra = {k: predictor_options.pop(k) for k in ("progress", "memory_policy", "motion_detector")
             if k in predictor_options}
    if model == "sam2" and "motion_detector" in extra:
        raise InputError("motion_detector is a 3AM option (model='3am')")
    vcfg = video_predictor_config(predictor_options.pop("config", None), **predictor_options)
    if model == "sam2":
        from threeam.predictor.video_predictor import VideoPredictor

        net = build_sam2_model(preset or "sam2.1_hiera_l", checkpoint, device, random_weights, seed, video_config=vcfg)
        return VideoPredictor(net, vcfg, **extra)
    from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor

    net = build_three_am_model(preset or "3am_hiera_l", checkpoint, device, random_weights, seed)
    return ThreeAMVideoPredictor(net, vcfg, **extra)


def build_eval_predictor(ctx: Any, model: str):
    """A predictor for the evaluation runner's methods from its `EvalContext`.

    ``model="sam2"`` wraps the context's shared SAM 2 model (``ctx.sam2_model()``, built once per
    run). ``model="3am"``: a 3AM checkpoint in ``ctx.extra["3am_checkpoint"]``, the shipped weights of
    ``ctx.extra["3am_preset"]`` (``3am_tiny``), or (only with
    ``ctx.random_weights``) random weights from ``ctx.seed`` for ``ctx.extra["3am_preset"]`` or the
    3AM configuration of the SAM 2 preset (:func:`three_am_config_from_sam2`); by the random-weights
    rule its SAM 2 part then equals the ``sam2`` method's model, so its scores equal SAM 2's.
    """
    from threeam.predictor.three_am_predictor import ThreeAMVideoPredictor
    from threeam.predictor.video_predictor import VideoPredictor

    vcfg = video_predictor_config()
    if model == "sam2":
        return VideoPredictor(ctx.sam2_model(), vcfg, progress=False)
    if model != "3am":
        raise InputError(f"model must be 'sam2' or '3am', got {model!r}")
    ckpt = ctx.extra.get("3am_checkpoint")
    if ckpt is not None:
        from threeam.train.export import is_training_checkpoint, load_for_eval

        # a training run / checkpoint folder of the 3am task is read directly (no conversion)
        net = load_for_eval(ckpt, ctx.device, task="3am") if is_training_checkpoint(ckpt) else \
            build_three_am_model(checkpoint=ckpt, device=ctx.device)
    else:
        from threeam.weights import shipped_weights

        preset = ctx.extra.get("3am_preset") or ctx.model_preset
        if not ctx.random_weights and shipped_weights("3am", preset) is None:
            raise InputError("3AM needs its weights: pass a 3AM checkpoint folder or hub id (--3am-checkpoint), "
                             "a 3AM preset with shipped weights (--3am-preset 3am_tiny_wide or 3am_tiny) or --random-weights for a "
                             "smoke test")
        net = build_three_am_model(preset, device=ctx.device, random_weights=ctx.random_weights, seed=ctx.seed)
    return ThreeAMVideoPredictor(net, vcfg, progress=False)
