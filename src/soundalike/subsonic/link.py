"""``soundalike subsonic link URL``: which library track each of a server's songs is.

The answer is kept in the library file, in tables of this module's own (the
catalogue's schema is untouched): ``subsonic_servers`` (the servers linked, with the
user that linked them; never a password) and ``subsonic_songs`` (each song as the
server last described it, and the library track it is, or NULL).

A song is matched by its path first: servers report paths relative to their music
folder, so a library track whose absolute path ends with ``/`` + that path is the
song (when exactly one does). Else by tags: the same artist, title and album
(case-insensitive; an album only one side knows does not count against) and a
duration within ``DURATION_TOLERANCE`` s, the nearest duration winning. A song that
soundalike analysed through the API itself (``index --subsonic``) is its own track.
Every run reads every song, so songs added, changed and removed since the last are
picked up, and every song is matched again (the library may have changed too).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections import Counter, defaultdict

from ..library.catalogue import Catalogue, Track, read_only, table_exists
from ..errors import ParameterError
from .client import Client, server_url
from .remote import parse_key, song_key

DURATION_TOLERANCE = 2.5  # seconds: servers report whole seconds
SCHEMA = """
CREATE TABLE IF NOT EXISTS subsonic_servers (server TEXT PRIMARY KEY, "user" TEXT, linked_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS subsonic_songs (
    server TEXT NOT NULL,
    song_id TEXT NOT NULL,
    path TEXT, artist TEXT, title TEXT, album TEXT,
    duration REAL, size INTEGER, created TEXT,
    track_id INTEGER,              -- the library track it is; NULL when none matched
    matched_by TEXT,               -- 'path', 'tags' or 'remote'
    PRIMARY KEY (server, song_id)
);
CREATE INDEX IF NOT EXISTS subsonic_songs_track ON subsonic_songs(server, track_id);
"""
SONG_FIELDS = ("path", "artist", "title", "album", "duration", "size", "created")
# "user" quoted: a keyword in PostgreSQL, a plain name in SQLite either way


@dataclasses.dataclass
class LinkReport:
    """What a link run found: counts of songs, and the unmatched ones as (id, label)."""

    songs: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    matched: Counter = dataclasses.field(default_factory=Counter)  # how -> songs ('path', 'tags', 'remote')
    unmatched: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def ensure_tables(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


def remember_server(catalogue: Catalogue, server: str, user: str | None) -> None:
    """Record that this library speaks to ``server`` as ``user`` (for ``--to-subsonic``)."""
    ensure_tables(catalogue.db)
    catalogue.db.execute("INSERT INTO subsonic_servers VALUES (?, ?, ?) ON CONFLICT(server) DO UPDATE "
                         'SET "user" = excluded."user", linked_at = excluded.linked_at', (server, user, time.time()))


def servers(catalogue: Catalogue) -> list[tuple[str, str | None]]:
    """(server, user) of every server linked to or indexed into this library."""
    if not table_exists(catalogue.db, "subsonic_songs"):
        return []
    return catalogue.db.execute('SELECT server, "user" FROM subsonic_servers ORDER BY server').fetchall()


def link(catalogue: Catalogue, client: Client) -> LinkReport:
    """Read every song of ``client``'s server and match each to a library track
    (LibraryError first when the library cannot be written)."""
    if catalogue.readonly:
        raise read_only(catalogue.path, "the links to the server's songs are stored in it")
    songs = list(client.songs())
    db, server, report = catalogue.db, client.url, LinkReport(songs=len(songs))
    ensure_tables(db)
    before = {row[0]: row[1:] for row in db.execute(
        f"SELECT song_id, {', '.join(SONG_FIELDS)} FROM subsonic_songs WHERE server = ?", (server,))}
    matcher = Matcher(catalogue.tracks())
    rows = []
    for song in songs:
        fields = tuple(_field(song, name) for name in SONG_FIELDS)
        if song["id"] not in before:
            report.added += 1
        elif before[song["id"]] != fields:
            report.changed += 1
        track, how = matcher.match(song, catalogue.track_by_path(song_key(server, song["id"])))
        if track is None:
            report.unmatched.append((song["id"], song.get("path") or _label(song)))
        else:
            report.matched[how] += 1
        rows.append((server, song["id"], *fields, track.id if track else None, how))
    gone = set(before) - {song["id"] for song in songs}
    report.removed = len(gone)
    db.execute("BEGIN IMMEDIATE")  # one transaction: a run that fails leaves the former links
    try:
        db.execute("DELETE FROM subsonic_songs WHERE server = ?", (server,))
        db.executemany(f"INSERT INTO subsonic_songs (server, song_id, {', '.join(SONG_FIELDS)}, track_id, matched_by) "
                       f"VALUES ({', '.join('?' * (len(SONG_FIELDS) + 4))})", rows)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    remember_server(catalogue, server, client.creds.user)
    return report


def _field(song: dict, name: str):
    value = song.get(name)
    if name == "duration" and value is not None:
        return float(value)
    return value


def _label(song: dict) -> str:
    return " - ".join(str(song[k]) for k in ("artist", "title") if song.get(k)) or song["id"]


def _fold(text: str | None) -> str:
    return (text or "").strip().casefold()


class Matcher:
    """Library tracks indexed by file name and by (artist, title), to match songs."""

    def __init__(self, tracks: list[Track]):
        self.by_name: dict[str, list[Track]] = defaultdict(list)
        self.by_tags: dict[tuple[str, str], list[Track]] = defaultdict(list)
        for track in tracks:
            if parse_key(track.path) is None:
                self.by_name[os.path.basename(track.path)].append(track)
            if track.title:
                self.by_tags[_fold(track.artist), _fold(track.title)].append(track)

    def match(self, song: dict, remote: Track | None) -> tuple[Track | None, str | None]:
        """(the library track that is ``song``, how it was matched), or (None, None).
        ``remote``: the track soundalike analysed of this very song, if any."""
        if remote is not None:
            return remote, "remote"
        relative = (song.get("path") or "").lstrip("/")
        if relative:
            ends = "/" + relative.replace("\\", "/")
            same = [t for t in self.by_name.get(os.path.basename(relative), ()) if t.path.replace(os.sep, "/")
                    .endswith(ends)]
            if len(same) == 1:
                return same[0], "path"
        album, duration = _fold(song.get("album")), song.get("duration")
        candidates = [t for t in self.by_tags.get((_fold(song.get("artist")), _fold(song.get("title"))), ())
                      if not (album and t.album and _fold(t.album) != album)
                      and (duration is None or t.duration is None or abs(t.duration - duration) <= DURATION_TOLERANCE)]
        if not candidates:
            return None, None
        return min(candidates, key=lambda t: abs((t.duration or 0) - (duration or 0))), "tags"


def track_for_song(catalogue: Catalogue, server: str, song_id: str) -> Track | None:
    """The library track a server's song is (linked, or analysed through the API)."""
    track = catalogue.track_by_path(song_key(server, song_id))
    if track is not None or not table_exists(catalogue.db, "subsonic_songs"):
        return track
    row = catalogue.db.execute("SELECT track_id FROM subsonic_songs WHERE server = ? AND song_id = ?",
                               (server, song_id)).fetchone()
    return catalogue.track(row[0]) if row and row[0] is not None else None


def songs_for_tracks(catalogue: Catalogue, server: str, tracks: list[Track]) -> list[str | None]:
    """The server's song id of each track (None where it has none), in order."""
    linked = {}
    if table_exists(catalogue.db, "subsonic_songs"):
        linked = dict(catalogue.db.execute("SELECT track_id, song_id FROM subsonic_songs WHERE server = ? "
                                           "AND track_id IS NOT NULL ORDER BY song_id DESC", (server,)).fetchall())
    out = []
    for track in tracks:
        key = parse_key(track.path)
        out.append(key[1] if key and key[0] == server else linked.get(track.id))
    return out


def the_server(catalogue: Catalogue, url: str | None) -> tuple[str, str | None]:
    """(server, user) a command writes to: ``url`` if given (it must be linked), else the
    only server linked to the library. ParameterError says what to do otherwise."""
    known = servers(catalogue)
    if url is not None:
        wanted = server_url(url)
        for server, user in known:
            if server == wanted:
                return server, user
        raise ParameterError(f"{wanted} is not linked to {catalogue.path}; run 'soundalike subsonic link {wanted} "
                             "--user NAME' first")
    if len(known) == 1:
        return known[0]
    if not known:
        raise ParameterError(f"no Subsonic server is linked to {catalogue.path}; run 'soundalike subsonic link URL "
                             "--user NAME' (or 'soundalike index --subsonic URL') first")
    raise ParameterError(f"several Subsonic servers are linked to {catalogue.path} ({', '.join(s for s, _ in known)}); "
                         "say which with --subsonic URL")
