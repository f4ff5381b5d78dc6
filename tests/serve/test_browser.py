"""The page in a real headless Chromium (Debian's ``chromium``, driven by Playwright), end to end.

The server runs on a free loopback port in a background thread. Its predictor is
`ColourRegionPredictor` (tests/serve/helpers.py): the real tiny SAM 2 with random weights does
every model call, but the masks handed back are the clicked colour's region, so the test can check
that the right mask reaches the right frame of the page (random weights give arbitrary masks).

Skipped, with the reason, when /usr/bin/chromium or the playwright package is missing (`.ci/run`
installs both). Screenshots of each step go to ``test-artifacts/serve/``.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest

from threeam.io.masks import read_rle_json
from threeam.serve.app import create_app
from threeam.serve.config import ServeConfig

from .helpers import (ColourRegionPredictor, ServerThread, T, disc_frames, square_frames, tiny_predictor, wait_until,
                      write_mp4)

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "serve"


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(served):
    root, _ = served
    predictor = ColourRegionPredictor(tiny_predictor(corrections_as_cond=True))  # as `threeam serve` builds it
    asgi = create_app(predictor, ServeConfig(root=root), model_name="sam2 tiny (test double)")
    with ServerThread(asgi) as srv:
        yield srv, asgi.state.manager


def _page(browser, url):
    page = browser.new_page(viewport={"width": 1180, "height": 740}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("#video-list option", state="attached")
    return page, errors


def _shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _open(page, path):
    page.select_option("#video-list", path)
    page.click("#open-btn")
    page.wait_for_function("(p) => window.threeam.session() && window.threeam.session().name === p", arg=path)
    page.wait_for_function("window.threeam.frameLoaded()")


def _click_video(page, x, y, shift=False):
    """Click the canvas at video pixel (x, y)."""
    box = page.locator("#canvas").bounding_box()
    info = page.evaluate("window.threeam.session()")
    cx = box["x"] + (x + 0.5) * box["width"] / info["width"]
    cy = box["y"] + (y + 0.5) * box["height"] / info["height"]
    if shift:
        page.keyboard.down("Shift")
    page.mouse.click(cx, cy)
    if shift:
        page.keyboard.up("Shift")


def _id_map(page, t):
    info = page.evaluate("window.threeam.session()")
    ids = page.evaluate("(t) => window.threeam.idMap(t)", t)
    return None if ids is None else np.array(ids, np.uint8).reshape(info["height"], info["width"])


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def _propagate(page, direction, count):
    page.click(f"button.prop[data-dir={direction}]")
    page.wait_for_function("(n) => document.body.dataset.propagated === String(n)", arg=count)


def test_click_propagate_correct_remove_export_in_the_page(browser, live, tmp_path):
    srv, manager = live
    _, masks = square_frames()
    page, errors = _page(browser, srv.url)
    _shot(page, "01-start")
    _open(page, "square")
    _shot(page, "02-opened")

    # a click on the red square: frame 0's mask comes back and is drawn over the square
    _click_video(page, 20, 30)
    page.wait_for_function("window.threeam.framesWithMasks().includes(0)")
    assert _iou(_id_map(page, 0) == 1, masks[0]) > 0.95
    pixel = page.evaluate("Array.from(document.querySelector('#canvas').getContext('2d')"
                          ".getImageData(12, 22, 1, 1).data)")  # inside the square, off the click's dot
    assert abs(pixel[0] - (220 + 128) / 2) < 25 and pixel[1] < 45  # square blended with object 1's colour
    _shot(page, "03-clicked")

    # a second object (the yellow disc), with its own id and colour
    page.click("#add-object")
    _click_video(page, 82, 52)
    page.wait_for_function("Object.keys(window.threeam.present(0)).length === 2")
    assert page.locator("#objects li").count() == 2
    assert page.locator("#objects li.active").get_attribute("data-obj-id") == "2"

    # propagate both ways: every frame gets a mask, on the right frame, and the bar fills up
    _propagate(page, "both", 1)
    assert page.evaluate("window.threeam.framesWithMasks()") == list(range(T))
    for t in range(T):
        assert _iou(_id_map(page, t) == 1, masks[t]) > 0.95, t
    assert page.evaluate("[document.querySelector('#progress').value, document.querySelector('#progress').max]") == [T, T]
    assert "Propagated both: 8 frames" in page.inner_text("#status")
    _shot(page, "04-propagated")

    # correct frame 3 (object 1: a negative click on it), re-propagate forward from there
    page.click("#objects li[data-obj-id='1']")
    page.fill("#scrub", "3")
    page.dispatch_event("#scrub", "input")
    assert page.evaluate("window.threeam.frame()") == 3
    _click_video(page, 8 + 6 * 3 + 5, 30, shift=True)
    page.wait_for_function("!('1' in window.threeam.present(3))")
    _propagate(page, "forward", 2)
    assert "1" not in page.evaluate("window.threeam.present(3)")
    assert _iou(_id_map(page, 5) == 1, masks[5]) > 0.95
    assert page.inner_text("#progress-label") == "done: 5 / 5"
    _shot(page, "05-corrected")

    # remove object 2 everywhere
    page.click("#objects li[data-obj-id='2'] .remove")
    page.wait_for_function("window.threeam.framesWithMasks().every(t => !('2' in window.threeam.present(t)))")
    assert page.locator("#objects li").count() == 1

    # export: three downloads, the files threeam track writes
    page.click("#export")
    page.wait_for_selector("#downloads a[data-format='mp4']")
    files = {}
    for fmt in ("png", "rle", "mp4"):
        with page.expect_download() as d:
            page.click(f"#downloads a[data-format='{fmt}']")
        files[fmt] = tmp_path / d.value.suggested_filename
        d.value.save_as(files[fmt])
    _shot(page, "06-exported")
    z = zipfile.ZipFile(files["png"])
    assert sorted(z.namelist()) == [f"masks/{t:05d}.png" for t in range(T)]
    from PIL import Image

    for t in range(T):
        im = Image.open(io.BytesIO(z.read(f"masks/{t:05d}.png")))
        assert im.mode == "P" and np.array_equal(np.asarray(im), _id_map(page, t))
    tracks = read_rle_json(files["rle"])
    assert sorted(tracks) == list(range(T)) and 1 not in tracks[3]
    assert np.array_equal(tracks[6][1].mask, _id_map(page, 6) == 1)
    with av.open(str(files["mp4"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == T

    # reset, then closing the tab closes its session on the server
    page.click("#reset")
    page.wait_for_function("window.threeam.framesWithMasks().length === 0")
    assert errors == []
    assert len(manager.sessions) == 1
    page.close()
    assert wait_until(lambda: len(manager.sessions) == 0)


def test_two_tabs_on_two_videos_at_once(browser, live):
    srv, manager = live
    _, square = square_frames()
    _, disc = disc_frames()
    a, errors_a = _page(browser, srv.url)
    b, errors_b = _page(browser, srv.url)
    _open(a, "square")
    _open(b, "disc")
    assert wait_until(lambda: len(manager.sessions) == 2)
    _click_video(a, 20, 30)
    _click_video(b, 48, 14)
    a.wait_for_function("window.threeam.framesWithMasks().includes(0)")
    b.wait_for_function("window.threeam.framesWithMasks().includes(0)")
    a.click("button.prop[data-dir=forward]")  # both tabs propagate at the same time
    b.click("button.prop[data-dir=forward]")
    a.wait_for_function("document.body.dataset.propagated === '1'")
    b.wait_for_function("document.body.dataset.propagated === '1'")
    for t in range(T):
        assert _iou(_id_map(a, t) == 1, square[t]) > 0.95
    for t in range(len(disc)):
        assert _iou(_id_map(b, t) == 1, disc[t]) > 0.9
    _shot(b, "07-second-tab")
    assert errors_a == errors_b == []
    a.close()
    assert wait_until(lambda: len(manager.sessions) == 1)
    b.close()
    assert wait_until(lambda: len(manager.sessions) == 0)


def test_upload_in_the_page_and_a_corrupt_upload_shows_an_error(browser, live, tmp_path):
    srv, manager = live
    frames, masks = square_frames(5)
    good = write_mp4(tmp_path / "five.mp4", frames)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    page, errors = _page(browser, srv.url)
    page.set_input_files("#upload-file", str(bad))
    page.wait_for_selector("#status.error")
    assert "bad.mp4" in page.inner_text("#status")
    _shot(page, "08-corrupt-upload")
    page.set_input_files("#upload-file", str(good))  # the server keeps serving
    page.wait_for_function("window.threeam.session() && window.threeam.session().num_frames === 5")
    _click_video(page, 20, 30)
    page.wait_for_function("window.threeam.framesWithMasks().includes(0)")
    assert _iou(_id_map(page, 0) == 1, masks[0]) > 0.9  # mp4 compression: colours are near, not exact
    assert errors == []
    page.close()
    assert wait_until(lambda: len(manager.sessions) == 0)
    assert json.loads(json.dumps(page.is_closed()))
