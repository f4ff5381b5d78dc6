"""The methods the benchmark can run: :class:`EvalContext`, :class:`MethodSpec` and the method table.

A method is a factory ``build(context) -> VideoPredictor``. The built-in ones are listed in one
place, :data:`BUILTIN_METHODS`:

* ``sam2`` - the SAM 2 video predictor with the official video-predictor defaults;
* ``sam2long``, ``dam4sam`` - those memory policies on SAM 2 (`threeam.eval.baselines`);
* ``3am`` - ``threeam.predictor.build_3am_predictor(context)``;
* ``3am+sam2long``, ``3am+dam4sam`` - the policies on 3AM (the paper's Table 7).

:data:`METHODS` is the live registry (the built-ins plus whatever :func:`register_method` adds).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from threeam.errors import InputError

__all__ = ["EvalContext", "MethodSpec", "BUILTIN_METHODS", "METHODS", "register_method", "resolve_methods"]


@dataclass
class EvalContext:
    """What method factories get.

    Attributes:
        model_preset: SAM 2 preset name (e.g. ``sam2.1_hiera_t``) or a `SAM2Config`.
        checkpoint: SAM 2 checkpoint (path or hub id); None only with ``random_weights``.
        device: ``cpu`` or ``cuda``.
        random_weights: build with deterministic random weights (``torch.manual_seed(seed)``),
            for tests and demos; no checkpoint is read.
        seed: seed of the random weights.
        extra: free-form options for other factories (e.g. a 3AM checkpoint).
    """

    model_preset: Any = "sam2.1_hiera_t"
    checkpoint: Any = None
    device: str = "cpu"
    random_weights: bool = False
    seed: int = 0
    extra: dict = field(default_factory=dict)
    _model: Any = field(default=None, repr=False)

    def sam2_model(self):
        """The SAM 2 model (built once, shared by the SAM 2 based methods)."""
        if self._model is None:
            from threeam.models.sam2.build import build_sam2
            from threeam.models.sam2.config import VideoPredictorConfig

            if self.checkpoint is None and not self.random_weights:
                raise InputError("no SAM 2 checkpoint given: pass --checkpoint PATH_OR_HUB_ID "
                                 "(or --random-weights for a smoke test)")
            if self.random_weights:
                torch.manual_seed(self.seed)
            self._model = build_sam2(self.model_preset, checkpoint=None if self.random_weights else self.checkpoint,
                                     device=self.device, video_config=VideoPredictorConfig())
        return self._model

    def sam2_predictor(self):
        """A plain SAM 2 `VideoPredictor` (official video-predictor defaults) on :meth:`sam2_model`."""
        from threeam.models.sam2.config import VideoPredictorConfig
        from threeam.predictor.video_predictor import VideoPredictor

        return VideoPredictor(self.sam2_model(), VideoPredictorConfig(), progress=False)


@dataclass(frozen=True)
class MethodSpec:
    """A method: ``build(context)`` returns a `VideoPredictor` (or subclass)."""

    name: str
    build: Callable[[EvalContext], Any]
    description: str = ""


# ----------------------------------------------------------------------------------------- factories
# Each factory only says which predictor to build; model building lives in threeam.predictor / models.

def _sam2(ctx: EvalContext):
    return ctx.sam2_predictor()


def _threeam(ctx: EvalContext):
    import threeam.predictor as predictor_pkg

    builder = getattr(predictor_pkg, "build_3am_predictor", None)  # looked up per call (tests patch it)
    if builder is None:
        raise InputError("the 3AM model is not available in this build: threeam.predictor offers no "
                         "build_3am_predictor yet (3AM also needs trained Feature Merger weights); "
                         "run the SAM 2 based methods (sam2, sam2long, dam4sam) meanwhile")
    return builder(ctx)


def _with_policy(base: Callable[[EvalContext], Any], policy: str) -> Callable[[EvalContext], Any]:
    """``base``'s predictor with a memory policy attached (preset: ``ctx.extra[f"{policy}_preset"]``)."""
    def build(ctx: EvalContext):
        from threeam.eval.baselines import DAM4SAMPolicy, SAM2LongPolicy, attach_policy

        preset = ctx.extra.get(f"{policy}_preset", "default")
        pol = SAM2LongPolicy(preset) if policy == "sam2long" else DAM4SAMPolicy(preset)
        return attach_policy(base(ctx), pol)
    return build


BUILTIN_METHODS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("sam2", _sam2, "SAM 2 video predictor (official defaults)"),
    MethodSpec("sam2long", _with_policy(_sam2, "sam2long"), "SAM2Long memory tree on SAM 2 (3 pathways)"),
    MethodSpec("dam4sam", _with_policy(_sam2, "dam4sam"), "DAM4SAM RAM + DRM memory on SAM 2"),
    MethodSpec("3am", _threeam, "3AM: SAM 2 + MUSt3R features (Feature Merger)"),
    MethodSpec("3am+sam2long", _with_policy(_threeam, "sam2long"), "SAM2Long memory tree on 3AM"),
    MethodSpec("3am+dam4sam", _with_policy(_threeam, "dam4sam"), "DAM4SAM memory on 3AM"),
)}
"""The built-in methods, in table order."""

METHODS: dict[str, MethodSpec] = dict(BUILTIN_METHODS)
"""Every method the runner can run: :data:`BUILTIN_METHODS` plus :func:`register_method` additions."""

_NAME = re.compile(r"[a-z0-9][a-z0-9_+.\-]*")


def register_method(name: str, build: Callable[[EvalContext], Any], description: str = "",
                    replace: bool = False) -> MethodSpec:
    """Add a method factory under `name` (lower case; ``replace=True`` to redefine one)."""
    if not _NAME.fullmatch(name or ""):
        raise InputError(f"method names are lower-case letters, digits and _+.-, got {name!r}")
    if name in METHODS and not replace:
        raise InputError(f"method {name!r} is already registered (pass replace=True)")
    spec = MethodSpec(name, build, description)
    METHODS[name] = spec
    return spec


def resolve_methods(names: str | Sequence[str]) -> list[str]:
    """Parse ``"sam2,sam2long"`` (or a list); unknown or repeated names are an `InputError`."""
    items = [n.strip().lower() for n in (names.split(",") if isinstance(names, str) else names)]
    items = [n for n in items if n]
    if not items:
        raise InputError(f"no methods given; registered methods: {', '.join(METHODS)}")
    unknown = [n for n in items if n not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; registered methods: {', '.join(METHODS)}")
    if len(set(items)) != len(items):
        raise InputError(f"a method is listed twice in {items}")
    return items
