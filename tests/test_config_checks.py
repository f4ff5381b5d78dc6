"""`threeam.config_checks`: the field checks of the config dataclasses, one line per bad value."""
from __future__ import annotations

import dataclasses
import math

import pytest

from threeam.config_checks import check_heads, check_ints, check_numbers
from threeam.errors import InputError


@dataclasses.dataclass
class _Cfg:
    n: object = 2
    x: object = 0.5


def test_check_ints():
    check_ints(_Cfg(), {"n": 2}, "demo.")
    for bad in (1, True, 2.0, "2"):
        with pytest.raises(InputError, match=r"^demo\.n must be an integer >= 2, got "):
            check_ints(_Cfg(n=bad), {"n": 2}, "demo.")
    with pytest.raises(InputError, match="^lift option n must be"):
        check_ints(_Cfg(n=0), {"n": 1}, "lift option")


def test_check_numbers():
    check_numbers(_Cfg(x=1), {"x": (0.0, 1.0)})
    check_numbers(_Cfg(x=math.inf), {"x": (0.0, None)})  # unbounded side: infinity allowed
    for bad, rng, words in ((1.5, (0.0, 1.0), r"in \[0, 1\]"), (-1, (0.0, None), ">= 0"), (math.nan, (0.0, None), ">= 0"),
                            (False, (None, 3.0), "<= 3"), ("0.5", (0.0, 1.0), r"in \[0, 1\]")):
        with pytest.raises(InputError, match=rf"^x must be a number {words}, got "):
            check_numbers(_Cfg(x=bad), {"x": rng})


def test_check_heads_and_the_configs_that_use_it():
    check_heads("width", 32, 2)
    for dim, heads in ((30, 2), (24, 4), (32, 0)):
        with pytest.raises(InputError, match=f"width {dim} must split into {heads} heads"):
            check_heads("width", dim, heads)
    from threeam.models.merger import FeatureMergerConfig
    from threeam.models.must3r.config import Must3rDecoderConfig, Must3rEncoderConfig

    with pytest.raises(InputError, match="encoder embed_dim 40 must split into 4 heads"):
        Must3rEncoderConfig(embed_dim=40, num_heads=4)
    with pytest.raises(InputError, match="decoder embed_dim 40 must split into 4 heads"):
        Must3rDecoderConfig(embed_dim=40, num_heads=4)
    with pytest.raises(InputError, match="FeatureMergerConfig.width 30 must split"):
        FeatureMergerConfig(width=30, num_heads=2)
    with pytest.raises(InputError, match="FeatureMergerConfig.init_depth must be an integer >= 0"):
        FeatureMergerConfig(init_depth=-1)


def test_check_numbers_with_no_bounds_names_a_real_number():
    @dataclasses.dataclass
    class Open:
        x: float = math.nan

    with pytest.raises(InputError, match=r"^x must be a real number \(not NaN\), got nan$"):
        check_numbers(Open(), {"x": (None, None)})
    with pytest.raises(InputError, match="x must be a real number"):
        check_numbers(Open(x="3"), {"x": (None, None)})
    check_numbers(Open(x=math.inf), {"x": (None, None)})  # unbounded on both sides: infinity is fine
