"""Typed configurations of the MUSt3R encoder and decoder, named presets, and a safe parser for the
constructor strings stored in official checkpoints (``ckpt["args"].encoder`` / ``.decoder``).

The official loader ``eval``s those strings; here they are parsed with :mod:`ast` and only literal
values (numbers, strings, tuples, booleans, ``None``) and dotted names are read. Nothing in them is
ever executed.

Presets (all with the ViT-L/16 encoder and the ViT-B decoder):

========================== ========= ============ ===============
name                       img_size  feedback     memory_mode
========================== ========= ============ ===============
``must3r_512``             512       single_mlp   kv
``must3r_512_nofeedback``  512       none         kv
``must3r_224``             224       single_mlp   kv
``must3r_224_nofeedback``  224       none         kv
========================== ========= ============ ===============

``img_size`` never changes a weight shape; it only sets the RoPE adaptive frequency when a model is
run at a resolution other than the one it was trained at (``RoPE100_<train>:<run>``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from threeam.config_checks import check_heads
from threeam.errors import CheckpointError, InputError
from threeam.models.must3r.rope import parse_rope_name
from threeam.presets import preset_functions

__all__ = [
    "MEMORY_MODES",
    "FEEDBACK_TYPES",
    "Must3rEncoderConfig",
    "Must3rDecoderConfig",
    "Must3rConfig",
    "MUST3R_PRESETS",
    "get_must3r_config",
    "must3r_presets",
    "parse_constructor_string",
    "from_checkpoint_args",
]

MEMORY_MODES = ("kv", "norm_y", "raw")
FEEDBACK_TYPES = (None, "single_mlp", "single_linear")
POINTMAP_ACTIVATIONS = ("norm_exp", "linear")


@dataclass(frozen=True)
class _VitConfig:
    """What the encoder and the decoder share: input size (for the RoPE frequency), patch size,
    width, depth, heads, MLP ratio and the RoPE name. Defaults are the ViT-L encoder's."""

    img_size: tuple[int, int] = (512, 512)
    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    pos_embed: str = "RoPE100"

    _PART = "ViT"

    def __post_init__(self):
        check_heads(f"{self._PART} embed_dim", self.embed_dim, self.num_heads)
        parse_rope_name(self.pos_embed)


@dataclass(frozen=True)
class Must3rEncoderConfig(_VitConfig):
    """ViT encoder (``Dust3rEncoder``): patch embedding, ``depth`` pre-norm blocks with 2-D RoPE
    (ViT-L: 1024 wide, 24 blocks, 16 heads)."""

    _PART = "encoder"


