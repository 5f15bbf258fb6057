"""Search by passage on the page (headless Chromium, as tests/test_page.py): a drag over a
track's spectrogram lists the tracks with passages like it, which play from their time,
in any 30 s window of a long track; an uploaded clip lists them too, the track it was cut
from first and marked "same audio"."""

import re
from urllib.parse import parse_qs, urlsplit

import mutagen
import numpy as np
import pytest

import synth
from songs import RATE, make_music, render
from soundalike.cli import main
from test_page import (CHROMIUM, browser, open_page, open_track, page, rows, server, signed_in,  # noqa: F401
                       wait_playing)
from serving import serving

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


LONG_SECTIONS = [("chord", 11), ("tone", 660), ("noise", 3), ("chord", 14), ("chord", 17)]  # none a song of make_music
SECTION = 13.0  # seconds of each: 65 s in all, three windows of the spectrogram (0:00, 0:20 and the last, 0:35)


@pytest.fixture(scope="module")
def long_track():
    """A 65 s signal, shape (1, n) at RATE, whose sound changes every SECTION seconds."""
    return np.concatenate([render(recipe, SECTION) for recipe in LONG_SECTIONS], axis=1)


@pytest.fixture(scope="module")
def long_server(tmp_path_factory, long_track):
    """The URL of a server (no token) over make_music's songs and "Long Sections", the long track."""
    from soundalike.server import create_app

    music = make_music(tmp_path_factory.mktemp("music"))
    (music / "long").mkdir()
    tagged = mutagen.File(synth.write(music / "long" / "sections.flac", long_track, RATE), easy=True)
    if tagged.tags is None:
        tagged.add_tags()
    tagged["title"] = "Long Sections"
    tagged.save()
    library = tmp_path_factory.mktemp("lib") / "library.sqlite"
    assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 0
    with serving(create_app(library)) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def long_page(browser, long_server):
    page = open_page(browser, long_server, None)
    yield page
    page.context.close()
    assert not page.errors


def caption_of(span):
    return f"Mel spectrogram of {span} of 1:05: time to the right, pitch up."


def test_the_spectrogram_moves_along_a_long_track_and_a_drag_searches_there(long_page):
    page = long_page
    open_track(page, "Long Sections")
    caption, earlier, later = (page.locator(f"#spectrogram-{n}") for n in ("caption", "earlier", "later"))
    expect(caption).to_have_text(caption_of("0:00–0:30"))
    expect(earlier).to_be_disabled()
    later.click()
    expect(caption).to_have_text(caption_of("0:20–0:50"))  # windows 20 s apart: a 10 s passage lies whole in one
    with page.expect_request(re.compile(r"/api/tracks/\d+/passages\?")) as asked:
        drag(page, "#spectrogram", 0.6, 0.9)
    times = parse_qs(urlsplit(asked.value.url).query)
    start, end = float(times["start"][0]), float(times["end"][0])
    assert 30 < start < end <= 50  # the window's own times, not the first 30 s'
    image, selection = page.locator("#spectrogram").bounding_box(), page.locator("#passage-selection").bounding_box()
    assert abs(selection["x"] - (image["x"] + 0.6 * image["width"])) <= 2  # drawn where the drag began
    expect(page.locator("#passage-status")).to_have_text(re.compile(r"Passages like 0:[34]\d–0:[45]\d of “sections\.flac”:"))
    expect(rows(page, "#passage-list").first.locator(".passage-play")).to_contain_text("Play from")
    later.click()
    expect(caption).to_have_text(caption_of("0:35–1:05"))  # the last window ends with the track
    expect(later).to_be_disabled()
    expect(page.locator("#passage-selection")).to_be_hidden()  # it marked the window before
    earlier.click()
    expect(caption).to_have_text(caption_of("0:15–0:45"))
    expect(later).to_be_enabled()
    earlier.click()
    expect(caption).to_have_text(caption_of("0:00–0:30"))
    expect(earlier).to_be_disabled()


def test_a_clip_of_a_track_lists_it_first_as_the_same_audio(long_page, long_track, tmp_path):
    clip = synth.write(tmp_path / "clip.flac", long_track[:, int(40 * RATE):int(46 * RATE)], RATE)
    long_page.click("#nav a[data-view=upload]")
    long_page.set_input_files("#upload-file", str(clip))
    found = rows(long_page, "#upload-passages")
    expect(found.first.locator(".title")).to_have_text("Long Sections")
    badge = found.first.locator(".same-audio")
    expect(badge).to_have_text("same audio")
    expect(badge).to_have_attribute("title", re.compile(r"own audio.*first whatever its score"))
    expect(found.locator(".same-audio")).to_have_count(1)
    expect(found.first.locator(".passage-play")).to_have_text(re.compile(r"Play from 0:(39|40)"))


def test_an_uploaded_clip_lists_tracks_with_passages_like_it(page, tmp_path):
    clip = synth.write(tmp_path / "clip.flac", synth.chord(5.0, 22_050, seed=0), 22_050)
    page.click("#nav a[data-view=upload]")
    page.set_input_files("#upload-file", str(clip))
    expect(page.locator("#upload-passages-status")).to_have_text(re.compile(r"Passages like 0:00–0:05 of “clip\.flac”:"))
    expect(rows(page, "#upload-passages").first.locator(".passage-play")).to_contain_text("Play from")
