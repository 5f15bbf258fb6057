"""The page end to end in headless Chromium (Debian's, driven by Playwright; no browser
download), signed in on a server started with a token: browsing, searching, playing, the
queue, keyboard shortcuts, a recommendation's why, radio, path, upload, map, errors, the
phone layout and the dark theme. Each view's screenshot is kept in docs/screenshots."""

import os
import re
import shutil
from pathlib import Path

import mutagen
import numpy as np
import pytest

import synth
from serving import serving
from songs import make_music, write_song
from soundalike.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# set SOUNDALIKE_SCREENSHOTS=docs/screenshots to refresh the ones in the docs
SCREENSHOTS = os.environ.get("SOUNDALIKE_SCREENSHOTS")
TOKEN = "correct horse battery staple"
ALBUMS = {"a": "First Light", "b": "Static", "c": "Mid Tones"}  # folder of make_music -> album of its tagged songs
LOST = ("gone/lost.flac", "Dee", "Lost Tape", None, ("tone", 440))  # indexed, then deleted: cannot be played
TRACKS = 8  # make_music's 7 and the lost one
ALBUM_CARDS = 6  # the 3 ALBUMS, and the tracks without an album of Ann, of Dee, and of no artist
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

from playwright.sync_api import expect  # noqa: E402  (after the skip: Playwright comes with the browser tests)

expect.set_options(timeout=15_000)


def tag_albums(music: Path) -> None:
    """Give the tagged songs of each folder an album, and folder a/ a cover.png."""
    for folder, album in ALBUMS.items():
        for path in (music / folder).iterdir():
            tagged = mutagen.File(path, easy=True)
            if tagged is not None and tagged.tags is not None:
                tagged["album"] = album
                tagged.save()
    from matplotlib.image import imsave

    ramp = np.linspace(0, 1, 64)
    imsave(music / "a" / "cover.png", np.dstack([np.outer(ramp, ramp), np.tile(ramp, (64, 1)), np.full((64, 64), 0.6)]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The URL of a server with a token over a library of make_music's songs with albums,
    and one track whose file was deleted after indexing; (url, the lost track's path)."""
    from soundalike.server import create_app

    music = make_music(tmp_path_factory.mktemp("music"))
    tag_albums(music)
    lost = write_song(music, *LOST)
    library = tmp_path_factory.mktemp("lib") / "library.sqlite"
    assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 0
    lost.unlink()
    with serving(create_app(library, token=TOKEN)) as port:
        yield f"http://127.0.0.1:{port}"


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


@pytest.fixture(scope="module")
def signed_in(browser, server):
    """The browser's state after signing in once with /?token=T (its session cookie)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server}/?token={TOKEN.replace(' ', '%20')}")
    assert page.url == server + "/"  # redirected: the token is not left in the address
    expect(page.locator("#search-results li.track")).to_have_count(TRACKS)
    state = context.storage_state()
    assert [c["name"] for c in state["cookies"]] == ["soundalike_session"]
    context.close()
    return state


def open_page(browser, server, signed_in, *, width=1100, height=800, settings=None, scheme="light", path="/"):
    """A signed-in page at `path`, once it is ready; `settings` are the page's window.soundalikeSettings."""
    context = browser.new_context(viewport={"width": width, "height": height}, storage_state=signed_in,
                                  color_scheme=scheme)
    if settings:
        context.add_init_script(f"window.soundalikeSettings = {settings!r};".replace("'", '"'))
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server + path)
    page.wait_for_selector("body[data-ready]")
    return page


@pytest.fixture
def page(browser, server, signed_in):
    page = open_page(browser, server, signed_in)
    expect(rows(page, "#search-results")).to_have_count(TRACKS)
    yield page
    page.context.close()
    assert not page.errors


def rows(page, where):
    return page.locator(f"{where} li.track")


def titles(page, where) -> list[str]:
    return rows(page, where).locator(".title").all_text_contents()


def shot(page, name):
    image = page.screenshot()  # the viewport, with the player bar at its bottom
    assert image.startswith(b"\x89PNG")
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOTS) / f"{name}.png").write_bytes(image)


def wait_playing(page, beyond=0.3):
    page.wait_for_function(f"!player.paused && player.currentTime > {beyond}", timeout=15_000)


