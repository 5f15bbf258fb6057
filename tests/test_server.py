"""The HTTP API over a library of synthesized tracks (httpx2 through FastAPI's TestClient)."""

import os
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

import synth
from songs import indexed_library
from soundalike import ParameterError
from soundalike.cli import main
from soundalike.server import check_bind, create_app


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return indexed_library(tmp_path_factory)


@pytest.fixture(scope="module")
def client(library):
    with TestClient(create_app(library, max_upload=2_000_000)) as c:
        yield c


def ids_by_title(client) -> dict[str, int]:
    return {t["title"]: t["id"] for t in client.get("/api/tracks", params={"limit": 100}).json() if t["title"]}


def test_openapi_documents_every_action(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/api/tracks", "/api/tracks/{track_id}", "/api/tracks/{track_id}/audio",
                  "/api/tracks/{track_id}/similar", "/api/tracks/{track_id}/spectrogram.png", "/api/radio/next",
                  "/api/path", "/api/playlist.m3u8", "/api/upload", "/api/map", "/api/library", "/api/artists",
                  "/api/albums", "/api/tracks/{track_id}/cover"):
        assert route in paths


def test_search_by_words_and_by_tag(client):
    found = client.get("/api/tracks", params={"q": "chord"}).json()
    assert {t["title"] for t in found} == {"Low Chord", "Mid Chord", "Low Chord (copy)"}
    tags = client.get("/api/library").json()["tags"]
    ranked = client.get("/api/tracks", params={"tag": tags[0], "min_prob": 0, "limit": 3}).json()
    assert len(ranked) == 3
    library = client.app.state.library
    with library.reading():
        ids, probs = library.tag_scores(tags[0])
    probability = dict(zip(ids.tolist(), probs.tolist()))
    assert [probability[t["id"]] for t in ranked] == sorted(probs.tolist(), reverse=True)[:3]
    both = client.get("/api/tracks", params={"tag": tags[0], "min_prob": 0, "q": "Ann"}).json()
    assert len(both) == 3 and all(t["artist"] == "Ann" for t in both)


def test_track_and_similar_explain_why(client):
    ids = ids_by_title(client)
    track = client.get(f"/api/tracks/{ids['Low Chord']}").json()
    assert track["artist"] == "Ann" and len(track["tags"]) == 10
    recs = client.get(f"/api/tracks/{ids['Low Chord']}/similar", params={"k": 3}).json()
    assert len(recs) == 3
    assert ids["Low Chord"] not in [r["id"] for r in recs]
    assert ids["Low Chord (copy)"] not in [r["id"] for r in recs]  # a duplicate of the seed
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    for r in recs:
        assert 1 <= len(r["passages"]) <= 3
        assert all(0 <= p["seed_start"] < 7 and 0 <= p["track_start"] < 7 for p in r["passages"])
        assert isinstance(r["shared_tags"], list)


def test_similar_with_a_tag_filter(client):
    ids = ids_by_title(client)
    library = client.app.state.library
    tags = client.get("/api/library").json()["tags"]
    filtered = 0
    for tag in tags:
        allowed = set(library.tag_filter(tag, 0.3).tolist())
        recs = client.get(f"/api/tracks/{ids['Low Chord']}/similar", params={"tag": tag, "min_prob": 0.3}).json()
        assert {r["id"] for r in recs} <= allowed - {ids["Low Chord"]}
        filtered += len(allowed) < len(ids)
    assert filtered  # some tag really narrowed the choice


def test_audio_is_streamed_with_range_requests(client, library):
    ids = ids_by_title(client)
    whole = client.get(f"/api/tracks/{ids['Mid Chord']}/audio")
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/api/tracks/{ids['Mid Chord']}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"


@pytest.mark.parametrize("url", [
    "/api/tracks/..%2F..%2F..%2Fetc%2Fpasswd/audio",
    "/api/tracks/../../etc/passwd",
    "/api/tracks/%2Fetc%2Fpasswd/audio",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/../../../../etc/passwd",
    "/api/tracks/999999/audio",
    "/api/tracks/-1/audio",
])
def test_no_path_from_a_request_reaches_the_file_system(client, url):
    response = client.get(url)
    assert response.status_code in (404, 422)
    assert b"root:" not in response.content


def test_spectrogram_is_a_png(client):
    ids = ids_by_title(client)
    image = client.get(f"/api/tracks/{ids['Mid Chord']}/spectrogram.png")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def time_axis(response) -> tuple[float, float]:
    """(seconds shown, where they begin) of a spectrogram, from its time-axis header "x0,x1,seconds,start"."""
    x0, x1, seconds, start = map(float, response.headers["X-Soundalike-Time-Axis"].split(","))
    assert 0 < x0 < x1 < 1
    return seconds, start


def test_spectrogram_draws_the_window_from_start(client):
    track = client.get(f"/api/tracks/{ids_by_title(client)['Low Chord']}").json()  # a 7 s chord that swells
    url = f"/api/tracks/{track['id']}/spectrogram.png"
    first, later = client.get(url), client.get(url, params={"start": 3})
    assert later.status_code == 200 and later.content.startswith(b"\x89PNG")
    assert time_axis(first) == (pytest.approx(7, abs=0.05), 0)
    assert time_axis(later) == (pytest.approx(4, abs=0.05), 3)
    assert later.content != first.content
    assert client.get(url, params={"start": "3.0"}).content == later.content  # drawn the same each time


