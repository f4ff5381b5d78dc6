"""Property-based bad input (hypothesis): prompts files and training config overrides either parse
to exactly what was written or fail with one InputError line, never another exception; the same
through the CLI (exit 2, one line, nothing written)."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from threeam.cli import app
from threeam.errors import InputError
from threeam.predictor.track_job import MAX_OBJ_ID, MIN_OBJ_ID, VideoInfo, check_prompts, prompts_from_json
from threeam.train.config import apply_overrides, config_to_json, override_keys
from threeam.train.recipes import get_train_config

INFO = VideoInfo(num_frames=5, height=40, width=60)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=True),
                    st.text(max_size=5))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4),
                                                                                            inner, max_size=3),
                      max_leaves=12)
keys = st.sampled_from(["obj_id", "frame", "points", "labels", "box", "mask", "extra"])
prompt_items = st.dictionaries(keys, values, max_size=5)
documents = st.one_of(values, st.lists(prompt_items, max_size=4))

# derandomize: the same examples every run, so CI is reproducible (a failing example found once is kept
# as an explicit regression test below)
settings_ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _parse(doc):
    """prompts_from_json + check_prompts on ``doc`` written to a temporary prompts file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prompts.json"
        path.write_text(json.dumps(doc))
        prompts = prompts_from_json(path)
        check_prompts(prompts, INFO)
        return prompts


@settings_
@given(documents)
def test_any_prompts_document_parses_or_is_one_input_error(doc):
    try:
        prompts = _parse(doc)
    except InputError as e:
        assert "\n" not in str(e) and str(e)
        return
    # accepted: every value is exactly what the file holds (no truncation, no coercion)
    for item, p in zip(doc, prompts):
        assert type(item["obj_id"]) is int and p.obj_id == item["obj_id"]
        assert MIN_OBJ_ID <= p.obj_id <= MAX_OBJ_ID
        assert type(item.get("frame", 0)) is int and p.frame == item.get("frame", 0) < INFO.num_frames
        if p.box is not None:
            x0, y0, x1, y1 = p.box
            assert x1 > x0 and y1 > y0 and all(math.isfinite(v) for v in p.box)


coords = st.floats(-10, 80, allow_nan=False)
valid_like = st.fixed_dictionaries({
    "obj_id": st.one_of(st.integers(-3, 300), st.floats(0, 5), st.text(max_size=2)),
    "frame": st.one_of(st.integers(-2, 7), st.floats(0, 3)),
    "points": st.lists(st.lists(coords, min_size=2, max_size=2), min_size=1, max_size=3),
})


@settings_
@given(st.lists(valid_like, min_size=1, max_size=3))
def test_near_valid_prompts_keep_their_exact_values(doc):
    try:
        prompts = _parse(doc)
    except InputError as e:
        assert "\n" not in str(e)
        return
    for item, p in zip(doc, prompts):
        assert type(item["obj_id"]) is int and type(item["frame"]) is int  # floats are never truncated
        assert (p.obj_id, p.frame) == (item["obj_id"], item["frame"])
        assert p.points == [[float(x), float(y)] for x, y in item["points"]]
        # the prompt-bounds rule (docs/tracking.md): no negative coordinate, at most one frame size past
        # the right / bottom edge; checked on the exact values given (a tiny negative is refused too)
        assert all(0 <= x <= 2 * INFO.width and 0 <= y <= 2 * INFO.height for x, y in p.points)


BASE = get_train_config("toy-engine")
KEYS = override_keys(BASE)


@settings_
@given(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), st.text(max_size=12))
def test_any_config_override_applies_or_is_one_input_error(key, value):
    try:
        cfg = apply_overrides(BASE, [f"{key}={value}"])
    except InputError as e:
        assert str(e)
        return
    config_to_json(cfg)  # an accepted override gives a config that still serialises


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.sampled_from(KEYS), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8))
def test_train_cli_rejects_bad_overrides_in_one_line(key, value):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        res = CliRunner().invoke(app, ["train", "--preset", "toy-engine", "--out", str(out), "--print-config",
                                       f"{key}={value}"])
        assert not out.exists()
    assert "Traceback" not in res.output
    if res.exit_code == 0:
        json.loads(res.output)  # the resolved config
    else:
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.output


def test_a_tiny_negative_coordinate_is_refused_not_rounded_to_zero():
    # found by hypothesis: -2.2e-311 became -0.0 in float32 and passed the "no negative coordinate" rule
    with pytest.raises(InputError, match="outside the frame"):
        _parse([{"obj_id": 1, "frame": 0, "points": [[0.0, -2.225073858507e-311]]}])