@dataclass(frozen=True)
class Must3rDecoderConfig(_VitConfig):
    """ViT decoder shared by all views (``MUSt3R``, ViT-B: 768 wide, 12 blocks, 12 heads), with
    per-layer memory and a linear head; `enc_embed_dim` is the encoder's width."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    enc_embed_dim: int = 1024
    output_dim: int = 1792
    feedback_type: Optional[str] = "single_mlp"
    memory_mode: str = "kv"
    pointmaps_activation: str = "norm_exp"

    _PART = "decoder"

    def __post_init__(self):
        super().__post_init__()
        if self.memory_mode not in MEMORY_MODES:
            raise InputError(f"memory_mode {self.memory_mode!r} is not one of {MEMORY_MODES}")
        if self.feedback_type not in FEEDBACK_TYPES:
            raise InputError(f"feedback_type {self.feedback_type!r} is not one of {FEEDBACK_TYPES}")
        if self.pointmaps_activation not in POINTMAP_ACTIVATIONS:
            raise InputError(f"pointmaps_activation {self.pointmaps_activation!r} is not one of {POINTMAP_ACTIVATIONS}")
        if self.output_dim % (self.patch_size ** 2):
            raise InputError(f"output_dim {self.output_dim} must be a multiple of patch_size**2")

    @property
    def out_channels(self) -> int:
        """Channels per pixel of the head output (7: pts_ref xyz, pts_self xyz, conf logit)."""
        return self.output_dim // self.patch_size ** 2


@dataclass(frozen=True)
class Must3rConfig:
    """Encoder + decoder configuration of a full MUSt3R model."""

    encoder: Must3rEncoderConfig = field(default_factory=Must3rEncoderConfig)
    decoder: Must3rDecoderConfig = field(default_factory=Must3rDecoderConfig)

    def with_memory_mode(self, memory_mode: str) -> "Must3rConfig":
        return dataclasses.replace(self, decoder=dataclasses.replace(self.decoder, memory_mode=memory_mode))


def _preset(img: int, feedback: Optional[str]) -> Must3rConfig:
    return Must3rConfig(
        Must3rEncoderConfig(img_size=(img, img)),
        Must3rDecoderConfig(img_size=(img, img), feedback_type=feedback),
    )


MUST3R_PRESETS: dict[str, Must3rConfig] = {
    "must3r_512": _preset(512, "single_mlp"),
    "must3r_512_nofeedback": _preset(512, None),
    "must3r_224": _preset(224, "single_mlp"),
    "must3r_224_nofeedback": _preset(224, None),
}

_ALIASES = {"must3r_512_cvpr": "must3r_512", "must3r_224_cvpr": "must3r_224"}


def _spelling(name: str) -> str:
    return name.strip().lower().replace("-", "_")


# names are case-insensitive, ``-`` and ``_`` interchangeable; the checkpoint names (``MUSt3R_512_cvpr``) work
get_must3r_config, must3r_presets = preset_functions(MUST3R_PRESETS, "must3r", "MUSt3R", aliases=_ALIASES,
                                                     normalize=_spelling)


# --------------------------------------------------------------------------- safe parsing
_ENCODER_CLASSES = {"Dust3rEncoder"}
_DECODER_CLASSES = {"MUSt3R", "CausalMUSt3R"}


class _Opaque(str):
    """A value that is not a literal (e.g. ``partial(nn.LayerNorm, eps=1e-6)``), kept as source text."""


def _node_value(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)  # literals only; never executes code
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, (ast.Name, ast.Attribute)):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
            return _Opaque(".".join(reversed(parts)))
    return _Opaque(ast.unparse(node))


def parse_constructor_string(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``"ClassName(a=1, b='x', c=(2, 3))"`` into ``("ClassName", {...})`` without evaluating it.

    Literal values are returned as Python values; anything else (names, calls) as its source text.
    Raises :class:`CheckpointError` for anything that is not a single call with keyword arguments.
    """
    if not isinstance(text, str):
        raise CheckpointError(f"expected a constructor string, got {type(text).__name__}")
    if len(text) > 20000:
        raise CheckpointError("constructor string is too long to be a model description")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise CheckpointError(f"cannot parse model constructor string {text!r}: {exc.msg}") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, (ast.Name, ast.Attribute)):
        raise CheckpointError(f"model constructor string {text!r} is not of the form ClassName(key=value, ...)")
    name = _node_value(call.func)
    if call.args:
        raise CheckpointError(f"model constructor string {text!r} has positional arguments; only key=value is supported")
    kwargs: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise CheckpointError(f"model constructor string {text!r} uses **kwargs, which is not supported")
        kwargs[kw.arg] = _node_value(kw.value)
    return str(name).rsplit(".", 1)[-1], kwargs


def _as_pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise CheckpointError(f"{what} must be an int or a pair of ints, got {value!r}")


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{what} must be an int, got {value!r}")
    return value


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"{what} must be a number, got {value!r}")
    return float(value)


def _activation_name(value: Any) -> str:
    text = str(value).lower()
    if "linear" in text:
        return "linear"
    if "norm_exp" in text or "normexp" in text:
        return "norm_exp"
    raise CheckpointError(f"unknown pointmaps_activation {value!r}; expected NORM_EXP or LINEAR")


def _get(args: Any, key: str) -> Any:
    if isinstance(args, Mapping):
        return args.get(key)
    if isinstance(args, argparse.Namespace):
        return getattr(args, key, None)
    raise CheckpointError(f"checkpoint 'args' must be an argparse.Namespace or a dict, got {type(args).__name__}")


def _rope_for_size(pos_embed: str, trained: int, img_size: Optional[int]) -> str:
    """The RoPE name for running a model trained at ``trained`` at ``img_size`` (``RoPE100_A:B``)."""
    if img_size is None or img_size == trained and "_" not in pos_embed:
        return pos_embed
    freq, _ = parse_rope_name(pos_embed)
    base = pos_embed.split("_", 1)[1].split(":")[0] if "_" in pos_embed else str(trained)
    if int(float(base)) == img_size:
        return pos_embed.split("_", 1)[0]
    return f"{pos_embed.split('_', 1)[0]}_{int(float(base))}:{img_size}"


_ENC_IGNORED = {"norm_layer", "patch_embed"}
_DEC_IGNORED = {"norm_layer", "act_layer", "landscape_only", "block_type", "protected_imgs", "mem_dropout",
                "dropout_mode", "use_xformers_mask", "use_mem_mask"}