def search(page, words):
    page.fill("#search-input", words)
    page.press("#search-input", "Enter")
    first_word = re.compile(re.escape(words.split()[0]), re.IGNORECASE)
    expect(rows(page, "#search-results").first.locator(".title")).to_contain_text(first_word)


def open_track(page, words):
    page.goto(page.url.split("#")[0] + "#/")
    search(page, words)
    rows(page, "#search-results").first.locator("a.title").click()
    expect(page.locator("#track-title")).to_have_text(words)


# --- signing in --------------------------------------------------------------------------------------
def test_sign_in_form(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.goto(server + "/")
    expect(page.locator("input[name=token][type=password]")).to_be_visible()
    assert page.locator("#search-results").count() == 0  # not the page itself
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    expect(page.get_by_text("That token is not the one this server was started with.")).to_be_visible()
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(rows(page, "#search-results")).to_have_count(TRACKS)
    expect(page.locator("#signout-form")).to_be_visible()
    page.click("#signout-form button")
    expect(page.locator("input[name=token]")).to_be_visible()
    context.close()


def test_a_load_logs_no_errors_but_missing_covers(browser, server, signed_in):
    context = browser.new_context(storage_state=signed_in)
    page = context.new_page()
    logged = []
    page.on("console", lambda m: logged.append(m.text) if m.type == "error" else None)
    page.goto(server + "/#/albums")
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#signout-form")).to_be_visible()  # signed in on a server with a token
    expect(page.locator("#album-grid .card")).to_have_count(ALBUM_CARDS)
    page.wait_for_load_state("networkidle")
    assert any("404" in text for text in logged)  # the covers that albums Static and Mid Tones lack: errors are heard
    assert [text for text in logged if "404" not in text] == []
    context.close()


# --- library ---------------------------------------------------------------------------------------
def test_library_pages_as_it_is_scrolled(browser, server, signed_in):
    page = open_page(browser, server, signed_in, height=300, settings={"pageSize": 3, "prefetchPx": 0})
    offsets = []
    page.on("request", lambda r: offsets.append(re.search(r"offset=(\d+)", r.url).group(1))
            if "/api/tracks?" in r.url else None)
    results = rows(page, "#search-results")
    expect(results).to_have_count(3)
    assert page.evaluate("document.querySelector('#search-results .sentinel').getBoundingClientRect().top") > 300
    for count in (6, TRACKS):
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        expect(results).to_have_count(count)
    expect(page.locator("#search-results .list-end")).to_have_text(f"All {TRACKS} tracks of the library.")
    assert offsets == ["3", "6"]
    assert len(set(rows(page, "#search-results").evaluate_all("items => items.map(i => i.dataset.id)"))) == TRACKS
    page.context.close()


def test_search_and_play(page):
    search(page, "chord")
    expect(rows(page, "#search-results")).to_have_count(3)
    expect(page.locator("#search-results .list-end")).to_have_text("3 tracks found.")
    shot(page, "library")
    rows(page, "#search-results").first.locator("button.play").click()
    wait_playing(page)
    expect(page.locator("#now-title")).to_contain_text("Chord")
    expect(rows(page, "#search-results").first).to_have_class(re.compile("playing"))
    assert page.evaluate("navigator.mediaSession.metadata.title") == page.text_content("#now-title")
    assert page.evaluate("navigator.mediaSession.metadata.artwork[0].src").endswith("/cover")
    page.fill("#search-input", "no such words anywhere")
    page.press("#search-input", "Enter")
    expect(page.locator("#search-results .empty")).to_contain_text("No tracks match.")


def test_tag_filter(page):
    tag = page.evaluate("fetch('/api/tracks/1').then(r => r.json()).then(t => t.tags[0].tag)")
    page.select_option("#search-tag", tag)
    page.select_option("#search-min-prob", "0.3")
    expected = page.evaluate(f"fetch('/api/tracks?tag={tag}&min_prob=0.3').then(r => r.json())")
    assert 0 < len(expected) < TRACKS  # the tag filters
    expect(rows(page, "#search-results")).to_have_count(len(expected))
    ids = rows(page, "#search-results").evaluate_all("items => items.map(i => +i.dataset.id)")
    assert ids == [t["id"] for t in expected]


# --- artists and albums ------------------------------------------------------------------------------
def test_artists_albums_and_an_album(page):
    page.click("#nav a[data-view=artists]")
    artists = page.locator("#artist-grid .card-title")
    expect(artists).to_have_text(["Ann", "Bob", "Cy", "Dee", "Unknown artist"])
    expect(page.locator("#artist-grid .card").nth(0).locator(".card-sub")).to_have_text("1 album · 3 tracks")
    shot(page, "artists")
    page.click("#nav a[data-view=albums]")
    expect(page.locator("#album-grid .card-title")).to_contain_text(["First Light", "Static", "Mid Tones"])
    shot(page, "albums")
    page.click("#nav a[data-view=artists]")
    page.locator("#artist-grid .card-link", has_text="Ann").click()
    expect(page.locator("#artist-name")).to_have_text("Ann")
    expect(rows(page, "#artist-tracks")).to_have_count(3)
    page.locator("#artist-albums .card-link", has_text="First Light").click()
    expect(page.locator("#album-title")).to_have_text("First Light")
    expect(page.locator("#album-meta")).to_contain_text("Ann · 2 tracks")
    assert titles(page, "#album-tracks") == ["High Tone", "Low Chord"]
    # folder a/ has a cover.png; the other albums show a placeholder of their initials
    page.wait_for_function("document.querySelector('#album-cover img')?.naturalWidth === 64")
    page.click("#album-enqueue")
    page.click("#queue-toggle")
    expect(rows(page, "#queue-list")).to_have_count(2)
    page.click("#queue-close")
    shot(page, "album")
    page.click("#nav a[data-view=albums]")
    static = page.locator("#album-grid .card", has_text="Static")
    expect(static.locator(".cover span")).to_have_text("ST")
    expect(static.locator(".cover img")).to_have_count(0)  # its 404 removed it
    static.locator(".card-play").click()
    wait_playing(page)
    expect(page.locator("#now-title")).to_have_text("Noise Wash")


def test_unknown_artist_and_album_list_their_tracks(page):
    page.click("#nav a[data-view=artists]")
    page.locator("#artist-grid .card-link", has_text="Unknown artist").click()
    expect(page.locator("#artist-name")).to_have_text("Unknown artist")
    expect(rows(page, "#artist-tracks").locator(".title")).to_have_text(["clicks"])  # b/clicks.wav has no tags: its name without extension
    expect(rows(page, "#artist-tracks").first.locator(".cover span")).to_have_text("CL")
    page.click("#artist-play")
    wait_playing(page)
    expect(page.locator("#now-title")).to_have_text("clicks")
    page.goto(page.url.split("#")[0] + "#/album/Ann/")  # Ann's tracks without an album
    expect(page.locator("#album-title")).to_have_text("Unknown album")
    expect(rows(page, "#album-tracks").locator(".title")).to_have_text(["Low Chord (copy)"])
    page.click("#nav a[data-view=albums]")
    nobody = page.locator("#album-grid .card", has_text="Unknown artist · 1 track")
    nobody.locator(".card-link").click()
    expect(page.locator("#album-meta")).to_have_text(re.compile("^Unknown artist · 1 track"))
    expect(rows(page, "#album-tracks").locator(".title")).to_have_text(["clicks"])
    # the title on one line, the buttons side by side
    title, play, enqueue = (page.locator(f"#{i}").bounding_box() for i in ("album-title", "album-play", "album-enqueue"))
    assert title["height"] < 60 and play["y"] == enqueue["y"]
    shot(page, "album-unknown")
    page.click("#album-play")
    wait_playing(page)
    expect(page.locator("#now-title")).to_have_text("clicks")


# --- a track and why it is recommended ----------------------------------------------------------------
def test_track_page_explains_why(page):
    open_track(page, "Low Chord")
    expect(page.locator("#track-tags li")).to_have_count(10)
    page.wait_for_function("document.getElementById('spectrogram').naturalWidth > 0")
    expect(page.locator("#spectrogram-caption")).to_have_text(  # the songs are 7 s long
        "Mel spectrogram of all 7 seconds: time to the right, pitch up.")
    first = rows(page, "#similar-list").first
    expect(first.locator(".passage").first).to_have_text(
        re.compile(r"The \d:\d\d passage of “Low Chord” sounds like \d:\d\d here\.Play from \d:\d\d"))
    shot(page, "track")
    page.evaluate("document.querySelector('#view-track .section-head').scrollIntoView()")
    shot(page, "track-similar")
    start = float(first.locator(".passage-play").first.text_content().split()[-1].replace(":", "."))
    seconds = int(start) * 60 + round((start % 1) * 100)
    recommended = first.locator(".title").text_content()
    first.locator(".passage-play").first.click()
    wait_playing(page, seconds + 0.1)
    expect(page.locator("#now-title")).to_have_text(recommended)
    first.locator("a.title").click()
    expect(page.locator("#track-title")).to_have_text(recommended)


# --- the queue and the keyboard --------------------------------------------------------------------
def queue_titles(page):
    return rows(page, "#queue-list").locator(".title").all_text_contents()


def test_queue_add_play_next_reorder_remove(page):
    page.click("#queue-toggle")
    expect(page.locator("#queue-list .empty")).to_contain_text("The queue is empty.")
    results = rows(page, "#search-results")
    names = titles(page, "#search-results")
    for i in (0, 1, 2):
        results.nth(i).locator("button.enqueue").click()
    expect(rows(page, "#queue-list")).to_have_count(3)
    results.nth(3).locator("button.play-next").click()  # nothing plays: it goes first
    assert queue_titles(page) == [names[3], names[0], names[1], names[2]]
    rows(page, "#queue-list").nth(0).locator(".move-down").click()
    assert queue_titles(page) == [names[0], names[3], names[1], names[2]]
    rows(page, "#queue-list").nth(3).drag_to(rows(page, "#queue-list").nth(0))
    assert queue_titles(page) == [names[2], names[0], names[3], names[1]]
    rows(page, "#queue-list").nth(1).locator(".remove").click()
    assert queue_titles(page) == [names[2], names[3], names[1]]
    page.click("#play-pause")
    wait_playing(page)
    expect(page.locator("#now-title")).to_have_text(names[2])
    results.nth(4).locator("button.play-next").click()
    assert queue_titles(page)[1] == names[4]
    expect(page.locator("#queue-count")).to_have_text("3")
    page.click("#next")
    expect(page.locator("#now-title")).to_have_text(names[4])
    expect(rows(page, "#queue-list").nth(1)).to_have_class(re.compile("playing"))
    shot(page, "queue")


def test_the_queue_is_kept_over_a_reload(page):
    names = titles(page, "#search-results")
    for i in (0, 1, 2):
        rows(page, "#search-results").nth(i).locator("button.enqueue").click()
    page.click("#play-pause")
    page.click("#next")
    expect(page.locator("#now-title")).to_have_text(names[1])
    # a track the library no longer has is left out
    page.evaluate("""() => { const saved = JSON.parse(localStorage.getItem('soundalike.queue'));
                             saved.ids.unshift(987654); saved.index += 1;
                             localStorage.setItem('soundalike.queue', JSON.stringify(saved)); }""")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("#now-title")).to_have_text(names[1])
    assert page.evaluate("player.paused")  # loaded, not played
    page.click("#queue-toggle")
    assert queue_titles(page) == names[:3]
    expect(rows(page, "#queue-list").nth(1)).to_have_class(re.compile("playing"))
    expect(page.locator("#queue-count")).to_have_text("1")
    page.click("#play-pause")
    wait_playing(page)
    expect(page.locator("#now-title")).to_have_text(names[1])


