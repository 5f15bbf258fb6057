"""A Subsonic server's songs indexed through its API, linked again after changes, and
the client's authentication (supysonic on loopback; mock transports for what it lacks)."""

import hashlib
import os
import tempfile
from pathlib import Path

import httpx2
import numpy as np
import pytest

import songs as collection
import synth
from subsonic_server import PASSWORD, USER, Supysonic
from soundalike.cli import main
from soundalike.library import Library
from soundalike.subsonic import remote
from soundalike.subsonic.client import PASSWORD_ENV, Client, Credentials
from soundalike.subsonic.remote import song_key

LONG_SECONDS = 60.0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, music folder): supysonic over the test songs and a 60 s one."""
    music = collection.make_music(tmp_path_factory.mktemp("music"))
    long = music / "long" / "long_chord.flac"
    long.parent.mkdir()
    synth.write(long, np.tile(collection.render(("chord", 3), seconds=LONG_SECONDS), (2, 1)), collection.RATE)
    with pytest.MonkeyPatch.context() as env, Supysonic(music, tmp_path_factory.mktemp("supysonic")) as server:
        env.setenv(PASSWORD_ENV, PASSWORD)
        yield server, music


def keys(library: Path) -> set[str]:
    with Library(library) as lib:
        return {t.path for t in lib.catalogue.tracks()}


def server_keys(server) -> set[str]:
    with Client(server.url, Credentials(USER, PASSWORD)) as client:
        return {song_key(server.url, s["id"]) for s in client.connect().songs()}


def test_index_link_and_again_after_changes(served, tmp_path, capsys):
    server, music = served
    remote_lib, local_lib = tmp_path / "remote.sqlite", tmp_path / "local.sqlite"
    index = ["index", "--subsonic", server.url, "--user", USER, "--library", str(remote_lib), "--workers", "1"]
    assert main(index) == 0
    assert "indexed 8, unchanged 0, removed 0, failed 0" in capsys.readouterr().out
    assert keys(remote_lib) == server_keys(server) and len(keys(remote_lib)) == 8
    with Library(remote_lib) as lib:  # tags and duration from the server
        tracks = lib.catalogue.tracks()
    assert sorted(t.duration for t in tracks) == [7.0] * 7 + [LONG_SECONDS]
    assert {t.title for t in tracks} >= {"Low Chord", "High Tone", "Noise Wash"}
    assert main(["index", str(music), "--library", str(local_lib), "--workers", "1"]) == 0
    link = ["subsonic", "link", server.url, "--user", USER, "--library", str(local_lib)]
    assert main(link) == 0
    capsys.readouterr()

    # a song added, one removed; the server scans again
    collection.write_song(music, "d/new_tone.mp3", "Di", "New Tone", None, ("tone", 440))
    (music / "b" / "noise.ogg").unlink()
    server.rescan()
    assert main(index) == 0
    assert "indexed 1, unchanged 7, removed 1, failed 0" in capsys.readouterr().out
    assert keys(remote_lib) == server_keys(server)
    assert main(link) == 1  # the new song is not a track of the local library
    out = capsys.readouterr().out
    assert "8 songs (1 new, 0 changed, 1 removed since the last link); 7 are library tracks (7 by path), 1 are not" \
        in out
    assert "  not in the library: d/new_tone.mp3 (id " in out
    # the remote library links to its own songs
    assert main(["subsonic", "link", server.url, "--user", USER, "--library", str(remote_lib)]) == 0
    assert "8 are library tracks (8 by remote)" in capsys.readouterr().out


def test_only_the_excerpt_is_fetched_where_ranges_are_honoured(served):
    from soundalike.library.indexer import analyse_file
    from soundalike.models import load_model

    server, music = served
    with Client(server.url, Credentials(USER, PASSWORD)) as client:
        client.connect()
        (song,) = [s for s in client.songs() if s["path"] == "long/long_chord.flac"]
        remote.remember(client)
        fetched = []
        with remote.open_song(client, song["id"], "label") as source:
            assert isinstance(source, remote.RangeFile) and source.size == song["size"]
            source.fetch = _counting(source.fetch, fetched)
            from soundalike import analysis

            result = analysis.analyse_track(source, load_model("msd-musicnn"), excerpt=2, duration=song["duration"])
    assert len(result.starts) == 2
    assert 0 < sum(fetched) < 0.4 * song["size"]  # 2 patches of 3 s: a fraction of the 60 s file
    record = analyse_file(remote.song_state(server.url, song), load_model("msd-musicnn"), 2)
    assert (record.metadata.duration, record.excerpt) == (60.0, 2)


def _counting(fetch, log):
    def counted(start, end):
        data = fetch(start, end)
        log.append(len(data))
        return data
    return counted


def _server_without_ranges(body: bytes, seen: list):
    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path.endswith("/ping"):
            return httpx2.Response(200, json={"subsonic-response": {"status": "ok", "version": "1.16.1"}})
        return httpx2.Response(200, content=body, headers={"content-type": "audio/flac",
                                                            "content-disposition": "inline; filename=x.flac"})
    return httpx2.MockTransport(handle)


def test_a_server_without_ranges_is_read_from_a_temporary_file_always_removed(served):
    data = (served[1] / "a" / "low_chord.flac").read_bytes()
    seen = []
    client = Client("http://server.invalid", Credentials("u", "pw"),
                    http=httpx2.Client(transport=_server_without_ranges(data, seen)))
    with remote.open_song(client, "1", "label") as path:
        assert Path(path).read_bytes() == data and Path(path).parent == Path(tempfile.gettempdir())
    assert not os.path.exists(path)
    with pytest.raises(RuntimeError), remote.open_song(client, "1", "label") as path:
        raise RuntimeError("analysis failed")
    assert not os.path.exists(path)
    # token authentication: the password itself never on the wire
    client.connect()
    for request in seen:
        params = dict(request.url.params)
        assert "p" not in params and params["u"] == "u"
        assert params["t"] == hashlib.md5(("pw" + params["s"]).encode()).hexdigest()


def test_the_plain_password_only_where_tokens_are_refused(served):
    with Client(served[0].url, Credentials(USER, PASSWORD)) as client:  # supysonic 0.7.9 refuses tokens
        assert client.connect().creds.plain
        assert client.params()["p"] == "enc:" + PASSWORD.encode().hex()
    with Client(served[0].url, Credentials(USER, "wrong")) as client:
        with pytest.raises(Exception) as refused:
            client.connect()
        assert getattr(refused.value, "code", None) == 40
