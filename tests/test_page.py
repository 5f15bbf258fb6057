"""The page end to end in headless Chromium (Debian's, driven by Playwright; no browser
download): search, play, follow a recommendation, radio, path, upload, map. Each view's
screenshot is kept in docs/screenshots."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

import synth
from songs import make_music
from soundalike.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# set SOUNDALIKE_SCREENSHOTS=docs/screenshots to refresh the ones in the docs
SCREENSHOTS = os.environ.get("SOUNDALIKE_SCREENSHOTS")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from soundalike.server import create_app

    music = make_music(tmp_path_factory.mktemp("music"))
    library = tmp_path_factory.mktemp("lib") / "library.sqlite"
    assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(library), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#search-results li.track")
    yield page
    context.close()
    assert not errors


def shot(page, name):
    image = page.screenshot(full_page=True)
    assert image.startswith(b"\x89PNG")
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOTS) / f"{name}.png").write_bytes(image)


def playing_time(page) -> float:
    return page.evaluate("document.getElementById('player').currentTime")


def wait_playing(page, beyond=0.3):
    page.wait_for_function(f"document.getElementById('player').currentTime > {beyond}", timeout=15_000)


def test_search_and_play(page):
    page.fill("#search-input", "chord")
    page.click("#search-form button")
    page.wait_for_function("document.querySelectorAll('#search-results li.track').length === 3")
    shot(page, "search")
    page.click("#search-results li.track >> nth=0 >> button.play")
    wait_playing(page)
    assert "Chord" in page.text_content("#now-playing")


def test_track_view_and_following_a_recommendation(page):
    page.fill("#search-input", "Low Chord")
    page.click("#search-form button")
    page.click("#search-results li.track >> nth=0 >> a")
    page.wait_for_selector("#similar-list li.track .passage")
    page.wait_for_function("document.getElementById('spectrogram').naturalWidth > 0")
    assert page.text_content("#track-title") == "Ann – Low Chord"
    assert page.locator("#track-tags li").count() == 10
    shot(page, "track")
    first = page.locator("#similar-list li.track >> nth=0 >> a")
    title = first.text_content()
    first.click()
    page.wait_for_function(f"document.getElementById('track-title').textContent === {title!r}")
    page.click("#similar-list li.track >> nth=0 >> .passage >> nth=0")  # jump to the matching passage
    wait_playing(page, 0.05)


def test_radio_plays_two_tracks(page):
    page.click("#search-results li.track >> nth=0 >> a")
    page.wait_for_selector("#similar-list li.track")
    page.click("#track-radio")
    page.wait_for_selector("#view-radio:not([hidden])")
    wait_playing(page)
    page.fill("#drunk", "0.2")
    page.click("#radio-skip")
    page.wait_for_function("document.querySelectorAll('#radio-history li.track').length === 1")
    page.click("#radio-skip")
    page.wait_for_function("document.querySelectorAll('#radio-history li.track').length === 2")
    wait_playing(page)
    shot(page, "radio")
    ids = page.eval_on_selector_all("#radio-history li.track", "items => items.map(i => i.dataset.id)")
    assert len(set(ids)) == 2


def test_path_is_built_played_and_exported(page):
    for words in ("Low Chord", "High Tone"):
        page.click("#nav-search")
        page.fill("#search-input", words)
        page.click("#search-form button")
        page.wait_for_function(f"document.querySelector('#search-results li.track a')?.textContent.includes({words!r})")
        page.click("#search-results li.track >> nth=0 >> a")
        page.wait_for_function(f"document.getElementById('track-title').textContent.includes({words!r})")
        page.click("#track-add-path")
    page.fill("#path-length", "4")
    page.click("#path-build")
    page.wait_for_function("document.querySelectorAll('#path-list li.track').length === 4")
    titles = page.eval_on_selector_all("#path-list li.track a", "items => items.map(i => i.textContent)")
    assert titles[0] == "Ann – Low Chord" and titles[-1] == "Ann – High Tone"
    with page.expect_download() as download:
        page.click("#path-export")
    assert download.value.suggested_filename == "soundalike-path.m3u8"
    assert Path(download.value.path()).read_text().startswith("#EXTM3U")
    page.click("#path-play")
    wait_playing(page)
    shot(page, "path")


def test_upload_a_song(page, tmp_path):
    song = synth.write(tmp_path / "mine.flac", synth.chord(6.0, 22_050, seed=4), 22_050)
    page.click("#nav-upload")
    page.set_input_files("#upload-file", str(song))
    page.click("#upload-go")
    page.wait_for_selector("#upload-results li.track")
    assert page.text_content("#upload-status") == "Songs like mine.flac:"
    shot(page, "upload")


def test_map_hover_and_click_to_play(page):
    page.click("#nav-map")
    page.wait_for_function("document.querySelectorAll('#map-legend li').length > 0")
    point = page.evaluate("""() => {
        const c = document.getElementById('map-canvas'), ctx = c.getContext('2d');
        const data = ctx.getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < data.length; i += 4) if (data[i + 3] && (data[i] + data[i+1] + data[i+2]) < 600) {
            const p = i / 4, r = c.getBoundingClientRect();
            return [r.left + (p % c.width) * r.width / c.width, r.top + Math.floor(p / c.width) * r.height / c.height];
        }
    }""")
    page.mouse.move(point[0] + 1, point[1] + 1)
    page.wait_for_selector("#map-tip:not([hidden])")
    shot(page, "map")
    page.mouse.click(point[0] + 1, point[1] + 1)
    wait_playing(page)
