"""Root-path checks, upload names, and that the web app never evaluates or unpickles client data."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import threeam.serve
from threeam.serve.security import AccessDenied, NotFoundError, list_videos, resolve_under_root, safe_filename


@pytest.fixture()
def tree(tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "clip.mp4").write_bytes(b"x")
    (root / "a" / "frames").mkdir()
    (root / "a" / "frames" / "0.png").write_bytes(b"x")
    out.mkdir()
    (out / "secret.mp4").write_bytes(b"x")
    os.symlink(out, root / "link_out")
    os.symlink(out / "secret.mp4", root / "a" / "secret.mp4")
    os.symlink(root / "a" / "b", root / "link_in")  # a link that stays inside is fine
    os.symlink(root / "loop", root / "loop")
    return root.resolve(), out


def test_paths_inside_the_root_resolve(tree):
    root, _ = tree
    assert resolve_under_root(root, "a/b/clip.mp4") == root / "a" / "b" / "clip.mp4"
    assert resolve_under_root(root, "a/./b/") == root / "a" / "b"
    assert resolve_under_root(root, "link_in/clip.mp4") == root / "a" / "b" / "clip.mp4"


@pytest.mark.parametrize("rel, words", [
    ("../out/secret.mp4", "'..'"),
    ("a/../../out", "'..'"),
    ("a\\..\\..\\out", "'..'"),
    ("/etc/passwd", "absolute"),
    ("\\\\server\\share", "absolute"),
    ("C:/x", "absolute"),
    ("link_out/secret.mp4", "outside the served root"),
    ("a/secret.mp4", "outside the served root"),
    ("loop", "cannot open"),
    ("a\x00b", "NUL"),
    ("", "non-empty"),
    ("x" * 2000, "longer than"),
    (None, "non-empty string"),
])
def test_escapes_are_refused_with_the_reason(tree, rel, words):
    root, _ = tree
    with pytest.raises(AccessDenied, match=None) as e:
        resolve_under_root(root, rel)
    assert words in str(e.value)


def test_a_missing_path_is_not_found(tree):
    root, _ = tree
    with pytest.raises(NotFoundError, match="no such file"):
        resolve_under_root(root, "a/none.mp4")


def test_listing_shows_videos_and_frames_folders_but_no_link_out(tree):
    root, _ = tree
    paths = {v["path"]: v["kind"] for v in list_videos(root)}
    assert paths == {"a/b/clip.mp4": "file", "a/frames": "frames", "link_in/clip.mp4": "file"}


@pytest.mark.parametrize("name, expected", [
    ("../../etc/passwd", "00003_passwd"),
    ("C:\\Users\\me\\frame 7.PNG", "00003_frame_7.png"),
    (".hidden.mp4", "00003_hidden.mp4"),
    ("", "00003_file"),
    ("a" * 300 + ".jpg", "00003_" + "a" * 80 + ".jpg"),
    ("x.mp4;rm -rf", "00003_x.mp4rm-rf"),
])
def test_upload_names_are_reduced_to_safe_base_names(name, expected):
    assert safe_filename(name, 3) == expected


def test_no_module_of_the_app_evaluates_or_unpickles_anything():
    banned_calls = {"eval", "exec", "compile", "__import__"}
    banned_attrs = {("pickle", "loads"), ("pickle", "load"), ("torch", "load"), ("yaml", "load"),
                    ("marshal", "loads"), ("os", "system"), ("subprocess", "run"), ("subprocess", "Popen")}
    banned_imports = {"pickle", "marshal", "shelve", "dill", "subprocess", "yaml"}
    folder = Path(threeam.serve.__file__).parent
    files = sorted(folder.glob("*.py")) + [folder.parent / "commands" / "serve.py"]
    assert len(files) >= 6
    for f in files:
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in banned_calls, f"{f.name}:{node.lineno} calls {node.func.id}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in banned_attrs, f"{f.name}:{node.lineno} uses {node.attr}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for n in names:
                    assert n.split(".")[0] not in banned_imports, f"{f.name}:{node.lineno} imports {n}"
    js = (folder / "static" / "app.js").read_text() + (folder / "static" / "rle.js").read_text()
    for word in ("eval(", "new Function", "innerHTML"):
        assert word not in js, f"the page uses {word}"
