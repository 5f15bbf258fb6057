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
from soundalike.subsonic.client import ALLOW_PLAIN_ENV, PASSWORD_ENV, Client, Credentials
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
        env.setenv(ALLOW_PLAIN_ENV, "1")  # supysonic takes no token: the password itself, on loopback
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


def test_the_plain_password_never_over_http_unless_allowed(served, monkeypatch, capsys):
    import soundalike.subsonic.client as client_module
    from soundalike.errors import ParameterError

    monkeypatch.setattr(client_module, "_warned_plain", set())
    monkeypatch.delenv(ALLOW_PLAIN_ENV)
    with Client(served[0].url, Credentials(USER, PASSWORD)) as client:
        with pytest.raises(ParameterError) as refused:
            client.connect()
    assert str(refused.value) == (f"{served[0].url} does not accept token authentication, and sending the password "
                                  "itself over plain http:// would let anyone on the way read it; use the server's "
                                  f"https:// address, or set {ALLOW_PLAIN_ENV}=1 to send it anyway")
    monkeypatch.setenv(ALLOW_PLAIN_ENV, "1")
    for _ in range(2):
        with Client(served[0].url, Credentials(USER, PASSWORD)) as client:
            assert client.connect().creds.plain
    assert capsys.readouterr().err == (f"warning: {served[0].url} does not accept token authentication: the password "
                                       "itself is sent with every request (hex-encoded, not encrypted)\n")  # once


def _refusing_server(code: int, version: str, seen: list):
    """A server that refuses tokens with error ``code`` and takes ``p``."""
    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(dict(request.url.params))
        if "p" in request.url.params:
            return httpx2.Response(200, json={"subsonic-response": {"status": "ok", "version": version}})
        return httpx2.Response(200, json={"subsonic-response": {"status": "failed", "version": version,
                                                                "error": {"code": code, "message": "no"}}})
    return httpx2.MockTransport(handle)


@pytest.mark.parametrize("code, version, falls_back", [
    (41, "1.16.1", True), (42, "1.16.1", True), (10, "1.12.0", True),  # tokens refused, or not known yet
    (10, "1.16.1", False), (40, "1.12.0", False), (50, "1.16.1", False),
])
def test_the_password_itself_only_when_the_server_takes_no_token(code, version, falls_back, monkeypatch, capsys):
    import soundalike.subsonic.client as client_module
    from soundalike.subsonic.client import SubsonicError

    monkeypatch.setattr(client_module, "_warned_plain", set())
    monkeypatch.delenv(ALLOW_PLAIN_ENV, raising=False)
    seen = []
    client = Client("https://music.example", Credentials("u", "pw"),
                    http=httpx2.Client(transport=_refusing_server(code, version, seen)))
    if falls_back:  # https: allowed without asking, with a warning
        assert client.connect().creds.plain and seen[-1]["p"] == "enc:" + b"pw".hex()
        assert "music.example does not accept token authentication" in capsys.readouterr().err
    else:
        with pytest.raises(SubsonicError) as refused:
            client.connect()
        assert refused.value.code == code and all("p" not in params for params in seen)


@pytest.mark.parametrize("url, message", [
    ("http://[::1", "'http://[::1' is not a valid address of a Subsonic server (Invalid IPv6 URL)"),
    ("http://host:port", "'http://host:port' is not a valid address of a Subsonic server "
                         "(Port could not be cast to integer value as 'port')"),
    ("ftp://host", "'ftp://host' is not the http:// or https:// address of a Subsonic server"),
    ("https://bob:s3cret@music.example/rest", "'https://music.example/rest' was given with a user or password in "
     "the address; give the address alone, the user with --user NAME and the password in "
     "$SOUNDALIKE_SUBSONIC_PASSWORD"),
    ("https://bob@music.example", "'https://music.example' was given with a user or password in the address; give "
     "the address alone, the user with --user NAME and the password in $SOUNDALIKE_SUBSONIC_PASSWORD"),
])
def test_bad_server_addresses_are_one_sentence(url, message, tmp_path, capsys):
    from soundalike.errors import ParameterError
    from soundalike.subsonic.client import server_url

    with pytest.raises(ParameterError) as refused:
        server_url(url)
    assert str(refused.value) == message
    Library(tmp_path / "l.sqlite", create=True).close()
    assert main(["subsonic", "link", url, "--user", "u", "--library", str(tmp_path / "l.sqlite")]) == 2
    assert main(["index", "--subsonic", url, "--user", "u", "--library", str(tmp_path / "l.sqlite")]) == 2
    assert capsys.readouterr().err == f"soundalike: error: {message}\n" * 2


def test_credentials_reach_the_workers_as_initializer_arguments_not_the_environment(served, monkeypatch):
    import pickle

    from soundalike.library import indexer

    monkeypatch.setattr(indexer, "WORKER_SETUP", {})
    monkeypatch.setattr(remote, "_CREDENTIALS", {})
    creds = Credentials(USER, "a secret", plain=True)
    remote.remember(Client("http://one.example", creds))
    remote.remember(Client("http://two.example", Credentials(api_key="key")))
    assert not [k for k, v in os.environ.items() if "a secret" in v or k == "_SOUNDALIKE_SUBSONIC_AUTH"]
    # what a spawned worker receives: the pickled initializer arguments
    (setup,) = pickle.loads(pickle.dumps(tuple(indexer.WORKER_SETUP.items())))
    remote._CREDENTIALS.clear()
    remote._worker_client.cache_clear()
    function, args = setup
    function(*args)
    assert remote._worker_client("http://one.example").creds == creds
    assert remote._worker_client("http://two.example").creds.api_key == "key"
    remote._worker_client.cache_clear()


