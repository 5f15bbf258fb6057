"""The page's Families view and the map coloured by family, in headless Chromium (the
server, browser and sign-in of tests/test_page.py)."""

import re
from pathlib import Path

import pytest

from test_page import CHROMIUM, TRACKS, browser, open_page, rows, server, signed_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

from playwright.sync_api import expect  # noqa: E402  (after the skip: Playwright comes with the browser tests)


@pytest.fixture
def page(browser, server, signed_in):  # noqa: F811 (the fixtures imported above)
    page = open_page(browser, server, signed_in, path="/#/families")
    yield page
    page.context.close()
    assert not page.errors


def family_sizes(page) -> list[int]:
    return [int(text.split()[0]) for text in page.locator("#families-list .family-size").all_text_contents()]


def test_families_are_listed_played_and_exported(page):
    # a library of 8 tracks is too small to split by measurement: one family, named by number
    expect(page.locator("#families-status")).to_have_text("1 family: as many as the music asks for (by silhouette).")
    expect(page.locator("#families-list h2")).to_have_text(["family 1"])
    assert family_sizes(page) == [TRACKS]
    page.select_option("#families-n", "2")
    expect(page.locator("#families-status")).to_have_text("2 families: as many as asked.")
    sizes = family_sizes(page)
    assert sum(sizes) == TRACKS and sizes == sorted(sizes, reverse=True)
    family = page.locator("#families-list .family").first
    expect(family.locator("li.track")).to_have_count(min(sizes[0], 5))  # its most typical tracks
    with page.expect_download() as download:
        family.locator(".family-export").click()
    assert download.value.suggested_filename == "soundalike-family-1.m3u8"
    text = Path(download.value.path()).read_text()
    assert text.startswith("#EXTM3U") and text.count("#EXTINF") == sizes[0]
    family.locator(".family-enqueue").click()
    page.click("#queue-toggle")
    expect(rows(page, "#queue-list")).to_have_count(sizes[0])
    examples = family.locator("li.track .title").all_text_contents()
    assert rows(page, "#queue-list").locator(".title").all_text_contents()[:len(examples)] == examples


def test_the_map_is_coloured_by_family(page):
    page.select_option("#families-n", "2")
    expect(page.locator("#families-list .family")).to_have_count(2)
    names = page.locator("#families-list h2").all_text_contents()
    page.locator("#families-list .family").nth(1).locator(".family-map").click()
    expect(page).to_have_url(re.compile("#/map$"))
    expect(page.locator("input[name=map-colour][value=family]")).to_be_checked()
    legend = page.locator("#map-legend .legend-item")
    expect(legend).to_have_count(2)
    for item, name in zip(legend.all(), names):
        expect(item).to_contain_text(name)
    counts = [int(n) for n in legend.locator(".muted").all_text_contents()]
    assert sum(counts) == TRACKS
    expect(legend.nth(1)).to_have_attribute("aria-pressed", "true")  # the family asked for, alone
    expect(page.locator("#map-legend")).to_have_attribute("data-by", "family")
    page.check("input[name=map-colour][value=tag]")
    expect(page.locator("#map-legend")).to_have_attribute("data-by", "tag")
    counts = [int(n) for n in legend.locator(".muted").all_text_contents()]
    assert sum(counts) == TRACKS
    page.check("input[name=map-colour][value=family]")
    expect(page.locator("#map-legend")).to_have_attribute("data-by", "family")
    expect(legend).to_have_count(2)
    expect(legend.first).to_contain_text(names[0])
