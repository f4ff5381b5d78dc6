"""Named presets of typed dataclass configs: the one idiom every config family follows.

A family's config module exposes three names (``<family>`` as in ``sam2``, ``must3r``, ``merger``,
``three_am``, ``synth``, ``train``, ``lift``, ``mask_generator``, ``ap``, ``sam2long``, ``dam4sam``),
the two functions made by :func:`preset_functions`::

    LIFT_PRESETS: dict[str, LiftConfig] = {"paper": LiftConfig(...), ...}
    get_lift_config, lift_presets = preset_functions(LIFT_PRESETS, "lift", default="paper")


* ``<FAMILY>_PRESETS: dict[str, Config]`` - the named configs, in the order they are listed to users;
  module constants that are never handed out (so never mutated);
* ``get_<family>_config(name, /, **overrides) -> Config`` - a fresh deep copy of one preset, with
  the given fields replaced (``dataclasses.replace``, so ``__post_init__`` checks the new values;
  ``name`` is positional-only so that a config with a ``name`` field can still override it);
* ``<family>_presets() -> list[str]`` - the names.

Both go through :func:`lookup`, so every family answers an unknown name with the same one-line
`InputError` (``unknown SAM 2 preset 'x'; valid presets: a, b, c``) and an unknown override with
the config class's valid field names. A family whose names have other spellings (SAM 2's
``sam2.1_hiera_base_plus``, file names, hub ids) passes ``aliases`` and a ``normalize`` function.
See docs/DEVELOPING.md ("Presets").
"""
from __future__ import annotations

import copy
import dataclasses
import sys
from typing import Any, Callable, Mapping, Optional, TypeVar

from threeam.errors import InputError

__all__ = ["preset_functions", "lookup", "resolve_name", "with_overrides"]

C = TypeVar("C")


def resolve_name(presets: Mapping[str, Any], name: Any, family: str, *, aliases: Optional[Mapping[str, str]] = None,
                 normalize: Optional[Callable[[str], str]] = None) -> str:
    """The preset key that `name` stands for (after ``normalize`` and ``aliases``).

    Raises:
        InputError: `name` is not a string, or names no preset; the message lists the presets
            (and aliases).
    """
    if not isinstance(name, str):
        raise InputError(f"a {family} preset name must be a string, got {type(name).__name__}")
    key = normalize(name) if normalize is not None else name
    key = (aliases or {}).get(key, key)
    if key in presets:
        return key
    text = f"unknown {family} preset {name!r}; valid presets: {', '.join(presets)}"
    if aliases:
        text += f" (aliases: {', '.join(aliases)})"
    raise InputError(text)


def with_overrides(config: C, overrides: Optional[Mapping[str, Any]] = None, *, what: Optional[str] = None) -> C:
    """A deep copy of the dataclass `config` with the fields in `overrides` replaced.

    Args:
        what: how the message names the options (``"lift"``: "unknown lift option(s) ..."); default
            the config's class name.
    Raises:
        InputError: a name in `overrides` is not a field of the config (the message lists the fields);
            the config's own checks reject a value.
    """
    overrides = dict(overrides or {})
    names = [f.name for f in dataclasses.fields(config) if f.init]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InputError(f"unknown {what or type(config).__name__} option(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(names)}")
    fresh = copy.deepcopy(config)
    return dataclasses.replace(fresh, **overrides) if overrides else fresh


def lookup(presets: Mapping[str, C], name: Any, family: str, overrides: Optional[Mapping[str, Any]] = None, *,
           aliases: Optional[Mapping[str, str]] = None, normalize: Optional[Callable[[str], str]] = None,
           what: Optional[str] = None) -> C:
    """``get_<family>_config``'s body: a fresh copy of ``presets[name]`` with `overrides` applied
    (:func:`resolve_name`, then :func:`with_overrides`)."""
    key = resolve_name(presets, name, family, aliases=aliases, normalize=normalize)
    return with_overrides(presets[key], overrides, what=what)


def preset_functions(presets: Mapping[str, C], family: str, label: Optional[str] = None, *,
                     default: Optional[str] = None, aliases: Optional[Mapping[str, str]] = None,
                     normalize: Optional[Callable[[str], str]] = None,
                     what: Optional[str] = None) -> tuple[Callable[..., C], Callable[[], list[str]]]:
    """``(get_<family>_config, <family>_presets)`` for the table `presets`.

    Args:
        family: the name part of the two functions (``"lift"`` -> ``get_lift_config``, ``lift_presets``).
        label: how messages name the family (``"SAM 2"``, ``"training"``); default `family`.
        default: the preset ``get_<family>_config()`` returns without a name (None: a name is needed).
        aliases, normalize: other spellings of the names (:func:`resolve_name`).
        what: how messages name the options (:func:`with_overrides`).
    Returns:
        ``get(name=default, /, **overrides) -> Config`` (:func:`lookup`) and ``names() -> list[str]``,
        named and documented as the family's own functions of the calling module.
    """
    label = label or family

    def get(name: str = default, /, **overrides: Any) -> C:
        return lookup(presets, name, label, overrides, aliases=aliases, normalize=normalize, what=what)

    def names() -> list[str]:
        return list(presets)

    module = sys._getframe(1).f_globals.get("__name__", __name__)
    kind = type(next(iter(presets.values()))).__name__
    for func, name, doc in (
            (get, f"get_{family}_config", f"A fresh copy of the named {label} preset (a `{kind}`; "
                                          f"{', '.join(presets)}), with fields replaced by ``overrides``."),
            (names, f"{family}_presets", f"The {label} preset names: {', '.join(presets)}.")):
        func.__name__ = func.__qualname__ = name
        func.__module__ = module
        func.__doc__ = doc
    return get, names

