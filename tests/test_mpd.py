"""The MPD daemon and ``--mpd`` against Debian's real ``mpd``: a null audio output, a
private state directory and a music folder of synthesized (silent) tracks whose vectors
are set by hand, so that what the radio must queue is known."""

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mpd as mpd2
import numpy as np
import pytest

import synth
from conftest import with_permission_checks
from soundalike.audio import TrackMetadata
from soundalike.cli import main
from soundalike.library import Library, events
from soundalike.library.catalogue import ModelDescription, TrackRecord
from soundalike.mpd import Address, address
from soundalike.playlists import RadioSettings, next_track

pytestmark = pytest.mark.skipif(shutil.which("mpd") is None, reason="needs Debian's mpd (.ci/run installs it)")

DIM = 8
TAGS = ("a", "b", "c")
# name: (vector before normalizing, as {dimension: value}; probability of tag "c")
TRACKS = {
    "P": ({0: 1}, 0.1),
    "H": ({0: 1, 1: 0.3}, 0.1),  # the nearest to P: in the library, not in MPD's database
    "X1": ({0: 1, 1: 0.45, 3: 0.1}, 0.1),  # cluster X, nearer to P than cluster Y, X1 nearest
    "X2": ({0: 1, 1: 0.5, 4: 0.1}, 0.1),
    "X3": ({0: 1, 1: 0.55, 5: 0.1}, 0.1),
    "Y1": ({0: 1, 2: 0.6, 3: 0.1}, 0.9),
    "Y2": ({0: 1, 2: 0.62, 4: 0.1}, 0.9),
    "Y3": ({0: 1, 2: 0.64, 5: 0.1}, 0.9),
    "Z1": ({6: 1, 3: 0.1}, 0.1),  # far from the others
    "Z2": ({6: 1, 4: 0.1}, 0.1),
    "Z3": ({6: 1, 5: 0.1}, 0.1),
    "Z4": ({6: 1, 7: 0.1}, 0.1),
}
RATE = 8_000
TIMEOUT = 20.0  # seconds any wait may take before the test fails


def seconds(name: str) -> float:
    """Every track has its own length (no two look like one recording): 40 s and up."""
    return 40.0 + 3 * list(TRACKS).index(name)


