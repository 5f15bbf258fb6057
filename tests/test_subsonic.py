"""soundalike in front of a real Subsonic server (supysonic on loopback): link, the
proxy (pass-through and the sonicSimilarity extension) and playlists written into it,
with the library in SQLite and in PostgreSQL."""

import json
import xml.etree.ElementTree as ET

import httpx2
import pytest
from fastapi.testclient import TestClient

from songs import make_music
from subsonic_server import PASSWORD, USER, Supysonic
from soundalike.cli import main
from soundalike.subsonic.client import ALLOW_PLAIN_ENV, PASSWORD_ENV
from soundalike.subsonic.proxy import NS, SubsonicProxy

AUTH = {"u": USER, "p": PASSWORD, "v": "1.12.0", "c": "test"}
HEAD = ("status", "version", "type", "serverVersion", "openSubsonic")  # every OpenSubsonic envelope has these


@pytest.fixture(scope="module")
def setup(tmp_path_factory, new_library):
    """(server, library, music folder): supysonic and a library over the same music, linked;
    the library in SQLite, then in PostgreSQL (the module runs on both backends)."""
    music = make_music(tmp_path_factory.mktemp("music"))
    library = new_library(tmp_path_factory.mktemp("lib"), "library")
    assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 0
    with pytest.MonkeyPatch.context() as env, Supysonic(music, tmp_path_factory.mktemp("supysonic")) as server:
        env.setenv(PASSWORD_ENV, PASSWORD)
        env.setenv(ALLOW_PLAIN_ENV, "1")  # supysonic takes no token: the password itself, on loopback
        assert main(["subsonic", "link", server.url, "--user", USER, "--library", str(library)]) == 0
        yield server, library, music


@pytest.fixture(scope="module")
def proxy(setup):
    from soundalike.server import create_app

    server, library, _ = setup
    app = create_app(library)
    with TestClient(SubsonicProxy(app, app.state.library, server.url)) as client:
        yield client


def upstream(server, endpoint, **params):
    return httpx2.get(f"{server.url}/rest/{endpoint}", params=AUTH | params, timeout=10)


def songs(server) -> dict[str, dict]:
    """The server's songs by title."""
    found = upstream(server, "search3", query="", songCount=100, f="json").json()
    return {s["title"]: s for s in found["subsonic-response"]["searchResult3"]["song"]}


def body(response) -> dict:
    assert response.status_code == 200
    return response.json()["subsonic-response"]


def test_link_matches_every_song_by_path(setup, capsys):
    server, library, music = setup
    assert main(["subsonic", "link", server.url, "--user", USER, "--library", str(library)]) == 0
    out = capsys.readouterr().out
    assert "7 songs (0 new, 0 changed, 0 removed since the last link); 7 are library tracks (7 by path), 0 are not" \
        in out
    from soundalike.library import Library
    from soundalike.subsonic.link import track_for_song

    with Library(library) as lib:
        for song in songs(server).values():
            assert track_for_song(lib.catalogue, server.url, song["id"]).path == str(music / song["path"])


@pytest.mark.parametrize("endpoint, params", [
    ("ping", {}), ("getLicense", {}), ("getMusicFolders", {}), ("getIndexes", {}), ("getArtists", {}),
    ("search3", {"query": "Chord"}), ("getPlaylists", {}), ("getRandomSongs", {"size": 0}),
    ("getSong", {"id": "nonexistent"}), ("noSuchEndpoint", {}),
])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_standard_endpoints_pass_through_unchanged(setup, proxy, endpoint, params, fmt):
    server = setup[0]
    direct = upstream(server, endpoint, f=fmt, **params)
    through = proxy.get(f"/rest/{endpoint}", params=AUTH | {"f": fmt} | params)
    assert (through.status_code, through.content) == (direct.status_code, direct.content)
    assert through.headers["content-type"] == direct.headers["content-type"]


def test_browsing_by_ids_passes_through_unchanged(setup, proxy):
    server = setup[0]
    song = songs(server)["Noise Wash"]
    for endpoint, item in (("getSong", song["id"]), ("getAlbum", song["albumId"]), ("getArtist", song["artistId"]),
                           ("getMusicDirectory", song["parent"])):
        for fmt in ("json", "xml"):
            direct = upstream(server, endpoint, id=item, f=fmt).content
            assert proxy.get(f"/rest/{endpoint}.view", params=AUTH | {"id": item, "f": fmt}).content == direct