def test_keyboard_shortcuts(page):
    page.locator("#search-results li.track").first.locator("button.enqueue").click()
    page.locator("#search-results li.track").nth(1).locator("button.enqueue").click()
    page.locator("body").click(position={"x": 600, "y": 20})  # focus on nothing in particular
    page.keyboard.press(" ")
    wait_playing(page)
    first = page.text_content("#now-title")
    page.keyboard.press(" ")
    page.wait_for_function("player.paused")
    page.keyboard.press("j")
    expect(page.locator("#now-title")).not_to_have_text(first)
    page.keyboard.press("/")
    expect(page.locator("#search-input")).to_be_focused()
    page.keyboard.type("k j")  # typed into the search, not shortcuts
    expect(page.locator("#search-input")).to_have_value("k j")
    expect(page.locator("#now-title")).not_to_have_text(first)
    page.locator("#search-input").blur()
    page.keyboard.press("k")
    expect(page.locator("#now-title")).to_have_text(first)
    page.wait_for_function("player.readyState >= 1")  # its duration is known
    page.evaluate("player.pause(); player.currentTime = 5")
    page.keyboard.press("ArrowLeft")  # back 10 s
    assert page.evaluate("player.currentTime") == 0
    # forward 10 s: to the end of these 7 s songs (read at once, before the next track loads)
    assert page.evaluate("""() => { document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight'}));
                                    return player.duration - player.currentTime; }""") == 0
    page.keyboard.press("m")
    assert page.evaluate("player.muted")
    page.keyboard.press("m")
    assert not page.evaluate("player.muted")
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#shortcuts")).to_contain_text("Play or pause")
    expect(page.locator("#shortcuts")).to_contain_text("→Forward 10 seconds")
    expect(page.locator("#shortcuts")).to_contain_text("mMute or unmute")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()


