"""Search by passage on the page (headless Chromium, as tests/test_page.py): a drag over a
track's spectrogram lists the tracks with passages like it, which play from their time;
an uploaded clip lists them too."""

import re

import pytest

import synth
from test_page import CHROMIUM, browser, open_track, page, rows, server, signed_in, wait_playing  # noqa: F401

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed")

from playwright.sync_api import expect  # noqa: E402


def drag(page, selector, start_fraction, end_fraction):
    box = page.locator(selector).bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start_fraction, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (start_fraction + end_fraction) / 2, y)
    page.mouse.move(box["x"] + box["width"] * end_fraction, y)
    page.mouse.up()


def test_a_drag_over_the_spectrogram_finds_passages_that_play_from_their_time(page):
    open_track(page, "Low Chord")
    page.wait_for_function("document.getElementById('spectrogram').naturalWidth > 0")
    expect(page.locator("#passage-status")).to_contain_text("Drag over the spectrogram")
    drag(page, "#spectrogram", 0.3, 0.8)
    expect(page.locator("#passage-selection")).to_be_visible()
    status = page.locator("#passage-status")
    expect(status).to_have_text(re.compile(r"Passages like 0:0\d–0:0\d of “low_chord\.flac”:"))
    found = rows(page, "#passage-list")
    expect(found.first).to_be_visible()
    titles = found.locator(".title").all_text_contents()
    assert "Low Chord" not in titles and "Low Chord (copy)" not in titles  # never itself nor its copy
    play = found.first.locator(".passage-play")
    text = play.text_content()
    minutes, seconds = re.search(r"(\d+):(\d\d)", text).groups()
    title = found.first.locator(".title").text_content()
    play.click()
    wait_playing(page, int(minutes) * 60 + int(seconds) + 0.1)
    expect(page.locator("#now-title")).to_have_text(title)


def test_an_uploaded_clip_lists_tracks_with_passages_like_it(page, tmp_path):
    clip = synth.write(tmp_path / "clip.flac", synth.chord(5.0, 22_050, seed=0), 22_050)
    page.click("#nav a[data-view=upload]")
    page.set_input_files("#upload-file", str(clip))
    expect(page.locator("#upload-passages-status")).to_have_text(re.compile(r"Passages like 0:00–0:05 of “clip\.flac”:"))
    expect(rows(page, "#upload-passages").first.locator(".passage-play")).to_contain_text("Play from")
