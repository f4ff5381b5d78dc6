"""docs/tracking.md: nothing outside `threeam.models.sam2` calls a private (``_``-prefixed) SAM 2
method. The three the predictors need are public (the private names stay as aliases for code
written against the official SAM2Base)."""
from __future__ import annotations

import ast
from pathlib import Path

import threeam
from threeam.models.sam2.sam2_base import SAM2Base

SRC = Path(threeam.__file__).resolve().parent
PUBLIC = ("prepare_backbone_features", "encode_new_memory", "apply_non_overlapping_constraints")


def _private_methods() -> set[str]:
    tree = ast.parse((SRC / "models" / "sam2" / "sam2_base.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SAM2Base")
    return {n.name for n in cls.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("_") and not n.name.startswith("__")} | {"_" + p for p in PUBLIC}


def test_no_module_outside_models_sam2_calls_a_private_sam2_method():
    private = _private_methods()
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        if (SRC / "models" / "sam2") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in private:
                calls.append(f"{path.relative_to(SRC)}:{node.lineno} .{node.attr}")
    assert calls == []


def test_the_public_methods_and_their_official_aliases():
    for name in PUBLIC:
        assert callable(getattr(SAM2Base, name))
        assert getattr(SAM2Base, "_" + name) is getattr(SAM2Base, name)