# --- radio, and a track that cannot play -------------------------------------------------------------
def test_radio_plays_and_fills_the_queue(page):
    page.click("#nav a[data-view=radio]")
    expect(page.locator("#radio-history .empty")).to_contain_text("The radio has played nothing yet.")
    open_track(page, "Low Chord")
    page.click("#track-radio")
    expect(page.locator("#view-radio")).to_be_visible()
    wait_playing(page)
    expect(rows(page, "#radio-history")).to_have_count(1)  # the next one is already queued
    page.fill("#drunk", "0.2")
    page.click("#radio-skip")
    expect(rows(page, "#radio-history")).to_have_count(2)
    wait_playing(page)
    ids = rows(page, "#radio-history").evaluate_all("items => items.map(i => i.dataset.id)")
    assert len(set(ids)) == 2
    page.click("#queue-toggle")
    expect(rows(page, "#queue-list")).to_have_count(3)
    shot(page, "radio")
    page.click("#radio-stop")
    expect(page.locator("#radio-status")).to_contain_text("The radio is off")


def test_likes_skips_and_dislikes_reach_the_api_under_the_page_profile(browser, server, signed_in):
    page = open_page(browser, server, signed_in, path="/?profile=tester")
    open_track(page, "Low Chord")
    low_chord = int(page.url.rsplit("/", 1)[1])
    page.click("#track-radio")
    wait_playing(page)
    page.click("#like")
    expect(page.locator(".toast")).to_contain_text("Liked “Low Chord”: radios play more like it.")
    expect(page.locator("#like")).to_have_attribute("aria-pressed", "true")
    page.click("#radio-skip")  # left within 30 s: a skip
    wait_playing(page)
    page.click("#dislike")
    expect(page.locator(".toast")).to_contain_text("it will not be played again")

    def feedback(profile):
        return page.evaluate(f"fetch('/api/feedback?profile={profile}').then(r => r.json())")

    page.wait_for_function("fetch('/api/feedback?profile=tester').then(r => r.json())"
                           ".then(e => e.some(x => x.kind === 'dislike'))")
    felt = [(e["kind"], e["track_id"], e["source"]) for e in reversed(feedback("tester")) if e["kind"] != "play"]
    assert felt[:2] == [("like", low_chord, "page"), ("skip", low_chord, "page")]
    assert felt[2][0] == "dislike" and felt[2][1] != low_chord
    assert not [e for e in feedback("default") if e["kind"] in ("like", "dislike")]  # profiles apart
    expect(page.locator("#radio-profile")).to_contain_text("profile “tester”")
    page.click("#for-you")
    expect(page.locator("#radio-status")).to_contain_text("For you: tracks near what you liked")
    expect(page.locator("#radio-history .why").first).to_contain_text("you liked")
    assert felt[2][1] not in [int(i) for i in rows(page, "#radio-history").evaluate_all(
        "items => items.map(i => i.dataset.id)")]
    shot(page, "for-you")
    page.context.close()
    assert not page.errors


