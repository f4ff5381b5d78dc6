"""The one preset idiom (`threeam.presets`): every family exposes ``<FAMILY>_PRESETS``,
``get_<family>_config(name, /, **overrides)`` and ``<family>_presets()``, and answers alike."""
from __future__ import annotations

import dataclasses
import importlib

import pytest

from threeam.errors import InputError
from threeam.presets import lookup, resolve_name, with_overrides

FAMILIES = [  # module, family, label in messages
    ("threeam.models.sam2.config", "sam2", "SAM 2"),
    ("threeam.models.must3r.config", "must3r", "MUSt3R"),
    ("threeam.models.merger", "merger", "merger"),
    ("threeam.models.three_am", "three_am", "3AM"),
    ("threeam.data.synth", "synth", "synthetic"),
    ("threeam.train.recipes", "train", "training"),
    ("threeam.lift3d.config", "lift", "lift"),
    ("threeam.predictor.mask_generator", "mask_generator", "mask generator"),
    ("threeam.eval.instance_ap", "ap", "AP"),
    ("threeam.eval.baselines.sam2long", "sam2long", "SAM2Long"),
    ("threeam.eval.baselines.dam4sam", "dam4sam", "DAM4SAM"),
]


@pytest.mark.parametrize("module,family,label", FAMILIES, ids=[f[1] for f in FAMILIES])
def test_every_family_follows_the_idiom(module, family, label):
    mod = importlib.import_module(module)
    presets = getattr(mod, f"{family.upper()}_PRESETS")
    get = getattr(mod, f"get_{family}_config")
    names = getattr(mod, f"{family}_presets")()
    assert names == list(presets) and names
    assert (get.__name__, get.__module__) == (f"get_{family}_config", module)  # documented as the module's own
    for name in names:
        cfg = get(name)
        assert cfg == presets[name] and cfg is not presets[name]  # a fresh copy: the table is never handed out
    with pytest.raises(InputError, match=f"unknown {label} preset 'no-such-preset'; valid presets: ") as err:
        get("no-such-preset")
    assert all(n in str(err.value) for n in names)
    with pytest.raises(InputError, match="no_such_field"):
        get(names[0], no_such_field=1)


def test_overrides_are_checked_by_the_config():
    from threeam.data.synth import get_synth_config

    assert get_synth_config("tiny", n_frames=5).n_frames == 5
    with pytest.raises(InputError, match="n_frames"):
        get_synth_config("tiny", n_frames=0)  # __post_init__ runs on the replaced value


def test_name_is_positional_only_so_a_name_field_can_be_overridden():
    from threeam.train.recipes import get_train_config

    assert get_train_config("toy-engine", name="mine").name == "mine"


def test_helpers():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        a: int = 1
        b: tuple = ()

    table = {"one": Cfg(), "two": Cfg(a=2)}
    assert resolve_name(table, " TWO", "demo", normalize=lambda s: s.strip().lower()) == "two"
    assert resolve_name(table, "2", "demo", aliases={"2": "two"}) == "two"
    with pytest.raises(InputError, match=r"unknown demo preset 'x'; valid presets: one, two \(aliases: 2\)"):
        resolve_name(table, "x", "demo", aliases={"2": "two"})
    with pytest.raises(InputError, match="preset name must be a string"):
        resolve_name(table, 3, "demo")
    assert lookup(table, "two", "demo", {"b": (1,)}) == Cfg(a=2, b=(1,))
    with pytest.raises(InputError, match="unknown things option"):
        with_overrides(Cfg(), {"c": 1}, what="things")
