"""Keep MPD's queue full: radio for the Music Player Daemon.

MPD names a song by its URI, a path relative to MPD's music directory; the library
names a track by its absolute path. The music directory joins the two: MPD tells it
over its local socket (the ``config`` command), or the user gives it.

:class:`Radio` follows what MPD plays with the ``idle`` command (no polling). When a
song is left, it decides how (see :func:`soundalike.library.events.is_skip`) and
records a play or a skip; when fewer than ``ahead`` songs are queued after the
current one, it appends the next radio tracks (:func:`soundalike.playlists.next_track`)
steered by the songs just played and queued, and by the listener's taste
(:func:`soundalike.feedback.taste`), so that a skip steers the radio away for the
rest of the session. It queues only library tracks that MPD's database holds, never
repeats a track of the session, and reconnects with backoff when MPD goes away (but
gives up at once when the first address names nothing: an unknown host, no socket
file). A track that leaves the library meanwhile (a re-index) is forgotten, with a note.

The daemon says what it does on stderr, a line per change, unprefixed like the other
commands' progress lines ("playing A - T", "queued A - T", "lost MPD at ..."); what
the listener may want to act on starts with "note: "; what ends it is one
"soundalike: error: ..." line (exit status 2).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import mpd as mpd2  # python-mpd2
import numpy as np

from . import feedback, playlists
from .errors import ParameterError, SoundalikeError
from .library import Library, Track
from .library.events import DEFAULT_PROFILE, Event, is_skip, record

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6600
TIMEOUT = 10.0  # seconds MPD has to answer a command
END_SLACK = 2.0  # seconds: a song left this close to its end finished by itself
RETRY_FIRST, RETRY_MOST = 0.5, 30.0  # seconds between reconnection attempts, doubling


class MpdError(SoundalikeError):
    """MPD refuses what soundalike asks, or its songs cannot be found on this machine."""


class Unreachable(MpdError):
    """MPD at ``where`` cannot be reached for ``cause`` (not running, wrong address,
    connection lost); ``nowhere`` when the address names nothing: a host name no
    resolver knows, a socket path with no file."""

    def __init__(self, where: Address, cause: str, *, nowhere: bool = False):
        super().__init__(f"cannot reach MPD at {where.label}: {cause}")
        self.cause, self.nowhere = cause, nowhere


class Stopped(BaseException):
    """SIGINT or SIGTERM asked the daemon to stop (a BaseException: nothing swallows it)."""


@dataclasses.dataclass(frozen=True)
class Address:
    """Where MPD listens: host (a name, an address, a socket path or ``@abstract``), port, password."""

    host: str
    port: int
    password: str | None = None

    @property
    def label(self) -> str:
        return self.host if self.host.startswith(("/", "@")) else f"{self.host}:{self.port}"


def address(host: str | None = None, port: int | None = None, *, ask_password: bool = False,
            environ=os.environ) -> Address:
    """MPD's address as its clients find it: the values given, else $MPD_HOST
    (``[password@]host``, where host may be a socket path or ``@abstract``) and
    $MPD_PORT, else localhost:6600. The password is asked on the terminal when
    ``ask_password`` (never taken from the command line, where ``ps`` shows it), else
    the one in $MPD_HOST."""
    host = host or environ.get("MPD_HOST") or DEFAULT_HOST
    password = None
    if "@" in host[1:] and not host.startswith("@"):
        password, host = host.split("@", 1)
    if port is None:
        text = environ.get("MPD_PORT", str(DEFAULT_PORT))
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ParameterError(f"MPD_PORT must be a port number from 1 to 65535, got {text!r}")
        port = int(text)
    where = Address(host, port)
    if ask_password:
        password = getpass.getpass(f"MPD password for {where.label}: ")
    return dataclasses.replace(where, password=password or None)


def connect(where: Address) -> mpd2.MPDClient:
    """A client connected (and authenticated) to MPD; Unreachable, or MpdError for a wrong password."""
    client = mpd2.MPDClient()
    client.timeout = TIMEOUT
    client.idletimeout = None
    try:
        client.connect(where.host, where.port)
    except socket.gaierror as exc:
        raise Unreachable(where, f"no host named {where.host} can be found ({exc.strerror})",
                          nowhere=True) from None
    except FileNotFoundError:
        raise Unreachable(where, "no such socket; is MPD running, with this path as a bind_to_address "
                                 "of its mpd.conf?", nowhere=True) from None
    except (OSError, mpd2.ConnectionError) as exc:
        raise Unreachable(where, cause(exc)) from None
    if where.password:
        try:
            client.password(where.password)
        except mpd2.CommandError:
            _close(client)
            raise MpdError(f"MPD at {where.label} refused the password") from None
    return client


def cause(exc: Exception) -> str:
    """An OS error's cause in words ("Connection refused"), else its message."""
    return getattr(exc, "strerror", None) or str(exc) or "connection closed"