def test_spectrogram_refuses_a_start_past_the_end(client):
    from soundalike.passages import format_time

    track = client.get(f"/api/tracks/{ids_by_title(client)['Low Chord']}").json()
    url, duration = f"/api/tracks/{track['id']}/spectrogram.png", track["duration"]
    for start, sentence in [
            (duration, f"track {track['id']} is {format_time(duration)} long: its spectrogram cannot start at "
                       f"{format_time(duration)}"),
            (600, f"track {track['id']} is {format_time(duration)} long: its spectrogram cannot start at 10:00"),
            (-1, "start must be at least 0"), ("soon", "start must be a number"),
            ("inf", "start must be a finite number"), ("nan", "start must be a number, not NaN")]:
        response = client.get(url, params={"start": start})
        assert (response.status_code, response.json()) == (422, {"detail": sentence})


def test_radio_next_respects_history_and_settings(client):
    ids = ids_by_title(client)
    seed = ids["Low Chord"]
    history = []
    for _ in range(4):
        nxt = client.post("/api/radio/next", json={"seeds": [seed], "history": history, "artist_gap": 0}).json()
        assert nxt["id"] not in history and nxt["id"] != seed
        history.append(nxt["id"])
    assert ids["Low Chord (copy)"] not in history
    again = client.post("/api/radio/next", json={"seeds": [seed], "history": history[:1], "artist_gap": 0}).json()
    assert again["id"] == history[1]  # stateless: the same history gives the same next track
    bad = client.post("/api/radio/next", json={"seeds": [seed], "drunk": 3})
    assert bad.status_code == 422


def test_path_and_its_m3u(client):
    ids = ids_by_title(client)
    path = client.post("/api/path", json={"songs": [ids["Low Chord"], ids["High Tone"]], "length": 4}).json()
    assert len(path) == 4 and path[0]["id"] == ids["Low Chord"] and path[-1]["id"] == ids["High Tone"]
    m3u = client.post("/api/playlist.m3u8", json={"ids": [t["id"] for t in path]})
    assert m3u.status_code == 200 and "attachment" in m3u.headers["content-disposition"]
    lines = m3u.text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[1].startswith("#EXTINF:7,Ann - Low Chord")
    assert sum(1 for line in lines if line.startswith("/")) == 4


def test_upload_is_analysed_not_added_and_not_kept(client, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = client.get("/api/library").json()["tracks"]
    song = synth.write(tmp_path / "mine.mp3", synth.chord(6.0, 22_050, seed=1), 22_050)
    with open(song, "rb") as f:
        result = client.post("/api/upload", files={"file": ("mine.mp3", f, "audio/mpeg")}, params={"k": 3}).json()
    assert result["name"] == "mine.mp3" and len(result["similar"]) == 3 and result["tags"]
    assert client.get("/api/library").json()["tracks"] == before
    assert sorted(os.listdir(tmp_path)) == ["mine.mp3"]  # the temporary copy is gone


@pytest.mark.parametrize("content, status, message", [
    (b"", 400, "empty"),
    (b"this is not audio at all" * 10, 422, "bad.mp3"),
    (b"\0" * 2_000_001, 413, "larger than the limit"),
])
def test_bad_uploads_get_clear_4xx(client, tmp_path, monkeypatch, content, status, message):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    response = client.post("/api/upload", files={"file": ("bad.mp3", content, "audio/mpeg")})
    assert response.status_code == status and message in response.json()["detail"]
    assert os.listdir(tmp_path) == []


def test_map_has_every_track_once(client):
    data = client.get("/api/map").json()
    n = client.get("/api/library").json()["tracks"]
    assert len(data["ids"]) == len(set(data["ids"])) == len(data["x"]) == len(data["labels"]) == n
    assert all(0 <= t < len(data["tags"]) for t in data["tag"])
    assert np.ptp(data["x"]) > 0


def test_the_map_is_drawn_at_start_when_asked(library):
    from soundalike.server import projection

    projection.library_map.cache_clear()
    app = create_app(library, map_at_start=True)
    deadline = time.monotonic() + 60
    while projection.library_map.cache_info().currsize == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert projection.library_map.cache_info().currsize == 1
    with TestClient(app) as c:
        assert c.get("/api/map").status_code == 200
    assert projection.library_map.cache_info().hits == 1  # the request found it drawn


def test_a_map_that_cannot_be_drawn_at_start_is_one_logged_line(library, monkeypatch, caplog):
    import threading

    from soundalike.server import projection

    def fail(*args):
        raise RuntimeError("no space left for numba's cache")

    monkeypatch.setattr(projection, "library_map", fail)
    crashed = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    create_app(library, map_at_start=True)
    for drawing in threading.enumerate():  # (not listed when it has ended already)
        if drawing.name == "soundalike-map":
            drawing.join(30)
    assert not crashed
    assert "the map could not be drawn in advance: no space left for numba's cache" in caplog.text


def test_unknown_track_is_404(client):
    assert client.get("/api/tracks/424242").status_code == 404
    assert client.get("/api/tracks/424242/similar").status_code == 404


def test_the_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<audio id=\"player\"" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_token_is_required_on_every_request(library):
    with TestClient(create_app(library, token="s3cret")) as c:
        assert 'name="token"' in c.get("/").text  # the sign-in page (test_server_signin.py)
        for url in ("/api/library", "/api/tracks/1/audio", "/openapi.json", "/static/app.js"):
            assert c.get(url).status_code == 401
        assert c.get("/api/library", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/library", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/tracks/1/audio", params={"token": "s3cret"}).status_code == 200


def test_binding_beyond_this_machine_needs_a_token():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(ParameterError, match="--token"):
        check_bind("0.0.0.0", None)


def test_serve_refuses_a_public_address_without_token(library, capsys, monkeypatch):
    monkeypatch.delenv("SOUNDALIKE_TOKEN", raising=False)
    assert main(["serve", "--library", str(library), "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err
