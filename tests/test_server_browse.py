"""Browsing through the HTTP API: pages of tracks, artists, albums, and the tag filter (issue 13)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from songs import indexed_library
from soundalike.audio import TrackMetadata
from soundalike.library.catalogue import Catalogue, TrackRecord
from soundalike.server import MAX_OFFSET, create_app

# (artist, album, title): names that sort differently by case, missing artists and albums
RECORDS = [
    ("Zed", "Alpha", "b"), ("Zed", "Alpha", "A"), ("Zed", "beta", "c"), ("Zed", None, "loose"),
    ("eve", "Gamma", "x"), ("Eve", "gamma", "y"), ("Eve", "Delta", "z"), ("Eve", "Delta", "Y"),
    (None, "Found", "w"), (None, None, "v"), ("", None, "u"), ("Bob", "", "t"),
    *[("Mo", f"Vol {i // 4}", f"song {i:02d}") for i in range(24)],
]


def add_track(catalogue: Catalogue, source: int, path: str, artist, title, album, duration: float) -> int:
    """Add a track at ``path`` that sounds exactly like track ``source`` (its vectors and tags); its id."""
    _, vector = catalogue.arrays("vector", [source])
    _, tags = catalogue.arrays("tags", [source])
    patches, starts = catalogue.patches(source)
    meta = TrackMetadata(artist, title, album, None, duration)
    return catalogue.put(TrackRecord(str(path), 1, 1, meta, 0, vector[0], tags[0], patches, starts))


def copy_library(library: Path, folder: Path) -> Path:
    for file in library.parent.glob(library.name + "*"):
        shutil.copy(file, folder / file.name)
    return folder / library.name


@pytest.fixture(scope="module")
def browsing(tmp_path_factory):
    """A client over a library of the synthesized songs plus RECORDS (which sound like them)."""
    path = copy_library(indexed_library(tmp_path_factory), tmp_path_factory.mktemp("browse"))
    with Catalogue(path) as catalogue:
        sources = catalogue.ids().tolist()
        for n, (artist, album, title) in enumerate(RECORDS):
            add_track(catalogue, sources[n % len(sources)], f"/music/{n:03d}.mp3", artist, title, album, 60.0 + n)
    with TestClient(create_app(path)) as client:
        yield client


def everything(client) -> list[dict]:
    return client.get("/api/tracks", params={"limit": 1000}).json()


def pages(client, url: str, size: int, **params) -> list[list[dict]]:
    """Every page of ``url`` of ``size`` items, up to the first short one."""
    out = []
    while not out or len(out[-1]) == size:
        out.append(client.get(url, params={**params, "offset": size * len(out), "limit": size}).json())
    return out


def nocase(value: str | None) -> tuple:
    """The order of names: case-insensitive, a missing name (None or "") last."""
    return (not value, (value or "").lower())


def test_tracks_are_listed_by_artist_album_and_file_in_pages(browsing):
    every = everything(browsing)
    assert len(every) == browsing.get("/api/library").json()["tracks"] == len(RECORDS) + 7
    keys = [(nocase(t["artist"]), nocase(t["album"]), t["path"]) for t in every]
    assert keys == sorted(keys)
    # no album last; within an album the files' order (numbered files play as the album goes)
    assert [t["title"] for t in every if t["artist"] == "Zed"] == ["b", "A", "c", "loose"]
    assert [t["title"] for t in every if t["artist"] in ("Eve", "eve")] == ["z", "Y", "x", "y"]
    paged = pages(browsing, "/api/tracks", 7)
    assert [t["id"] for page in paged for t in page] == [t["id"] for t in every]  # whole, in order, once each
    assert all(t["tags"] for t in every)


def test_tracks_of_an_artist_and_an_album(browsing):
    delta = browsing.get("/api/tracks", params={"artist": "Eve", "album": "Delta"}).json()
    assert [t["title"] for t in delta] == ["z", "Y"]
    eve = browsing.get("/api/tracks", params={"artist": "Eve"}).json()
    assert [t["title"] for t in eve] == ["z", "Y", "y"]  # exact name: not "eve"
    nameless = browsing.get("/api/tracks", params={"artist": "", "limit": 1000}).json()
    assert [t["id"] for t in nameless] == [t["id"] for t in everything(browsing) if not t["artist"]]
    assert {"u", "v", "w"} <= {t["title"] for t in nameless}
    assert [t["title"] for t in browsing.get("/api/tracks", params={"artist": "", "album": ""}).json()] == ["v", "u", None]
    assert [t["title"] for t in browsing.get("/api/tracks", params={"artist": "Zed", "album": ""}).json()] == ["loose"]
    assert [t["title"] for t in browsing.get("/api/tracks", params={"q": "loose", "album": ""}).json()] == ["loose"]
    unknown = {a["artist"]: a["tracks"] for a in browsing.get("/api/artists", params={"limit": 1000}).json()}[""]
    assert len(nameless) == unknown  # the "" artist's card opens on its tracks
    words = browsing.get("/api/tracks", params={"q": "song", "artist": "Mo", "album": "Vol 2"}).json()
    assert sorted(t["title"] for t in words) == ["song 08", "song 09", "song 10", "song 11"]
    assert browsing.get("/api/tracks", params={"q": "song", "artist": "Eve"}).json() == []


def test_artists_with_their_counts_in_pages(browsing):
    artists = browsing.get("/api/artists", params={"limit": 1000}).json()
    assert [a["artist"] for a in artists] == ["Ann", "Bob", "Cy", "Eve", "eve", "Mo", "Zed", ""]  # unknown last
    by_name = {a["artist"]: a for a in artists}
    assert by_name[""]["tracks"] == 4 and by_name[""]["albums"] == 1  # NULL and "" together, with clicks.wav
    assert (by_name["Zed"]["tracks"], by_name["Zed"]["albums"]) == (4, 2)
    assert (by_name["Mo"]["tracks"], by_name["Mo"]["albums"]) == (24, 6)
    assert by_name["Bob"]["albums"] == 0  # an empty album name is no album
    tracks = {t["id"]: t for t in everything(browsing)}
    assert all((tracks[a["cover"]]["artist"] or "") == a["artist"] for a in artists)
    assert sum(a["tracks"] for a in artists) == len(tracks)
    assert [a for page in pages(browsing, "/api/artists", 3) for a in page] == artists
    assert [a["artist"] for a in browsing.get("/api/artists", params={"q": "EV"}).json()] == ["Eve", "eve"]


def test_albums_with_their_tracks_and_lengths(browsing):
    albums = browsing.get("/api/albums", params={"limit": 1000}).json()
    keys = [(not a["artist"], a["artist"].lower(), a["artist"], not a["album"], a["album"].lower(), a["album"])
            for a in albums]
    assert keys == sorted(keys)
    tracks = everything(browsing)
    assert sum(a["tracks"] for a in albums) == len(tracks)
    for album in albums:
        mine = [t for t in tracks if (t["artist"] or "") == album["artist"] and (t["album"] or "") == album["album"]]
        assert album["tracks"] == len(mine)
        assert album["duration"] == pytest.approx(sum(t["duration"] for t in mine))
        assert album["cover"] in {t["id"] for t in mine}
    zed = browsing.get("/api/albums", params={"artist": "Zed"}).json()
    assert [(a["album"], a["tracks"]) for a in zed] == [("Alpha", 2), ("beta", 1), ("", 1)]
    assert [a for page in pages(browsing, "/api/albums", 4) for a in page] == albums
    assert [a["album"] for a in browsing.get("/api/albums", params={"q": "vol 5"}).json()] == ["Vol 5"]


def test_a_tag_keeps_only_tracks_at_least_that_probable(browsing):
    library = browsing.app.state.library
    tags = browsing.get("/api/library").json()["tags"]
    with library.reading():
        ids, matrix = library.catalogue.arrays("tags")
    column = int(np.argmax(np.median(matrix, axis=0)))  # a tag some tracks have and some do not
    tag, probs = tags[column], matrix[:, column]
    threshold = float(np.median(probs))
    kept = browsing.get("/api/tracks", params={"tag": tag, "min_prob": threshold, "limit": 1000}).json()
    assert {t["id"] for t in kept} == {int(i) for i, p in zip(ids, probs) if p >= threshold}
    assert 0 < len(kept) < len(ids)
    probability = dict(zip(ids.tolist(), probs.tolist()))
    ranked = [probability[t["id"]] for t in kept]
    assert ranked == sorted(ranked, reverse=True)
    paged = pages(browsing, "/api/tracks", 5, tag=tag, min_prob=threshold)
    assert [t["id"] for page in paged for t in page] == [t["id"] for t in kept]
    default = browsing.get("/api/tracks", params={"tag": tag, "limit": 1000}).json()  # min_prob 0.5
    assert {t["id"] for t in default} == {int(i) for i, p in zip(ids, probs) if p >= 0.5}
    of_mo = browsing.get("/api/tracks", params={"tag": tag, "min_prob": 0, "artist": "Mo", "limit": 1000}).json()
    assert len(of_mo) == 24 and {t["artist"] for t in of_mo} == {"Mo"}


@pytest.mark.parametrize("url, params, sentence", [
    ("/api/tracks", {"offset": MAX_OFFSET + 1}, "offset must be at most 1000000000"),
    ("/api/tracks", {"offset": -1}, "offset must be at least 0"),
    ("/api/tracks", {"limit": 1001}, "limit must be at most 1000"),
    ("/api/tracks", {"offset": "two"}, "offset must be a whole number"),
    ("/api/tracks", {"min_prob": 2}, "min_prob must be at most 1"),
    ("/api/artists", {"limit": 0}, "limit must be at least 1"),
    ("/api/albums", {"artist": "x" * 1001}, "artist must be at most 1000 characters long"),
])
def test_paging_bounds_are_sentences(browsing, url, params, sentence):
    response = browsing.get(url, params=params)
    assert response.status_code == 422 and response.json() == {"detail": sentence}


def test_a_page_far_beyond_the_end_is_empty(browsing):
    for url in ("/api/tracks", "/api/artists", "/api/albums"):
        assert browsing.get(url, params={"offset": MAX_OFFSET}).json() == []