def _vit_args(part: str, kwargs: Mapping[str, Any], out: dict[str, Any], ignored: set[str],
              ints: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read the `_VitConfig` keywords of one constructor string into `out` (checked, as config
    values); return the keywords left (neither shared nor in `ignored`)."""
    rest = {}
    for key, value in kwargs.items():
        if key == "img_size":
            out[key] = _as_pair(value, f"{part} img_size")
        elif key in ("patch_size", "embed_dim", "depth", "num_heads") + ints:
            out[key] = _as_int(value, f"{part} {key}")
        elif key == "mlp_ratio":
            out[key] = _as_float(value, f"{part} mlp_ratio")
        elif key == "pos_embed":
            if not isinstance(value, str) or isinstance(value, _Opaque):
                raise CheckpointError(f"{part} pos_embed must be a string, got {value!r}")
            parse_rope_name(value)
            out[key] = value
        elif key not in ignored:
            rest[key] = value
    return rest


def from_checkpoint_args(args: Any, *, img_size: Optional[int] = None,
                         memory_mode: Optional[str] = None) -> Must3rConfig:
    """Build a :class:`Must3rConfig` from an official checkpoint's ``args``.

    ``args`` is the ``argparse.Namespace`` (or a dict) with ``encoder`` and ``decoder`` constructor
    strings such as ``"Dust3rEncoder(img_size=(512, 512), pos_embed='RoPE100')"``. The strings are
    parsed, never evaluated. ``img_size`` runs the model at another square training size by setting
    the RoPE adaptive frequency (``RoPE100_<trained>:<img_size>``), like the official loader;
    ``memory_mode`` overrides the stored memory mode.
    """
    enc_text = _get(args, "encoder") or "Dust3rEncoder()"
    dec_text = _get(args, "decoder") or "CausalMUSt3R()"
    enc_name, enc_kw = parse_constructor_string(enc_text)
    dec_name, dec_kw = parse_constructor_string(dec_text)
    if enc_name not in _ENCODER_CLASSES:
        raise CheckpointError(f"unsupported encoder class {enc_name!r} in checkpoint args; expected {sorted(_ENCODER_CLASSES)}")
    if dec_name not in _DECODER_CLASSES:
        raise CheckpointError(f"unsupported decoder class {dec_name!r} in checkpoint args; expected {sorted(_DECODER_CLASSES)}")

    enc: dict[str, Any] = {"img_size": (224, 224)}  # official constructor default
    for key, value in _vit_args("encoder", enc_kw, enc, _ENC_IGNORED).items():
        warnings.warn(f"ignoring unknown MUSt3R encoder argument {key}={value!r}", stacklevel=2)

    dec: dict[str, Any] = {"img_size": (224, 224), "memory_mode": "norm_y", "feedback_type": None}  # official defaults
    for key, value in _vit_args("decoder", dec_kw, dec, _DEC_IGNORED, ints=("enc_embed_dim", "output_dim")).items():
        if key == "feedback_type":
            if value in ("", False):
                value = None
            if value not in FEEDBACK_TYPES or isinstance(value, _Opaque):
                raise CheckpointError(f"unknown feedback_type {value!r}; expected one of {FEEDBACK_TYPES}")
            dec[key] = value
        elif key == "memory_mode":
            if value not in MEMORY_MODES or isinstance(value, _Opaque):
                raise CheckpointError(f"unknown memory_mode {value!r}; expected one of {MEMORY_MODES}")
            dec[key] = value
        elif key == "pointmaps_activation":
            dec[key] = _activation_name(value)
        elif key == "head":
            if value != "Linear":
                raise CheckpointError(f"unsupported decoder head {value!r}; only 'Linear' exists")
        else:
            warnings.warn(f"ignoring unknown MUSt3R decoder argument {key}={value!r}", stacklevel=2)

    if img_size is not None:
        if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0 or img_size % 16:
            raise InputError(f"img_size must be a positive multiple of 16, got {img_size!r}")
        for part in (enc, dec):
            trained = part.get("img_size", (224, 224))
            part["pos_embed"] = _rope_for_size(part.get("pos_embed", "RoPE100"), trained[0], img_size)
            part["img_size"] = (img_size, img_size)
    if memory_mode is not None:
        dec["memory_mode"] = memory_mode
    try:
        return Must3rConfig(Must3rEncoderConfig(**enc), Must3rDecoderConfig(**dec))
    except InputError as exc:
        raise CheckpointError(f"checkpoint args describe an invalid model: {exc}") from None