def write_track(music: Path, name: str) -> None:
    synth.write(music / f"{name}.flac", np.zeros((1, int(seconds(name) * RATE)), np.float32), RATE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A private MPD in the foreground, on a loopback port and a socket in ``home``; with a
    ``password``, only those who give it may change the queue."""

    def __init__(self, home: Path, music: Path, password: str | None = None):
        self.home, self.music, self.port, self.socket = home, music, free_port(), str(home / "socket")
        self.conf = home / "mpd.conf"
        self.conf.write_text("\n".join([
            f'music_directory "{music}"', f'db_file "{home / "db"}"', f'state_file "{home / "state"}"',
            f'sticker_file "{home / "sticker"}"', f'pid_file "{home / "pid"}"', f'log_file "{home / "log"}"',
            'bind_to_address "127.0.0.1"', f'bind_to_address "{self.socket}"', f'port "{self.port}"',
            'zeroconf_enabled "no"', 'audio_output {', '  type "null"', '  name "null"', '}',
            *([f'password "{password}@read,add,control,admin"', 'default_permissions "read"'] if password else []),
            ""]))
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(["mpd", "--no-daemon", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while True:  # MPD says nothing when it listens: try until it answers
            try:
                client = self.client()
                break
            except ConnectionRefusedError:
                assert self.process.poll() is None and time.monotonic() < deadline, (self.home / "log").read_text()
                time.sleep(0.05)
        wait_until(client, lambda: "updating_db" not in client.status())  # the first scan
        client.disconnect()

    def stop(self) -> int:
        """Stop MPD (it saves its state); its exit status."""
        self.process.terminate()
        return self.process.wait(TIMEOUT)

    def client(self) -> mpd2.MPDClient:
        client = mpd2.MPDClient()
        client.timeout = TIMEOUT
        client.connect("127.0.0.1", self.port)
        return client


def wait_until(client: mpd2.MPDClient, ready, timeout: float = TIMEOUT):
    """``ready()``'s first true answer, checked after each change MPD reports (idle)."""
    deadline = time.monotonic() + timeout
    while not (answer := ready()):
        left = deadline - time.monotonic()
        assert left > 0, "MPD did not get there in time"
        client.idletimeout = left
        try:
            client.idle()
        except TimeoutError:
            pytest.fail("MPD did not get there in time")
        finally:
            client.idletimeout = None
    return answer


def queue(client: mpd2.MPDClient) -> list[str]:
    """The queue's track names."""
    return [Path(song["file"]).stem for song in client.playlistinfo()]


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    return tmp_path_factory.mktemp("music").resolve()


@pytest.fixture(scope="module")
def server(tmp_path_factory, music):
    for name in TRACKS:
        if name != "H":
            write_track(music, name)
    server = Server(tmp_path_factory.mktemp("mpd").resolve(), music)
    try:
        server.start()
        write_track(music, "H")  # after MPD's scan: a file of the library that MPD does not know
        yield server
    finally:
        assert server.stop() == 0


@pytest.fixture(scope="module")
def library(tmp_path_factory, music, server):
    path = tmp_path_factory.mktemp("lib") / "library.sqlite"
    with Library(path, create=True) as library:
        library.catalogue.bind_model(ModelDescription("test", TAGS, (DIM,), (1.0,)))
        for name, (parts, c) in TRACKS.items():
            vector = np.zeros(DIM, np.float32)
            for dim, value in parts.items():
                vector[dim] = value
            library.catalogue.put(TrackRecord(
                path=str(music / f"{name}.flac"), size=1, mtime_ns=1,
                metadata=TrackMetadata(f"artist {name}", name, None, None, seconds(name)), excerpt=0,
                vector=vector, tags=np.array([0.5, 0.5, c], np.float32), patches=vector[None, :],
                starts=np.zeros(1, np.float32)))
        library.refresh_index()
    return path


@pytest.fixture
def player(server):
    """A client of the MPD, its queue cleared."""
    client = server.client()
    client.clear()
    yield client
    client.disconnect()


@pytest.fixture
def late_server(tmp_path, music):
    """An MPD of its own, not started: the test starts it; stopped after."""
    late = Server(tmp_path, music)
    yield late
    if late.process is not None:
        assert late.stop() == 0


def copy_library(library: Path, folder: Path) -> Path:
    """A copy of the library (its folder: the index files too) in ``folder``; its path."""
    shutil.copytree(library.parent, folder)
    return folder / library.name


class Daemon:
    """``soundalike mpd`` in a subprocess; its stderr lines are collected as they come."""

    def __init__(self, library: Path, *args: str, prefix: list[str] = ()):
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen([*prefix, sys.executable, "-m", "soundalike.cli", "mpd", "--library",
                                         str(library), *args],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, text: str, count: int = 1) -> list[str]:
        """The lines holding ``text``, once there are ``count`` of them."""
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.matching(text)) >= count or self.process.poll() is not None,
                                         TIMEOUT), f"no {text!r} from the daemon: {self.lines}"
            assert len(self.matching(text)) >= count, f"the daemon ended: {self.lines}"
            return self.matching(text)

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def stop(self) -> list[str]:
        """SIGTERM; the lines it said after it."""
        said = len(self.lines)
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(TIMEOUT) == 0, self.lines
        self.reader.join(TIMEOUT)  # to the end of its stderr
        return self.lines[said:]


@pytest.fixture
def daemons():
    """Start daemons with ``daemons(library, *args)``; those left running are stopped."""
    started = []

    def start(*args, **kwargs):
        started.append(Daemon(*args, **kwargs))
        return started[-1]

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def test_daemon_fills_the_queue_with_similar_tracks_mpd_knows_and_stops_on_sigterm(server, player, library,
                                                                                 daemons):
    player.add("P.flac")
    player.play(0)
    daemon = daemons(library, "--host", server.socket, "--ahead", "3", "--profile", "fill")
    found = wait_until(player, lambda: len(q := queue(player)) >= 4 and q)
    # H is nearest to P but MPD's database lacks it: cluster X comes next, nearest first
    assert found == ["P", "X1", "X2", "X3"]
    assert daemon.wait_for(f"following MPD at {server.socket} (music in {server.music}), keeping 3 songs ahead")
    assert daemon.wait_for("H.flac is in the library but not in MPD's database") == [
        f"note: {server.music / 'H.flac'} is in the library but not in MPD's database; such tracks are left out "
        "(update MPD's database: mpc update)"]
    assert daemon.wait_for("queued", 3) == [f"queued artist {n} - {n}" for n in ("X1", "X2", "X3")]
    assert daemon.stop() == ["stopped (SIGTERM)"]
    assert queue(player) == found  # nothing more was queued