def test_stream_with_a_range_passes_through(setup, proxy):
    server = setup[0]
    song = songs(server)["Low Chord"]
    headers = {"Range": "bytes=100-4195"}
    direct = httpx2.get(f"{server.url}/rest/stream", params=AUTH | {"id": song["id"]}, headers=headers)
    through = proxy.get("/rest/stream", params=AUTH | {"id": song["id"]}, headers=headers)
    assert through.status_code == direct.status_code == 206
    assert through.content == direct.content and len(through.content) == 4096
    assert through.headers["content-range"] == direct.headers["content-range"] == f"bytes 100-4195/{song['size']}"


def test_sonic_similar_tracks_json(setup, proxy):
    server = setup[0]
    by_title = songs(server)
    seed = by_title["Low Chord"]
    answer = body(proxy.get("/rest/getSonicSimilarTracks", params=AUTH | {"id": seed["id"], "count": 4, "f": "json"}))
    assert answer["status"] == "ok" and answer["openSubsonic"] is True and all(k in answer for k in HEAD)
    matches = answer["sonicMatch"]
    assert len(matches) == 4
    assert seed["id"] not in [m["entry"]["id"] for m in matches]
    similarities = [m["similarity"] for m in matches]
    assert all(0 <= s <= 1 for s in similarities) and similarities == sorted(similarities, reverse=True)
    # the upstream's own Child objects: what getSong says of each song
    for match in matches:
        assert match["entry"] == body(upstream(server, "getSong", id=match["entry"]["id"], f="json"))["song"]
    # the copy of the seed's recording is a duplicate, never recommended
    assert by_title["Low Chord (copy)"]["id"] not in [m["entry"]["id"] for m in matches]


def test_sonic_similar_tracks_xml(setup, proxy):
    server = setup[0]
    seed = songs(server)["Mid Chord"]
    response = proxy.get("/rest/getSonicSimilarTracks.view", params=AUTH | {"id": seed["id"], "count": 3})
    root = ET.fromstring(response.content)
    assert root.tag == f"{{{NS}}}subsonic-response" and root.get("status") == "ok"
    assert all(root.get(k) for k in HEAD) and root.get("openSubsonic") == "true"
    matches = root.findall(f"{{{NS}}}sonicMatch")
    assert len(matches) == 3
    for match in matches:
        assert 0 <= float(match.get("similarity")) <= 1
        entry = match.find(f"{{{NS}}}entry")
        assert entry.get("id") != seed["id"] and entry.get("isDir") == "false" and entry.get("title")


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_sonic_path_starts_and_ends_where_asked(setup, proxy, fmt):
    by_title = songs(setup[0])
    start, end = by_title["Low Tone"]["id"], by_title["Noise Wash"]["id"]
    response = proxy.get("/rest/findSonicPath", params=AUTH | {"startSongId": start, "endSongId": end, "count": 4,
                                                                "f": fmt})
    if fmt == "json":
        answer = body(response)
        assert answer["status"] == "ok"
        ids = [m["entry"]["id"] for m in answer["sonicMatch"]]
        first_similarity = answer["sonicMatch"][0]["similarity"]
    else:
        matches = ET.fromstring(response.content).findall(f"{{{NS}}}sonicMatch")
        ids = [m.find(f"{{{NS}}}entry").get("id") for m in matches]
        first_similarity = float(matches[0].get("similarity"))
    assert ids[0] == start and ids[-1] == end and len(ids) == 4 and len(set(ids)) == 4
    assert first_similarity == 1.0  # similarity relative to the start song


@pytest.mark.parametrize("endpoint, params", [
    ("getSonicSimilarTracks", {"id": "x"}), ("findSonicPath", {"startSongId": "x", "endSongId": "y"}),
    ("getSimilarSongs2", {"id": "x"}),
])
def test_wrong_credentials_get_error_40(proxy, endpoint, params):
    answer = body(proxy.get(f"/rest/{endpoint}", params=AUTH | {"p": "wrong", "f": "json"} | params))
    assert answer["status"] == "failed" and answer["error"]["code"] == 40
    assert all(k in answer for k in HEAD)
    xml = ET.fromstring(proxy.get(f"/rest/{endpoint}", params=AUTH | {"p": "wrong"} | params).content)
    assert xml.get("status") == "failed" and xml.find(f"{{{NS}}}error").get("code") == "40"


def test_missing_parameter_gets_error_10_and_unknown_song_70(proxy):
    missing = body(proxy.get("/rest/findSonicPath", params=AUTH | {"startSongId": "x", "f": "json"}))
    assert missing["error"] == {"code": 10, "message": "Required parameter is missing: endSongId"}
    unknown = body(proxy.get("/rest/getSonicSimilarTracks", params=AUTH | {"id": "nonexistent", "f": "json"}))
    assert unknown["status"] == "failed" and unknown["error"]["code"] == 70
    bad = body(proxy.get("/rest/getSonicSimilarTracks", params=AUTH | {"id": "x", "count": "many", "f": "json"}))
    assert bad["error"] == {"code": 0, "message": "count must be a whole number, got 'many'"}


