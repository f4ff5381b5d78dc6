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


from threeam.errors import InputError

__all__ = ["EvalContext", "MethodSpec", "BUILTIN_METHODS", "METHODS", "register_method", "resolve_methods"]


@dataclass
class EvalContext:
    """What method factories get.

    Attributes:
        model_preset: SAM 2 preset name (e.g. ``sam2.1_hiera_t``) or a `SAM2Config`.
        checkpoint: SAM 2 checkpoint (path or hub id); None only with ``random_weights`` or a preset
            with shipped weights (`threeam.weights`).
        device: ``cpu`` or ``cuda``.
        random_weights: build with deterministic random weights (the builder's one rule,
            `threeam.predictor.build.random_init_`), for tests and demos; no checkpoint is read.
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
        """The SAM 2 model (built once through `threeam.predictor.build.build_sam2_model`, shared
        by the SAM 2 based methods; random weights follow the one rule, so the 3AM methods' random
        SAM 2 part equals it)."""
        if self._model is None:
            from threeam.predictor.build import build_sam2_model, video_predictor_config

            from threeam.weights import shipped_weights

            if self.checkpoint is None and not self.random_weights and shipped_weights("sam2", self.model_preset) is None:
                raise InputError("no SAM 2 checkpoint given: pass --checkpoint PATH_OR_HUB_ID, a preset with shipped "
                                 "weights (--preset sam2.1_debug_256) or --random-weights for a smoke test")
            from threeam.train.export import is_training_checkpoint, load_for_eval

            if not self.random_weights and is_training_checkpoint(self.checkpoint):  # a `threeam train` run
                self._model = load_for_eval(self.checkpoint, self.device, video_config=video_predictor_config(),
                                            task="sam2")
                return self._model
            self._model = build_sam2_model(self.model_preset, None if self.random_weights else self.checkpoint,
                                           self.device, self.random_weights, self.seed,
                                           video_config=video_predictor_config())
        return self._model

    def sam2_predictor(self):
        """A plain SAM 2 `VideoPredictor` (official video-predictor defaults) on :meth:`sam2_model`."""
        from threeam.predictor.build import build_eval_predictor

        return build_eval_predictor(self, "sam2")


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


def _three_am(ctx: EvalContext):
    import threeam.predictor as predictor_pkg

    return predictor_pkg.build_3am_predictor(ctx)  # looked up per call (tests patch it)


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
    MethodSpec("3am", _three_am, "3AM: SAM 2 + MUSt3R features (Feature Merger)"),
    MethodSpec("3am+sam2long", _with_policy(_three_am, "sam2long"), "SAM2Long memory tree on 3AM"),
    MethodSpec("3am+dam4sam", _with_policy(_three_am, "dam4sam"), "DAM4SAM memory on 3AM"),
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