@pytest.fixture
def read_only_library(library, tmp_path):
    """A copy of the library in a folder this process cannot write, and the command prefix that makes it so."""
    prefix = with_permission_checks()
    copy = copy_library(library, tmp_path / "read-only")
    for path in [*copy.parent.iterdir(), copy.parent]:
        path.chmod(0o555)
    yield copy, prefix
    copy.parent.chmod(0o755)


@pytest.mark.parametrize("stored", [True, False], ids=["library", "read-only-library"])
def test_a_skip_is_recorded_and_the_radio_steers_away_from_it(server, player, library, daemons, stored, request):
    profile = "skips-stored" if stored else "skips-in-memory"  # a profile of its own: no skips before
    if not stored:
        library, prefix = request.getfixturevalue("read_only_library")
    player.add("P.flac")
    player.play(0)
    daemon = daemons(library, "--host", server.socket, "--ahead", "1", "--profile", profile,
                     prefix=[] if stored else prefix)
    assert wait_until(player, lambda: len(q := queue(player)) == 2 and q) == ["P", "X1"]
    player.seekcur(seconds("P") - 1)  # P plays to its end: a play
    assert wait_until(player, lambda: player.status().get("song") == "1" and len(q := queue(player)) == 3 and q) == [
        "P", "X1", "X2"]
    player.next()  # X1 left at once: a skip
    daemon.wait_for("skipped artist X1 - X1 at 0 s: steering away from it")
    # away from X1: to cluster Y, where a radio that had not seen the skip would have queued X3
    assert wait_until(player, lambda: len(q := queue(player)) == 4 and q) == ["P", "X1", "X2", "Y2"]
    with Library(library) as lib:
        ids = {Path(t.path).stem: t.id for t in lib.catalogue.tracks()}
        unskipped = next_track(lib, [lib.seed(lib.catalogue.track(ids["P"]))], [ids["X1"], ids["X2"]],
                               RadioSettings(), allowed=np.array(sorted(i for n, i in ids.items() if n != "H")))
        assert unskipped.title == "X3"
        stored_events = events.events(lib.catalogue, profile)
    if stored:
        assert [(e.kind, Path(e.path).stem, e.source) for e in stored_events] == [("play", "P", "mpd"),
                                                                                  ("skip", "X1", "mpd")]
        assert seconds("P") - 2 <= stored_events[0].seconds <= seconds("P") and stored_events[1].seconds < 2
    else:
        assert stored_events == [] and daemon.matching("cannot be written") == [
            f"note: the library at {library} cannot be written; this session's skips are kept in memory only"]
    daemon.stop()


def test_the_daemon_reconnects_when_mpd_restarts_and_remembers_the_session(server, player, library, daemons):
    player.add("Z1.flac")
    player.play(0)
    daemon = daemons(library, "--host", "127.0.0.1", "--port", str(server.port), "--music-dir", str(server.music),
                     "--ahead", "2", "--profile", "restart")
    before = wait_until(player, lambda: len(q := queue(player)) == 3 and q)
    assert before[0] == "Z1" and all(name.startswith("Z") for name in before)
    player.disconnect()
    assert server.stop() == 0
    daemon.wait_for(f"lost MPD at 127.0.0.1:{server.port}")
    server.start()
    daemon.wait_for(f"reconnected to MPD at 127.0.0.1:{server.port}")
    client = server.client()
    try:
        assert queue(client) == before  # MPD's state file kept the queue
        client.play(0)
        client.delete(2)  # the listener takes a queued track off: the radio queues another, never it again
        after = wait_until(client, lambda: len(q := queue(client)) == 3 and q)
        assert after[:2] == before[:2] and after[2] not in before and after[2].startswith("Z")
    finally:
        client.disconnect()
    daemon.stop()