def test_extensions_list_sonic_similarity(proxy):
    answer = body(proxy.get("/rest/getOpenSubsonicExtensions", params={"f": "json"}))  # public: no credentials
    assert answer["status"] == "ok"
    assert answer["openSubsonicExtensions"] == [{"name": "sonicSimilarity", "versions": [1]}]  # supysonic has none
    xml = ET.fromstring(proxy.get("/rest/getOpenSubsonicExtensions.view").content)
    (extension,) = xml.findall(f"{{{NS}}}openSubsonicExtensions")
    assert extension.get("name") == "sonicSimilarity" and [v.text for v in extension] == ["1"]


def test_instant_mix_from_a_song_and_from_an_artist(setup, proxy):
    server = setup[0]
    by_title = songs(server)
    all_ids = {s["id"] for s in by_title.values()}
    mix = body(proxy.get("/rest/getSimilarSongs", params=AUTH | {"id": by_title["Low Tone"]["id"], "count": 3,
                                                                  "f": "json"}))
    assert len(mix["similarSongs"]["song"]) == 3 and {s["id"] for s in mix["similarSongs"]["song"]} <= all_ids
    artist = by_title["High Tone"]["artistId"]
    mix2 = body(proxy.get("/rest/getSimilarSongs2", params=AUTH | {"id": artist, "count": 4, "f": "json"}))
    assert 0 < len(mix2["similarSongs2"]["song"]) <= 4  # the radio runs dry in 7 tracks
    assert mix2["similarSongs2"]["song"][0] == body(upstream(server, "getSong", id=mix2["similarSongs2"]["song"][0]["id"],
                                                             f="json"))["song"]
    # an id the library knows nothing of: the upstream's own answer (supysonic has no getSimilarSongs2)
    passed = proxy.get("/rest/getSimilarSongs2", params=AUTH | {"id": "nothing", "f": "json"})
    assert passed.status_code == 404 and passed.json()["subsonic-response"]["error"]["message"] == "Unknown method"


def test_radio_playlist_written_to_the_server(setup, capsys):
    server, library, music = setup
    by_path = {s["path"]: s["id"] for s in songs(server).values()}
    for round_ in range(2):  # the second run replaces the first playlist's songs
        length = 3 - round_
        args = ["radio", "Noise Wash", "--length", str(length), "--json", "--to-subsonic", "sonic mix",
                "--library", str(library)]
        with pytest.MonkeyPatch.context() as env:
            env.setenv(PASSWORD_ENV, PASSWORD)
            assert main(args) == 0
        captured = capsys.readouterr()
        tracks = json.loads(captured.out)
        assert f"wrote {length} tracks to the playlist 'sonic mix' on {server.url}" in captured.err
        expected = [by_path[str(__import__("pathlib").Path(t["path"]).relative_to(music))] for t in tracks]
        lists = body(upstream(server, "getPlaylists", f="json"))["playlists"]["playlist"]
        (mine,) = [p for p in lists if p["name"] == "sonic mix"]
        entries = body(upstream(server, "getPlaylist", id=mine["id"], f="json"))["playlist"]["entry"]
        assert [e["id"] for e in entries] == expected


def test_scrobbles_through_the_proxy_are_plays_of_the_user(setup, proxy):
    from soundalike.library import Library, events

    server, library, music = setup
    by_title = songs(server)
    low, high, noise = (by_title[t]["id"] for t in ("Low Chord", "High Tone", "Noise Wash"))
    answers = [
        proxy.get("/rest/scrobble", params=AUTH | {"id": low, "time": 1_700_000_000_000, "f": "json"}),
        proxy.post("/rest/scrobble.view", data=AUTH | {"id": high, "f": "json"}),  # a form: passed on all the same
        proxy.get("/rest/scrobble", params=AUTH | {"id": noise, "submission": "false", "f": "json"}),  # now playing
        proxy.get("/rest/scrobble", params=AUTH | {"id": noise, "p": "wrong", "f": "json"}),
    ]
    assert [body(a)["status"] for a in answers] == ["ok", "ok", "ok", "failed"]  # the upstream's answers
    assert body(answers[3])["error"]["code"] == 40
    with Library(library) as lib:
        plays = events.events(lib.catalogue, USER)
    assert [(e.kind, e.source, e.path) for e in plays] == [("play", "subsonic", str(music / by_title[t]["path"]))
                                                           for t in ("Low Chord", "High Tone")]
    assert plays[0].at == 1_700_000_000.0