def test_a_track_that_cannot_play_is_explained_and_the_radio_moves_on(page):
    open_track(page, "Lost Tape")
    lost = page.url.rsplit("/", 1)[1]
    page.click("#track-radio")
    expect(page.locator("#player-error")).to_have_text(
        f"“Lost Tape” cannot be played: track {lost}'s file is no longer on disk. Moved on to the next track.")
    wait_playing(page)
    expect(page.locator("#now-title")).not_to_have_text("Lost Tape")
    shot(page, "player-error")


# --- path and upload ----------------------------------------------------------------------------
def test_path_is_built_played_and_exported(page):
    page.click("#nav a[data-view=path]")
    expect(page.locator("#path-songs .empty")).to_contain_text("A path needs at least two songs")
    expect(page.locator("#path-build")).to_be_disabled()
    for words in ("Low Chord", "Noise Wash", "High Tone"):
        open_track(page, words)
        page.click("#track-add-path")
    expect(rows(page, "#path-songs")).to_have_count(3)
    rows(page, "#path-songs").nth(1).locator(".move-down").click()
    assert titles(page, "#path-songs") == ["Low Chord", "High Tone", "Noise Wash"]
    rows(page, "#path-songs").nth(2).locator(".remove").click()
    page.reload()  # the songs are kept
    page.wait_for_selector("body[data-ready]")
    expect(rows(page, "#path-songs")).to_have_count(2)
    assert titles(page, "#path-songs") == ["Low Chord", "High Tone"]
    page.fill("#path-length", "4")
    page.click("#path-build")
    expect(rows(page, "#path-list")).to_have_count(4)
    names = titles(page, "#path-list")
    assert names[0] == "Low Chord" and names[-1] == "High Tone"
    with page.expect_download() as download:
        page.click("#path-export")
    assert download.value.suggested_filename == "soundalike-path.m3u8"
    assert Path(download.value.path()).read_text().startswith("#EXTM3U")
    page.click("#path-play")
    wait_playing(page)
    expect(page.locator("#now-title")).to_have_text("Low Chord")
    page.click("#queue-toggle")
    assert queue_titles(page) == names
    page.click("#queue-close")
    shot(page, "path")
    # longer than the library: the server's sentence, and nothing old left to play or export
    page.fill("#path-length", "9999")
    page.click("#path-build")
    expect(page.locator("#path-length")).to_have_value("500")  # clamped to the server's bounds
    expect(page.locator("#path-list li.error")).to_have_text(
        "The library has too few tracks for a path this long; try a shorter one.")
    expect(rows(page, "#path-list")).to_have_count(0)
    expect(page.locator("#path-play")).to_be_disabled()
    expect(page.locator("#path-export")).to_be_disabled()