def test_a_track_that_leaves_the_library_is_forgotten_and_the_radio_goes_on(server, player, library, daemons,
                                                                           tmp_path):
    library = copy_library(library, tmp_path / "library")
    player.add("P.flac")
    player.play(0)
    daemon = daemons(library, "--host", server.socket, "--ahead", "1", "--profile", "gone")
    assert wait_until(player, lambda: len(q := queue(player)) == 2 and q) == ["P", "X1"]
    with Library(library) as lib:  # what a re-index does when P's file is gone
        assert lib.catalogue.remove([str(server.music / "P.flac")]) == 1
    player.seekcur(seconds("P") - 1)  # P plays to its end: a play of a track the library no longer has
    assert wait_until(player, lambda: len(q := queue(player)) == 3 and q)[:2] == ["P", "X1"]  # seeded by X1 now
    player.next()  # X1 left at once: a skip, recorded
    daemon.wait_for("skipped artist X1 - X1")
    assert daemon.matching("left the library") == [
        "note: artist P - P has left the library (re-indexed?); the radio goes on without it"]
    with Library(library) as lib:
        assert [(e.kind, Path(e.path).stem) for e in events.events(lib.catalogue, "gone")] == [("skip", "X1")]
    assert daemon.stop() == ["stopped (SIGTERM)"]


def test_a_tag_keeps_the_radio_to_its_tracks(server, player, library, daemons):
    player.add("P.flac")
    player.play(0)
    daemon = daemons(library, "--host", server.socket, "--ahead", "2", "--tag", "c", "--profile", "tag")
    found = wait_until(player, lambda: len(q := queue(player)) == 3 and q)
    assert found[0] == "P" and all(name.startswith("Y") for name in found[1:])
    daemon.stop()