def _close(client: mpd2.MPDClient) -> None:
    try:
        client.disconnect()
    except (OSError, mpd2.ConnectionError):
        pass


def refused(where: Address, exc: mpd2.CommandError) -> MpdError:
    return MpdError(f"MPD at {where.label} refused a command: {exc}")


def music_directory(client: mpd2.MPDClient, where: Address, given: str | os.PathLike | None = None) -> Path:
    """MPD's music directory on this machine: ``given``, else as MPD tells a local client."""
    if given is None:
        try:
            told = client.config()
        except mpd2.CommandError:
            raise MpdError(f"MPD at {where.label} tells its music directory only through its local socket; "
                           "connect through it (--host /run/mpd/socket, see bind_to_address in mpd.conf) "
                           "or give --music-dir") from None
        if not told or "://" in told:
            raise MpdError(f"MPD at {where.label} has its music at {told or 'no folder'}, not in a folder of "
                           "this machine; give --music-dir where it is mounted here")
        given = told
    root = Path(given).expanduser()
    if not root.is_dir():
        raise MpdError(f"MPD's music directory {root} is not a folder on this machine; give --music-dir")
    return root.resolve()


def uri_of(root: Path, path: str) -> str | None:
    """MPD's URI of the file at absolute ``path``, None when it lies outside ``root``."""
    try:
        return PurePosixPath(Path(path).relative_to(root)).as_posix()
    except ValueError:
        return None


def in_database(client: mpd2.MPDClient, uri: str) -> bool:
    return bool(client.find("file", uri))


def enqueue(where: Address, tracks: Sequence[Track], *, music_dir: str | os.PathLike | None = None,
            replace: bool = False, note: Callable[[str], None] = print) -> int:
    """Add ``tracks`` to MPD's queue (cleared first when ``replace``; playing goes on
    with the new queue); tracks MPD's database lacks are left out, with a note.
    Returns how many were added."""
    client = connect(where)
    try:
        root = music_directory(client, where, music_dir)
        uris, left_out = [], []
        for track in tracks:
            uri = uri_of(root, track.path)
            if uri is not None and in_database(client, uri):
                uris.append(uri)
            else:
                left_out.append(track.path)
        if not uris:
            raise MpdError(f"none of the {len(tracks)} tracks is in MPD's database (music in {root}); update it "
                           "(mpc update), or give --music-dir where MPD's music is mounted here")
        if left_out:
            note(f"{len(left_out)} of the {len(tracks)} tracks left out: not in MPD's database (music in {root}), "
                 f"e.g. {left_out[0]}")
        playing = client.status().get("state") == "play"
        client.command_list_ok_begin()
        if replace:
            client.clear()
        for uri in uris:
            client.add(uri)
        if replace and playing and uris:
            client.play(0)
        client.command_list_end()
        return len(uris)
    except mpd2.CommandError as exc:
        raise refused(where, exc) from None
    except (OSError, mpd2.ConnectionError) as exc:
        raise MpdError(f"lost MPD at {where.label}: {cause(exc)}") from None
    finally:
        _close(client)


@dataclasses.dataclass(frozen=True)
class Playing:
    """The current song as last seen: MPD's song id and URI, the library track (None
    when not in the library), position ``elapsed`` (s) at ``seen`` (monotonic s),
    MPD's ``duration`` (s, None for a stream) and state (play or pause)."""

    song_id: str
    uri: str
    track: Track | None
    elapsed: float
    seen: float
    duration: float | None
    state: str

    def position(self, now: float) -> float:
        """Where the song is at monotonic time ``now``, seconds."""
        moved = self.elapsed + (now - self.seen if self.state == "play" else 0.0)
        return min(moved, self.duration) if self.duration else moved


