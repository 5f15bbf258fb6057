"""Listening events: what each listener played, skipped, liked and disliked.

One table of the library file, one schema for every source (the page, the MPD daemon,
``POST /api/feedback``, ``soundalike like|dislike``). An event is read back with its
track's id now, found by the track's path (which re-indexing and re-analysis keep):
a track that left the library and came back under the same path (a drive unplugged,
then indexed again) is found again under its new id; the id it had when the event
happened is stored too, for the record. Events of tracks no longer in the library are
kept (they are exported) and ignored by what learns from them.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import time
from pathlib import Path

from ..errors import ParameterError

KINDS = ("play", "skip", "like", "dislike")
DEFAULT_PROFILE = "default"
PROFILE_PATTERN = re.compile(r"^[\w .@+-]{1,64}$")
PROFILE_RULE = "1 to 64 letters, digits, spaces or _ . @ + -"  # what PROFILE_PATTERN allows, in words
SOURCES = ("page", "mpd", "api", "cli", "subsonic", "bench")
SKIP_SECONDS = 30.0  # a track left by hand before 30 s, or before SKIP_SHARE of its length, was skipped
SKIP_SHARE = 1 / 3

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    profile TEXT NOT NULL,
    track_id INTEGER NOT NULL,     -- the track's id when it happened
    path TEXT NOT NULL,            -- and its file, which finds it again under a new id
    kind TEXT NOT NULL CHECK (kind IN ({", ".join(repr(k) for k in KINDS)})),
    seconds REAL,                  -- play: how long it played; skip: where it was skipped
    source TEXT NOT NULL,
    at REAL NOT NULL               -- seconds since the epoch
);
CREATE INDEX IF NOT EXISTS events_profile ON events(profile, at);
"""
COLUMNS = ("profile", "track_id", "path", "kind", "seconds", "source", "at")


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing a listener did to a track. ``track_id`` is the track's id now (None
    when it is no longer in the library); ``seconds``: for a play, how long it played;
    for a skip, the position it was skipped at; ``at``: Unix time."""

    profile: str
    track_id: int | None
    path: str
    kind: str
    seconds: float | None
    source: str
    at: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def is_skip(position: float, duration: float | None) -> bool:
    """Whether leaving a track by hand at ``position`` seconds is a skip."""
    return position < SKIP_SECONDS or (duration is not None and position < SKIP_SHARE * duration)


def check_profile(profile: str) -> str:
    """The profile name, or ParameterError saying what a name may hold."""
    if not isinstance(profile, str) or not PROFILE_PATTERN.match(profile):
        raise ParameterError(f"profile must be {PROFILE_RULE}, got {profile!r}")
    return profile


def record(catalogue, track_id: int, kind: str, *, profile: str = DEFAULT_PROFILE, seconds: float | None = None,
           source: str = "api", at: float | None = None) -> Event:
    """Store one event for a library track; ParameterError for an unknown kind, source,
    profile or track, LibraryError when the library is read-only."""
    from .catalogue import read_only

    if kind not in KINDS:
        raise ParameterError(f"event kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if source not in SOURCES:
        raise ParameterError(f"event source must be one of {', '.join(SOURCES)}, got {source!r}")
    check_profile(profile)
    if seconds is not None and not 0 <= seconds < 1e7:
        raise ParameterError(f"seconds must be between 0 and 10,000,000, got {seconds}")
    track = catalogue.track(track_id)
    if track is None:
        raise ParameterError(f"no track has id {track_id} in {catalogue.path}")
    if catalogue.readonly:
        raise read_only(catalogue.path, "listening events cannot be stored in a library that cannot be written")
    event = Event(profile, track_id, track.path, kind, seconds, source, time.time() if at is None else at)
    with catalogue._transaction():
        catalogue.db.execute(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES (?,?,?,?,?,?,?)",
                             tuple(getattr(event, c) for c in COLUMNS))
    return event


def events(catalogue, profile: str | None = DEFAULT_PROFILE, *, latest: int | None = None) -> list[Event]:
    """A profile's events (every profile's when None; only the ``latest`` ones when
    given), oldest first, with each track's id now: by its path, else None. A library
    made before events existed has none."""
    if not _has_events(catalogue):
        return []
    where, values = ("WHERE e.profile = ?", [profile]) if profile is not None else ("", [])
    limit = "" if latest is None else f"LIMIT {int(latest)}"
    rows = catalogue.db.execute(
        "SELECT e.profile, t.id, e.path, e.kind, e.seconds, e.source, e.at FROM events e "
        f"LEFT JOIN tracks t ON t.path = e.path {where} ORDER BY e.at DESC, e.id DESC {limit}", values)
    return [Event(*row) for row in rows][::-1]


def disliked(catalogue, profile: str = DEFAULT_PROFILE) -> set[int]:
    """Ids of the library tracks whose latest like or dislike by ``profile`` is a
    dislike, however long ago (a like after a dislike takes it back)."""
    if not _has_events(catalogue):
        return set()
    rows = catalogue.db.execute(  # each track's latest like or dislike
        "SELECT id, kind FROM (SELECT t.id, e.kind, ROW_NUMBER() OVER (PARTITION BY e.path ORDER BY e.at DESC, e.id DESC) "
        "AS latest FROM events e JOIN tracks t ON t.path = e.path WHERE e.profile = ? AND e.kind IN ('like', 'dislike')) "
        "AS judged WHERE latest = 1", (profile,))
    return {track_id for track_id, kind in rows if kind == "dislike"}


def _has_events(catalogue) -> bool:
    from .catalogue import table_exists  # the catalogue's schema includes this module's

    return table_exists(catalogue.db, "events")


def profiles(catalogue) -> list[tuple[str, int]]:
    """(profile, number of events) for every profile with events, by name."""
    if not _has_events(catalogue):
        return []
    return list(catalogue.db.execute("SELECT profile, COUNT(*) FROM events GROUP BY profile ORDER BY profile"))


def export_csv(catalogue, out: str | os.PathLike, profile: str | None = None) -> int:
    """Write the events (of one profile, or all) to a CSV file with a header row:
    profile, track_id (empty when the track left the library), path, kind, seconds,
    source, at (Unix seconds) and time (ISO 8601, UTC). Returns how many."""
    rows = events(catalogue, profile)
    with open(Path(out), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, "time"])
        for e in rows:
            writer.writerow([e.profile, "" if e.track_id is None else e.track_id, e.path, e.kind,
                             "" if e.seconds is None else f"{e.seconds:.1f}", e.source, f"{e.at:.3f}",
                             time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at))])
    return len(rows)