def test_upload_a_song(page, tmp_path):
    song = synth.write(tmp_path / "mine.flac", synth.chord(6.0, 22_050, seed=4), 22_050)
    page.click("#nav a[data-view=upload]")
    page.set_input_files("#upload-file", str(song))
    expect(page.locator("#upload-status")).to_have_text("Songs like mine.flac:")
    expect(rows(page, "#upload-results").first.locator(".passage").first).to_contain_text("passage of your song sounds like")
    shot(page, "upload")


# --- map ---------------------------------------------------------------------------------------
def coloured_point(page):
    """Viewport coordinates of a pixel of a coloured (not grey) point of the map."""
    return page.evaluate("""() => {
        const c = document.getElementById('map-canvas'), data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < data.length; i += 4) {
            const [r, g, b, a] = data.slice(i, i + 4);
            if (a > 200 && Math.max(r, g, b) - Math.min(r, g, b) > 40) {
                const p = i / 4, rect = c.getBoundingClientRect();
                return [rect.left + (p % c.width) * rect.width / c.width, rect.top + Math.floor(p / c.width) * rect.height / c.height];
            }
        }
    }""")


def test_map_legend_zoom_hover_and_click(page):
    page.click("#nav a[data-view=map]")
    legend = page.locator("#map-legend .legend-item")
    expect(legend.first).to_be_visible()
    expect(page.locator("#map-loading")).to_be_hidden()
    expect(page.locator("#map-method")).to_have_text(re.compile(rf"projection of {TRACKS} tracks · zoom 1\.0×"))
    counts = [int(n) for n in legend.locator(".muted").all_text_contents()]
    assert sum(counts) == TRACKS and counts == sorted(counts, reverse=True)
    canvas = page.locator("#map-canvas")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function("+document.getElementById('map-canvas').dataset.zoom > 1.5")
    page.click("#map-reset")
    expect(canvas).to_have_attribute("data-zoom", "1.00")
    x, y = coloured_point(page)
    page.mouse.move(x + 1, y + 1)
    expect(page.locator("#map-tip")).to_be_visible()
    shot(page, "map")
    page.mouse.click(x + 1, y + 1)
    wait_playing(page)
    legend.first.click()
    expect(legend.first).to_have_attribute("aria-pressed", "true")
    # the server says how the map was made (the /api/map field "method")
    expect(page.locator("#map-method")).to_have_text(re.compile(r"^(UMAP|PCA) projection"))


