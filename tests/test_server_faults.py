"""The HTTP API under faults: a library changed by another process while it serves,
uploads that are slow, huge or abandoned, requests at and beyond every bound (issue 12)."""

import contextlib
import ctypes
import gc
import os
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import anyio
import httpx2
import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

import synth
from serving import serving
from test_server import client, library  # noqa: F401  (the same fixtures: one library per module)
from test_server_browse import add_track, copy_library
from soundalike import audio
from soundalike.library.catalogue import Catalogue
from soundalike.library.catalogue import MAX_TRACK_ID
from soundalike.server import FORM_OVERHEAD, RADIO_HISTORY, RETRY_AFTER, create_app

BOUNDARY = "soundalike-test-boundary"


@pytest.fixture(scope="module")
def ids(client) -> dict[str, int]:
    return {t["title"]: t["id"] for t in client.get("/api/tracks").json() if t["title"]}


@pytest.fixture
def changing(library, tmp_path):
    """A copy of the library, for a test to change."""
    return copy_library(library, tmp_path)


def form(content: bytes, name: str = "song.mp3") -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: audio/mpeg\r\n\r\n").encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()


def raw_upload(port: int, body: bytes, length: int | None = None) -> socket.socket:
    """A connection that has sent an upload (``length``: the Content-Length it claims)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                 f"Content-Length: {len(body) if length is None else length}\r\n\r\n".encode() + body)
    return sock


# --- a library that changes while the server runs ---------------------------------------
def test_every_route_follows_tracks_added_and_removed(changing, tmp_path):
    with TestClient(create_app(changing)) as client:
        ids = {t["title"]: t["id"] for t in client.get("/api/tracks").json() if t["title"]}
        assert client.get(f"/api/tracks/{ids['Low Chord']}/similar").status_code == 200  # index in use
        before = client.get("/api/library").json()["tracks"]
        with Catalogue(changing) as other:
            mid = other.track(ids["Mid Chord"])
            copy = shutil.copy(mid.path, tmp_path / "new_chord.m4a")
            new = add_track(other, mid.id, copy, "Dee", "New Chord", None, 30.0)  # 23 s longer: not a duplicate
            gone = ids["High Tone"]
            other.remove([other.track(gone).path])
        tag = client.get("/api/library").json()["tags"][0]

        def found(response) -> set[int]:
            assert response.status_code == 200, response.text
            return {t["id"] for t in response.json()}

        assert client.get("/api/library").json()["tracks"] == before
        assert client.get(f"/api/tracks/{new}").json()["title"] == "New Chord"
        similar = found(client.get(f"/api/tracks/{mid.id}/similar", params={"k": 20}))
        assert new in similar
        assert gone not in similar | found(client.get(f"/api/tracks/{new}/similar", params={"k": 20}))
        assert new in found(client.get("/api/tracks", params={"tag": tag, "min_prob": 0, "limit": 100}))
        assert gone not in found(client.get("/api/tracks", params={"tag": tag, "min_prob": 0, "limit": 100}))
        assert new in found(client.get("/api/tracks", params={"artist": "Dee"}))
        assert gone not in found(client.get("/api/tracks", params={"limit": 100}))
        assert found(client.get("/api/tracks", params={"q": "new chord"})) == {new}
        assert client.post("/api/radio/next", json={"seeds": [new]}).status_code == 200
        assert client.post("/api/radio/next", json={"seeds": [ids["Low Chord"]], "history": [gone]}).status_code == 200
        assert client.post("/api/path", json={"songs": [new, ids["Low Chord"]], "length": 4}).json()[0]["id"] == new
        assert client.post("/api/playlist.m3u8", json={"ids": [new]}).status_code == 200
        assert new in client.get("/api/map").json()["ids"] and gone not in client.get("/api/map").json()["ids"]
        assert client.get(f"/api/tracks/{new}/audio").content == Path(copy).read_bytes()
        assert client.get(f"/api/tracks/{new}/spectrogram.png").content.startswith(b"\x89PNG")
        with open(mid.path, "rb") as f:
            uploaded = client.post("/api/upload", files={"file": ("mid.m4a", f, "audio/mp4")}, params={"k": 20})
        assert new in {t["id"] for t in uploaded.json()["similar"]}
        assert gone not in {t["id"] for t in uploaded.json()["similar"]}
        for response in (client.get(f"/api/tracks/{gone}"), client.get(f"/api/tracks/{gone}/similar"),
                         client.get(f"/api/tracks/{gone}/audio"), client.get(f"/api/tracks/{gone}/spectrogram.png"),
                         client.get(f"/api/tracks/{gone}/cover"),
                         client.post("/api/radio/next", json={"seeds": [gone]}),
                         client.post("/api/path", json={"songs": [gone, new]}),
                         client.post("/api/playlist.m3u8", json={"ids": [new, gone]})):
            assert response.status_code == 404 and str(gone) in response.json()["detail"]


def test_no_500_while_another_process_writes_the_library(changing):
    with TestClient(create_app(changing), raise_server_exceptions=False) as client, Catalogue(changing) as other:
        ids = {t["title"]: t["id"] for t in client.get("/api/tracks").json() if t["title"]}
        low, noise = ids["Low Chord"], ids["Noise Wash"]
        tag = client.get("/api/library").json()["tags"][0]
        stop = threading.Event()

        def write():  # tracks come and go, one transaction each, as an index run writes them
            n = 0
            while not stop.is_set():
                add_track(other, list(ids.values())[n % len(ids)], f"/elsewhere/{n}.mp3", "Dee", f"Copy {n}",
                          None, 60.0 + n)
                if n >= 2:
                    other.remove([f"/elsewhere/{n - 2}.mp3"])
                n += 1

        calls = [lambda: client.get(f"/api/tracks/{low}/similar"),
                 lambda: client.post("/api/radio/next", json={"seeds": [low], "artist_gap": 0}),
                 lambda: client.post("/api/path", json={"songs": [low, noise], "length": 4}),
                 lambda: client.get("/api/tracks", params={"tag": tag}),
                 lambda: client.get("/api/map"),
                 lambda: client.get("/api/library")]
        writer = threading.Thread(target=write)
        writer.start()
        try:
            with ThreadPoolExecutor(4) as pool:
                statuses = list(pool.map(lambda i: calls[i % len(calls)]().status_code, range(120)))
        finally:
            stop.set()
            writer.join()
    assert statuses.count(200) == len(statuses)


# --- uploads ----------------------------------------------------------------------------
@pytest.fixture
def endless(monkeypatch):
    """Uploads decode slowly, for a minute, unless abandoned: ``started`` and ``stopped`` tell."""
    state = SimpleNamespace(started=threading.Event(), stopped=threading.Event())

    def stream(path, *, sr, **kwargs):
        state.started.set()
        try:
            for _ in range(1200):
                time.sleep(0.05)
                yield np.zeros(sr // 10, np.float32)
        finally:
            state.stopped.set()

    monkeypatch.setattr(audio, "stream", stream)
    return state


def test_reads_do_not_wait_for_an_analysis_and_uploads_beyond_the_slots_get_503(library, ids, endless, tmp_path):
    song = synth.write(tmp_path / "mine.wav", synth.chord(3.0, 22_050), 22_050).read_bytes()
    with serving(create_app(library, max_analyses=1)) as port:
        slow = raw_upload(port, form(song))
        try:
            assert endless.started.wait(20)
            with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                t = time.perf_counter()
                assert http.get(f"/api/tracks/{ids['Low Chord']}/similar").status_code == 200
                assert http.post("/api/radio/next", json={"seeds": [ids["Low Chord"]]}).status_code == 200
                assert http.get("/api/map").status_code == 200
                assert http.get("/api/library").status_code == 200
                assert time.perf_counter() - t < 5
                refused = http.post("/api/upload", files={"file": ("b.wav", song, "audio/wav")})
                assert refused.status_code == 503 and refused.headers["retry-after"] == str(RETRY_AFTER)
                assert "try again" in refused.json()["detail"]
        finally:
            slow.close()  # the client goes away: its analysis is abandoned, its slot freed
        assert endless.stopped.wait(10)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 10
            while (status := http.post("/api/upload", files={"file": ("e.wav", b"", "audio/wav")}).status_code) == 503:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert status == 400  # empty: the slot took it


def test_an_upload_too_large_by_its_length_is_refused_before_its_body(library):
    with serving(create_app(library, max_upload=1_000_000)) as port:
        with raw_upload(port, b"", length=10**12) as sock:  # claims a terabyte, sends nothing
            sock.settimeout(10)
            reply = b""
            while b"larger" not in reply and (part := sock.recv(65536)):
                reply += part
    reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "larger than the limit of 1000000 bytes" in reply


def test_an_upload_is_cut_at_the_limit_while_it_streams(library, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    limit, chunk, total = 100_000, 64 * 1024, 64 * 2**20
    app = create_app(library, max_upload=limit)
    received, sent = 0, []

    async def receive():  # a body without Content-Length (chunked), 64 MB unless cut
        nonlocal received
        body = form(b"")[:-len(f"\r\n--{BOUNDARY}--\r\n")] if received == 0 else b"\0" * chunk
        received += len(body)
        return {"type": "http.request", "body": body, "more_body": received < total}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/upload", "raw_path": b"/api/upload", "query_string": b"", "root_path": "",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]}
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert received <= limit + FORM_OVERHEAD + chunk
    assert os.listdir(tmp_path) == []


# --- bounds -----------------------------------------------------------------------------
def test_a_radio_with_a_huge_history_answers_at_once(client, ids):
    every = list(ids.values())
    history = [every[i % len(every)] for i in range(100_000 - 1)] + [ids["Low Chord"]]
    t = time.perf_counter()
    response = client.post("/api/radio/next", json={"seeds": [ids["Mid Chord"]], "history": history, "artist_gap": 0})
    assert time.perf_counter() - t < 2
    assert response.status_code == 200
    recent = set(history[-RADIO_HISTORY:])
    assert response.json() is None or response.json()["id"] not in recent


BEYOND = 2**63
LARGEST = f"at most {MAX_TRACK_ID}"
BAD_REQUESTS = {  # name: (method, url, body, the sentence answered)
    "track id 2^63": ("GET", f"/api/tracks/{BEYOND}", None, f"track_id must be {LARGEST}"),
    "audio id 2^63": ("GET", f"/api/tracks/{BEYOND}/audio", None, f"track_id must be {LARGEST}"),
    "cover id 2^63": ("GET", f"/api/tracks/{BEYOND}/cover", None, f"track_id must be {LARGEST}"),
    "spectrogram id 2^63": ("GET", f"/api/tracks/{BEYOND}/spectrogram.png", None, f"track_id must be {LARGEST}"),
    "similar id 2^64": ("GET", f"/api/tracks/{2**64}/similar", None, f"track_id must be {LARGEST}"),
    "similar k": ("GET", "/api/tracks/1/similar?k=201", None, "k must be at most 200"),
    "similar k not a number": ("GET", "/api/tracks/1/similar?k=ten", None, "k must be a whole number"),
    "exclude_artist not a boolean": ("GET", "/api/tracks/1/similar?exclude_artist=maybe", None,
                                     "exclude_artist must be true or false"),
    "radio seed 2^63": ("POST", "/api/radio/next", {"seeds": [BEYOND]}, f"seeds[0] must be {LARGEST}"),
    "radio history 2^63": ("POST", "/api/radio/next", {"seeds": [1], "history": [BEYOND]},
                           f"history[0] must be {LARGEST}"),
    "radio without seeds": ("POST", "/api/radio/next", {"seeds": []}, "seeds must have at least 1 item"),
    "radio seeds not a list": ("POST", "/api/radio/next", {"seeds": 1}, "seeds must be a list"),
    "radio keep_on not whole": ("POST", "/api/radio/next", {"seeds": [1], "keep_on": 2.5},
                                "keep_on must be a whole number"),
    "radio negative random_seed": ("POST", "/api/radio/next", {"seeds": [1], "drunk": 0.5, "random_seed": -1},
                                   "random_seed must be at least 0"),
    "radio NaN": ("POST", "/api/radio/next", '{"seeds": [1], "drunk": NaN}', "drunk must be a number, not NaN"),
    "radio Infinity": ("POST", "/api/radio/next", '{"seeds": [1], "drunk": Infinity}', "drunk must be at most 1"),
    "radio body a list": ("POST", "/api/radio/next", "[1, 2]", "the body must be a JSON object"),
    "path id 2^63": ("POST", "/api/path", {"songs": [1, BEYOND]}, f"songs[1] must be {LARGEST}"),
    "path of one song": ("POST", "/api/path", {"songs": [1]}, "songs must have at least 2 items"),
    "path negative random_seed": ("POST", "/api/path", {"songs": [1, 2], "random_seed": -5},
                                  "random_seed must be at least 0"),
    "playlist id 2^63": ("POST", "/api/playlist.m3u8", {"ids": [BEYOND]}, f"ids[0] must be {LARGEST}"),
    "q of 1,000 words": ("GET", "/api/tracks?q=" + "+".join(["a"] * 1000), None,
                         "q must be at most 200 characters long"),
    "q of 60,000 characters": ("GET", "/api/tracks?q=" + "x" * 60_000, None,  # the client sends no longer URL
                               "q must be at most 200 characters long"),
    "min_prob NaN": ("GET", "/api/tracks/1/similar?min_prob=nan", None, "min_prob must be a number, not NaN"),
    "upload without a file": ("POST", "/api/upload", None, "file is required"),
}


@pytest.mark.parametrize("method, url, body, sentence", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_requests_beyond_the_bounds_get_a_422_sentence(client, method, url, body, sentence):
    content = body if isinstance(body, str) else None
    response = client.request(method, url, json=None if content else body, content=content,
                              headers={"content-type": "application/json"} if content else None)
    assert response.status_code == 422
    assert response.json() == {"detail": sentence}


def test_a_body_that_is_not_json_is_a_400_sentence(client):
    response = client.post("/api/radio/next", content='{"seeds": [1]', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "the body is not valid JSON"}


def test_the_largest_id_is_a_clean_404(client):
    assert client.get(f"/api/tracks/{MAX_TRACK_ID}").status_code == 404
    assert client.post("/api/radio/next", json={"seeds": [MAX_TRACK_ID], "random_seed": 2**32 - 1}).status_code == 404


def test_openapi_documents_the_errors_in_one_shape(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]
    upload = schema["paths"]["/api/upload"]["post"]["responses"]
    assert {"400", "413", "422", "503"} <= set(upload)
    similar = schema["paths"]["/api/tracks/{track_id}/similar"]["get"]
    assert {"404", "422"} <= set(similar["responses"])
    assert similar["parameters"][0]["schema"]["maximum"] == MAX_TRACK_ID
    for path in schema["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]


# --- the schema, fuzzed -------------------------------------------------------------------
OPERATIONS = [("GET", "/api/library"), ("GET", "/api/tracks"), ("GET", "/api/tracks/{track_id}"),
              ("GET", "/api/artists"), ("GET", "/api/albums"), ("GET", "/api/tracks/{track_id}/cover"),
              ("GET", "/api/tracks/{track_id}/audio"), ("GET", "/api/tracks/{track_id}/spectrogram.png"),
              ("GET", "/api/tracks/{track_id}/similar"), ("POST", "/api/radio/next"), ("POST", "/api/path"),
              ("POST", "/api/playlist.m3u8"), ("POST", "/api/upload"), ("GET", "/api/map"),
              ("POST", "/api/feedback"), ("POST", "/api/listened"), ("GET", "/api/feedback"),
              ("POST", "/api/foryou/next"), ("GET", "/api/families"), ("GET", "/api/families/members"),
              ("GET", "/api/families/{number}/tracks"), ("GET", "/api/families/{number}/playlist.m3u8"),
              ("GET", "/api/tracks/{track_id}/passages"), ("POST", "/api/passages/upload")]


@pytest.fixture(scope="module")
def api_schema(client):
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    assert {(o.ok().method.upper(), o.ok().path) for o in schema.get_all_operations()} == set(OPERATIONS)
    return schema


@pytest.mark.parametrize("method, path, mode", [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}") for method, path in OPERATIONS
    for mode in GenerationMode if mode is GenerationMode.POSITIVE or path not in ("/api/library", "/api/map")])
def test_no_request_gets_a_500_or_an_undocumented_answer(api_schema, method, path, mode):
    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    @settings(max_examples=25, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def answers_as_documented(case):
        case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                       response_schema_conformance])

    answers_as_documented()


# --- memory -------------------------------------------------------------------------------
def resident_mb() -> float:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so that RSS counts what is kept
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_spectrograms_do_not_grow_the_server(client, ids):
    every = list(ids.values())

    def render(i):
        assert client.get(f"/api/tracks/{every[i % len(every)]}/spectrogram.png").status_code == 200

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(render, range(24)))  # warm-up: caches, arenas, fonts per thread
        before = resident_mb()
        list(pool.map(render, range(120)))
    grown = resident_mb() - before
    assert grown < 25, f"{grown:.0f} MB more after 120 spectrograms"  # the leak of issue 12: 0.46 MB each