def test_the_daemon_says_in_one_line_when_it_cannot_find_the_music(server, library):
    proc = subprocess.run([sys.executable, "-m", "soundalike.cli", "mpd", "--library", str(library),
                           "--host", "127.0.0.1", "--port", str(server.port)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"soundalike: error: MPD at 127.0.0.1:{server.port} tells its music directory only through its local "
        "socket; connect through it (--host /run/mpd/socket, see bind_to_address in mpd.conf) or give --music-dir"]


@pytest.mark.parametrize("host, said", [
    ("no-such-host.invalid", "cannot reach MPD at no-such-host.invalid:6600: no host named no-such-host.invalid "
                             "can be found ("),
    ("{tmp}/no-socket", "cannot reach MPD at {tmp}/no-socket: no such socket; is MPD running, with this path as a "
                        "bind_to_address of its mpd.conf?"),
], ids=["unknown-host", "no-socket"])
def test_the_daemon_says_in_one_line_when_the_address_names_nothing(library, tmp_path, host, said):
    host, said = host.format(tmp=tmp_path), said.format(tmp=tmp_path)
    proc = subprocess.run([sys.executable, "-m", "soundalike.cli", "mpd", "--library", str(library), "--host", host,
                           "--port", "6600"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"soundalike: error: {said}")


def test_the_daemon_waits_for_an_mpd_that_is_not_up_yet(late_server, library, daemons):
    daemon = daemons(library, "--host", "127.0.0.1", "--port", str(late_server.port), "--music-dir",
                     str(late_server.music), "--profile", "late")
    daemon.wait_for("waiting for MPD")
    time.sleep(1.0)  # two more attempts, unsaid
    late_server.start()
    daemon.wait_for(f"following MPD at 127.0.0.1:{late_server.port}")
    assert daemon.matching("MPD at") == [
        f"waiting for MPD at 127.0.0.1:{late_server.port} (Connection refused); retrying",
        f"following MPD at 127.0.0.1:{late_server.port} (music in {late_server.music}), keeping 5 songs ahead"]
    daemon.stop()


def test_the_daemon_waits_for_a_socket_that_went_with_mpd(late_server, library, daemons):
    daemon = daemons(library, "--host", late_server.socket, "--profile", "socket-gone")
    late_server.start()
    daemon.wait_for(f"following MPD at {late_server.socket}")
    Path(late_server.socket).unlink()  # as systemd empties MPD's RuntimeDirectory when it stops MPD
    assert late_server.stop() == 0
    daemon.wait_for("waiting for MPD")
    late_server.start()
    daemon.wait_for(f"reconnected to MPD at {late_server.socket}")
    assert daemon.matching("waiting for MPD") == [
        f"waiting for MPD at {late_server.socket} (no such socket; is MPD running, with this path as a "
        "bind_to_address of its mpd.conf?); retrying"]
    daemon.stop()


def test_the_password_is_asked_never_read_from_the_command_line(tmp_path, music, library, monkeypatch, capsys):
    locked = Server(tmp_path, music, password="secret")
    locked.start()
    asked = []

    def answer(password):
        monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or password)

    radio = ["radio", "P", "--length", "2", "--artist-gap", "0", "--mpd", "--library", str(library),
             "--port", str(locked.port), "--music-dir", str(music)]
    at = ["--host", "127.0.0.1"]
    client = locked.client()
    try:
        capsys.readouterr()
        assert main([*radio, *at]) == 2  # no password: MPD lets read, not add
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"soundalike: error: MPD at 127.0.0.1:{locked.port} refused a command: "
            "[4@0] {add} you don't have permission for \"add\"")
        answer("wrong")
        assert main([*radio, *at, "--password"]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"soundalike: error: MPD at 127.0.0.1:{locked.port} refused the password"]
        answer("secret")
        assert main([*radio, *at, "--password"]) == 0
        assert asked == [f"MPD password for 127.0.0.1:{locked.port}: "] * 2
        assert queue(client) == ["H", "X1"]  # this MPD scanned H too
        monkeypatch.setenv("MPD_HOST", "secret@127.0.0.1")  # mpc's convention, asked nothing
        assert main(radio) == 0
        assert len(asked) == 2 and queue(client) == ["H", "X1"] * 2
        capsys.readouterr()
        with pytest.raises(SystemExit):  # a password on the command line, where ps shows it, is refused
            main(["mpd", "--library", str(library), "--password", "secret"])
        assert "unrecognized arguments: secret" in capsys.readouterr().err
    finally:
        client.disconnect()
        assert locked.stop() == 0


def test_radio_and_path_add_their_playlist_to_the_queue(server, player, library, capsys):
    player.add("Z4.flac")
    where = ["--library", str(library), "--host", "127.0.0.1", "--port", str(server.port),
             "--music-dir", str(server.music)]
    capsys.readouterr()
    assert main(["radio", "P", "--length", "3", "--artist-gap", "0", "--mpd", *where]) == 0
    out, err = capsys.readouterr()
    assert queue(player) == ["Z4", "X1", "X2"] and out == ""  # the radio's H is left out: MPD lacks it
    assert err.splitlines() == [
        f"note: 1 of the 3 tracks left out: not in MPD's database (music in {server.music}), "
        f"e.g. {server.music / 'H.flac'}", "added 2 tracks to MPD's queue"]
    player.play(0)
    assert main(["path", "Z1", "Y1", "--length", "3", "--json", "--mpd", "--replace", *where]) == 0
    journey = [Path(t["path"]).stem for t in json.loads(capsys.readouterr().out)]
    assert journey[0] == "Z1" and journey[-1] == "Y1" and len(journey) == 3
    assert queue(player) == journey and player.status()["state"] == "play"
    assert main(["radio", "P", "--replace", *where]) == 2
    assert capsys.readouterr().err.endswith("soundalike: error: --replace clears MPD's queue: give it with --mpd\n")


def test_the_address_follows_mpds_conventions():
    assert address(environ={}) == address("localhost", 6600, environ={})
    assert address(environ={"MPD_HOST": "secret@music.lan", "MPD_PORT": "6601"}) == Address("music.lan", 6601,
                                                                                           "secret")
    assert address(environ={"MPD_HOST": "@mpd"}).host == "@mpd"
    assert address("/run/mpd/socket", environ={}).label == "/run/mpd/socket"