class Radio:
    """The daemon: follows MPD (see the module's docstring). ``say`` prints a progress line."""

    def __init__(self, library: Library, where: Address, settings: playlists.RadioSettings, *, ahead: int,
                 music_dir: str | os.PathLike | None = None, tag: str | None = None, min_prob: float = 0.5,
                 profile: str = DEFAULT_PROFILE, say: Callable[[str], None] = print):
        if ahead < 1:
            raise ParameterError(f"ahead must be >= 1, got {ahead}")
        self.library, self.where, self.settings, self.ahead = library, where, settings, ahead
        self.music_dir, self.profile, self.say = music_dir, profile, say
        self.tagged = library.tag_filter(tag, min_prob) if tag else None
        self.rng = np.random.default_rng(settings.random_seed)
        self.played: list[Track] = []  # library tracks MPD played this session, in order
        self.session_events: list[Event] = []  # kept here when the library cannot be written
        self.current: Playing | None = None
        self.unknown: set[int] = set()  # library tracks MPD's database lacks
        self.queued: set[int] = set()  # tracks this session queued: never again, even when taken off the queue
        self.said: set[str] = set()
        self._allowed: tuple[tuple, np.ndarray] | None = None  # ((generation, root), ids under root)
        self.root: Path | None = None  # MPD's music directory, known once connected
        if library.catalogue.readonly:
            self.say(f"note: the library at {library.path} cannot be written; this session's skips are "
                     "kept in memory only")

    def once(self, key: str, line: str) -> None:
        """Say ``line`` the first time ``key`` comes up."""
        if key not in self.said:
            self.said.add(key)
            self.say(line)

    # --- connection ----------------------------------------------------------------
    def run(self) -> None:
        """Follow MPD until stopped, reconnecting with backoff; MpdError when MPD refuses."""
        delay, connected_before = RETRY_FIRST, False
        while True:
            try:
                client = connect(self.where)
            except Unreachable as exc:
                if exc.nowhere and not connected_before:
                    raise
                self.once("unreachable", f"waiting for MPD at {self.where.label} ({exc.cause}); retrying")
                time.sleep(delay)
                delay = min(2 * delay, RETRY_MOST)
                continue
            self.said.discard("unreachable")
            delay = RETRY_FIRST
            try:
                self.root = music_directory(client, self.where, self.music_dir)
                self.say(f"{'reconnected to' if connected_before else 'following'} MPD at {self.where.label} "
                         f"(music in {self.root}), keeping {self.ahead} song{'s' * (self.ahead != 1)} ahead")
                connected_before = True
                self.follow(client)
            except (OSError, mpd2.ConnectionError) as exc:
                self.say(f"lost MPD at {self.where.label} ({cause(exc)}); reconnecting")
            except mpd2.CommandError as exc:
                raise refused(self.where, exc) from None
            finally:
                _close(client)

    def follow(self, client: mpd2.MPDClient) -> None:
        """Observe, then wait for the next change, for ever."""
        self.current = None  # how long MPD was away is unknown: the song it played counts for nothing
        while True:
            self.observe(client)
            if "database" in client.idle("player", "playlist", "database"):
                self.unknown.clear()

    # --- what is played ------------------------------------------------------------
    def observe(self, client: mpd2.MPDClient) -> None:
        """Note a song left or started, then top up the queue."""
        status = client.status()
        now = time.monotonic()
        song = None
        if status.get("state") in ("play", "pause") and "songid" in status:
            previous = self.current
            if previous is not None and previous.song_id == status["songid"]:
                uri, track = previous.uri, previous.track
            else:
                uri = client.currentsong().get("file", "")
                track = self.library.catalogue.track_by_path(str(self.root / uri))
            duration = status.get("duration")
            song = Playing(status["songid"], uri, track, float(status.get("elapsed", 0.0)), now,
                           float(duration) if duration else None, status["state"])
        if self.current is not None and (song is None or song.song_id != self.current.song_id):
            self.left(self.current, self.current.position(now), stopped=song is None)
        if song is not None and (self.current is None or song.song_id != self.current.song_id):
            self.started(song)
        self.current = song
        if song is not None:
            self.top_up(client, int(status["song"]), int(status["playlistlength"]))

    def started(self, song: Playing) -> None:
        if song.track is None:
            self.once(f"unmapped {song.uri}", f"note: {song.uri} is not in the library; "
                      "the radio follows the songs it knows")
            return
        if not self.played or self.played[-1].id != song.track.id:
            self.played.append(song.track)
        self.say(f"playing {song.track.label}")

    def left(self, song: Playing, position: float, *, stopped: bool) -> None:
        """Record how ``song`` was left at ``position`` s: played (to its end, or long
        enough), or skipped (by hand, early; stopping is not skipping)."""
        if song.track is None:
            return
        ended = song.duration is not None and position >= song.duration - END_SLACK
        if not ended and is_skip(position, song.track.duration or song.duration):
            if not stopped:
                self.note(song.track, "skip", position)
                self.say(f"skipped {song.track.label} at {position:.0f} s: steering away from it")
        else:
            self.note(song.track, "play", position)

    def note(self, track: Track, kind: str, seconds: float) -> None:
        """Record an event of ``track``, unless it left the library meanwhile."""
        if self.library.catalogue.readonly:
            self.session_events.append(Event(self.profile, track.id, track.path, kind, seconds, "mpd", time.time()))
            return
        try:
            record(self.library.catalogue, track.id, kind, profile=self.profile, seconds=seconds, source="mpd")
        except ParameterError:  # the only one record can raise here: no such track (any more)
            self.gone(track)

    def gone(self, track: Track) -> None:
        self.once(f"gone {track.id}", f"note: {track.label} has left the library (re-indexed?); "
                  "the radio goes on without it")

    def in_library(self, tracks: Sequence[Track]) -> list[Track]:
        """Those of ``tracks`` the library still holds (with a note for each gone)."""
        there = {t.id for t in self.library.catalogue.tracks({t.id for t in tracks})}
        for track in tracks:
            if track.id not in there:
                self.gone(track)
        return [t for t in tracks if t.id in there]

    # --- what is queued ------------------------------------------------------------
    def top_up(self, client: mpd2.MPDClient, position: int, length: int) -> None:
        """Append radio tracks until ``ahead`` songs follow the current one at ``position``."""
        missing = self.ahead - (length - position - 1)
        if missing <= 0:
            return
        upcoming = [self.library.catalogue.track_by_path(str(self.root / song["file"]))
                    for song in client.playlistinfo()[position + 1:]]
        self.played = self.in_library(self.played)
        # oldest first, each track where it came last
        sequence = list({t.id: t for t in reversed([*self.played, *filter(None, upcoming)])}.values())[::-1]
        if not sequence:
            self.once("nothing known", "note: nothing played or queued is in the library yet; waiting")
            return
        seeds = [self.library.seed(sequence[0])]
        history = [t.id for t in sequence[1:]]
        taste = feedback.taste(self.library, self.profile, extra=self.session_events)
        for _ in range(missing):
            track = self.next_in_mpd(client, seeds, history, taste)
            if track is None:
                self.once("dry", "note: the radio has run out of tracks to queue")
                return
            self.said.discard("dry")
            try:
                client.addid(uri_of(self.root, track.path))
            except mpd2.CommandError:  # gone from MPD's database since it was found there
                self.unknown.add(track.id)
                continue
            history.append(track.id)
            self.queued.add(track.id)
            self.say(f"queued {track.label}")

    def next_in_mpd(self, client, seeds, history, taste) -> Track | None:
        """The next radio track that MPD's database holds, or None."""
        while True:
            track = playlists.next_track(self.library, seeds, history, self.settings, self.rng, taste,
                                         allowed=self.allowed())
            if track is None or in_database(client, uri_of(self.root, track.path)):
                return track
            self.unknown.add(track.id)
            self.once("unknown", f"note: {track.path} is in the library but not in MPD's database; such "
                      "tracks are left out (update MPD's database: mpc update)")

    def allowed(self) -> np.ndarray:
        """Ids (sorted) the radio may queue: library tracks in MPD's music directory,
        of the tag when one was asked, less those MPD's database lacks and those queued before."""
        key = (self.library.catalogue.generation, self.root)
        if self._allowed is None or self._allowed[0] != key:
            inside = np.array(sorted(t.id for t in self.library.catalogue.tracks()
                                     if uri_of(self.root, t.path) is not None), np.int64)
            if not len(inside):
                raise MpdError(f"none of the library's tracks lies in MPD's music directory {self.root}; "
                               "index that folder, or give --music-dir")
            self._allowed = (key, inside if self.tagged is None else np.intersect1d(inside, self.tagged))
        return np.setdiff1d(self._allowed[1], np.array(sorted(self.unknown | self.queued), np.int64))


def serve(radio: Radio) -> None:
    """Run ``radio`` until SIGINT or SIGTERM, which end it with one line."""
    def stop(signum, frame):
        raise Stopped(signal.Signals(signum).name)

    before = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        radio.run()
    except Stopped as exc:
        radio.say(f"stopped ({exc})")
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