# --- errors and empty states ----------------------------------------------------------------------
def test_errors_are_sentences(page):
    page.goto(page.url.split("#")[0] + "#/track/987654")
    expect(page.locator("#banner")).to_have_text("No track 987654 in the library.")
    page.context.route("**/api/artists*", lambda route: route.abort())
    page.click("#nav a[data-view=artists]")
    expect(page.locator("#artist-grid li.error")).to_have_text(
        "The server did not answer; is soundalike serve still running?")


def test_an_empty_library_says_what_to_do(page):
    page.context.route("**/api/tracks?*", lambda route: route.fulfill(json=[]))
    page.click("#nav a[data-view=artists]")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.click("#nav a[data-view=library]")
    expect(page.locator("#search-results .empty")).to_have_text(
        "The library is empty.Index some music first: soundalike index ~/Music, then reload this page.")


# --- phone and dark theme ------------------------------------------------------------------------
def no_sideways_scroll(page):
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_phone_layout(browser, server, signed_in):
    page = open_page(browser, server, signed_in, width=390, height=844)
    expect(rows(page, "#search-results")).to_have_count(TRACKS)
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("#play-pause")).to_be_visible()
    no_sideways_scroll(page)
    rows(page, "#search-results").first.locator("button.play").click()
    wait_playing(page)
    shot(page, "phone-library")
    page.click("#menu-button")
    expect(page.locator("#nav")).to_be_visible()
    page.click("#nav a[data-view=albums]")
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("#album-grid .card")).to_have_count(ALBUM_CARDS)
    no_sideways_scroll(page)
    rows_link = "#search-results li.track >> nth=0 >> a.title"
    page.click("#menu-button")
    page.click("#nav a[data-view=library]")
    page.click(rows_link)
    expect(rows(page, "#similar-list").first).to_be_visible()
    no_sideways_scroll(page)
    shot(page, "phone-track")
    page.click("#track-add-path")
    expect(rows(page, "#path-songs")).to_have_count(1)
    no_sideways_scroll(page)
    expect(page.locator(".toast")).to_be_hidden()  # "Added … to the path" faded
    shot(page, "phone-path")
    header = {}
    for view in ("artists", "upload", "radio"):  # short views too: the header keeps its height
        page.evaluate(f"location.hash = '#/{view}'")
        expect(page.locator(f"#view-{view}")).to_be_visible()
        header[view] = page.locator("#sidebar").bounding_box()["height"]
    assert header["radio"] == header["upload"] == header["artists"] < 80, header
    shot(page, "phone-radio")
    page.click("#menu-button")
    page.click("#nav a[data-view=map]")
    expect(page.locator("#map-legend .legend-item").first).to_be_visible()
    no_sideways_scroll(page)
    assert not page.errors
    page.context.close()


def test_dark_theme_is_remembered(browser, server, signed_in):
    page = open_page(browser, server, signed_in, scheme="light", path="/#/albums")
    background = "getComputedStyle(document.documentElement).backgroundColor"
    light = page.evaluate(background)
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = page.evaluate(background)
    assert dark != light and sum(map(int, re.findall(r"\d+", dark)[:3])) < 100
    page.reload()
    page.wait_for_selector("body[data-ready]")
    assert page.evaluate(background) == dark
    expect(page.locator("#album-grid .card")).to_have_count(ALBUM_CARDS)
    shot(page, "albums-dark")
    page.goto(server + "/#/track/1")
    expect(rows(page, "#similar-list").first).to_be_visible()
    page.wait_for_function("document.getElementById('spectrogram').naturalWidth > 0")
    shot(page, "track-dark")
    page.context.close()