def test_range_file_keeps_the_most_recently_used_blocks_and_serves_reads_longer_than_its_cache():
    data = np.random.default_rng(0).integers(0, 256, 64 * 200 + 17, dtype=np.uint8).tobytes()
    asked = []

    def fetch(start, end):
        asked.append((start, end))
        return data[start:end + 1]

    block, cached = 64, remote.CACHED_BLOCKS
    source = remote.RangeFile(fetch, len(data), "label", block=block)
    assert source.read(block * (cached + 10)) == data[:block * (cached + 10)]  # more blocks than kept
    assert len(source.blocks) == cached
    # a header read again and again stays while the rest streams past
    rng = np.random.default_rng(1)
    for _ in range(300):
        source.seek(0)
        assert source.read(10) == data[:10]
        start, size = int(rng.integers(0, len(data))), int(rng.integers(1, 5 * block))
        source.seek(start)
        assert source.read(size) == data[start:start + size]
    # block 0: in the long read, then once more after that read pushed it out; never again
    assert 0 in source.blocks and sum(1 for s, _ in asked if s == 0) == 2
    source.seek(len(data) - 5)
    assert source.read(100) == data[-5:] and source.read(1) == b""


class PlaylistServer:
    """An OpenSubsonic server of playlists for an API key of ``bob`` (``token_info``:
    whether it says so), with a public playlist of another user of the same name."""

    def __init__(self, token_info: bool = True, answers_playlist: bool = True, lists_created: bool = True):
        self.token_info, self.answers_playlist, self.lists_created = token_info, answers_playlist, lists_created
        self.playlists = [{"id": "0", "name": "sonic mix", "owner": "carol", "public": True}]
        self.songs: dict[str, list[str]] = {}
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        params = httpx2.QueryParams(request.content.decode()) if request.method == "POST" else request.url.params
        endpoint = request.url.path.rsplit("/", 1)[1]
        body = {"status": "ok", "version": "1.16.1", "openSubsonic": True}
        if endpoint == "tokenInfo" and self.token_info:
            body["tokenInfo"] = {"username": "bob"}
        elif endpoint == "getPlaylists":
            body["playlists"] = {"playlist": [p for p in self.playlists if self.lists_created or p["id"] == "0"]}
        elif endpoint == "createPlaylist":
            playlist_id = params.get("playlistId")
            if playlist_id is None:
                playlist_id = str(len(self.playlists))
                self.playlists.append({"id": playlist_id, "name": params["name"], "owner": "bob"})
            self.songs[playlist_id] = params.get_list("songId")
            if self.answers_playlist:
                body["playlist"] = {"id": playlist_id}
        elif endpoint != "ping":
            body = {"status": "failed", "version": "1.16.1", "error": {"code": 0, "message": "Unknown method"}}
        return httpx2.Response(200, json={"subsonic-response": body})


def playlist_client(server: PlaylistServer) -> Client:
    return Client("https://music.example", Credentials(api_key="key"), http=httpx2.Client(
        transport=httpx2.MockTransport(server)))


@pytest.mark.parametrize("answers_playlist", [True, False])
def test_a_playlist_written_twice_with_an_api_key_is_replaced_not_duplicated(answers_playlist):
    from soundalike.subsonic.playlists import write_playlist

    server = PlaylistServer(answers_playlist=answers_playlist)
    with playlist_client(server) as client:
        first = write_playlist(client, "sonic mix", ["a", "b"])
        again = write_playlist(client, "sonic mix", [f"song{i}" for i in range(1000)])  # a long one: a form
    assert first == again == "1" and [p["owner"] for p in server.playlists] == ["carol", "bob"]
    assert server.songs == {"1": [f"song{i}" for i in range(1000)]}
    assert server.requests[-1].method == "POST" and "apiKey=key" in server.requests[-1].content.decode()


def test_playlist_failures_are_one_sentence():
    from soundalike.subsonic.client import SubsonicError
    from soundalike.subsonic.playlists import write_playlist

    with playlist_client(PlaylistServer(answers_playlist=False, lists_created=False)) as client:
        with pytest.raises(SubsonicError) as lost:
            write_playlist(client, "new mix", ["a"])
    assert str(lost.value) == ("https://music.example: the playlist 'new mix' was created, but getPlaylists does not "
                               "list it")
    from subsonic_server import free_port

    with Client(f"http://127.0.0.1:{free_port()}", Credentials(api_key="key")) as client:
        with pytest.raises(SubsonicError) as unreachable:
            write_playlist(client, "sonic mix", ["a"])
    assert "cannot be reached" in str(unreachable.value)


def test_connecting_that_fails_closes_the_client(monkeypatch):
    from subsonic_server import free_port

    from soundalike.subsonic import commands
    from soundalike.subsonic.client import SubsonicError

    closed = []
    monkeypatch.setattr(Client, "close", lambda self: closed.append(self.url))
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SubsonicError):
        commands.connect(url, "u")
    assert closed == [url]


def test_linking_a_read_only_library_asks_the_server_nothing(tmp_path):
    from soundalike.library.catalogue import LibraryError
    from soundalike.subsonic.link import link

    Library(tmp_path / "l.sqlite", create=True).close()
    server = PlaylistServer()
    with Library(tmp_path / "l.sqlite", readonly=True) as library, playlist_client(server) as client:
        with pytest.raises(LibraryError) as refused:
            link(library.catalogue, client)
    assert "is read-only (the links to the server's songs are stored in it)" in str(refused.value)
    assert server.requests == []
