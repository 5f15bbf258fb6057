"""Recovering a damaged library: what SQLite can still read goes into a fresh file.

Python's sqlite3 has no ``.recover``: each table is copied row by row, stepping over
the pages that cannot be read (:func:`_readable_rows`). Tracks whose arrays do not have
their model's sizes are left out, and all of them when the record of their model is
lost (nothing could compare them then). The damaged file is kept beside the library
as ``LIB.damaged-<time>`` (never deleted), the vector index is rebuilt, and the tracks
lost are those ``soundalike index FOLDER`` analyses again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import Library
from .catalogue import MODEL_KEYS, SCHEMA, LibraryError, writable

TABLES = ("meta", "tracks", "failures", "staged", "events")  # meta first: tracks are checked against it
SQLITE_HEADER = b"SQLite format 3\0"
# the tracks a damaged file held: named by its path index, counted on the table itself and on the artist index
PATHS_IN_INDEX = "SELECT path FROM tracks INDEXED BY sqlite_autoindex_tracks_1"
COUNTS = ("SELECT COUNT(*) FROM tracks NOT INDEXED", "SELECT COUNT(*) FROM tracks INDEXED BY tracks_artist")
MAX_ROWID = 2**62  # a scan never resumes beyond (SQLite's rowids are below 2**63)


@dataclasses.dataclass(frozen=True)
class Repair:
    """What :func:`repair` did.

    kept : where the damaged file is now; None when nothing was damaged
    rows : rows recovered, by table
    lost : tracks lost, as far as the damaged file and its vector index tell; None
        when they cannot tell
    lost_paths : the files of lost tracks that the damaged file still names
    """

    kept: Path | None
    rows: dict[str, int]
    lost: int | None
    lost_paths: list[str]


def repair(path: str | os.PathLike) -> Repair:
    """Replace a damaged library by what can be read of it, keeping the damaged file.

    An undamaged library is left as it is (its vector index is checked, and rebuilt
    if damaged). Raises LibraryError for a missing, read-only or non-SQLite file.
    """
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"{path}: no library here")
    if not writable(path):
        raise LibraryError(f"{path} is read-only (the file or its folder cannot be written); repair writes a new "
                           "file beside it: make both writable")
    with path.open("rb") as file:
        if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise LibraryError(f"{path}: not a SQLite database (its header is gone); nothing in it can be "
                               "recovered, and it is left as it is")
    if _intact(path):
        with Library(path) as library:
            library.refresh_index()
            return Repair(None, {"tracks": library.catalogue.count()}, 0, [])
    fresh = Path(f"{path}.repairing")
    fresh.unlink(missing_ok=True)
    Path(f"{fresh}-journal").unlink(missing_ok=True)
    rows, named, counted = _recover(path, fresh)
    kept = _set_aside(path)
    os.replace(fresh, path)
    with Library(path, create=True) as library:  # checks the new file, gives it an identity (and upgrades it)
        library.catalogue.recompute_sum()
        library.refresh_index(recentre=True)
        recovered = {track.path for track in library.catalogue.tracks()}
    lost_paths = sorted(named - recovered)
    lost = (len(lost_paths) or None) if counted is None else max(len(lost_paths), counted - rows["tracks"])
    return Repair(kept, rows, lost, lost_paths)


def _recover(path: Path, fresh: Path) -> tuple[dict[str, int], set[str], int | None]:
    """Copy what can be read of the library ``path`` into a new file ``fresh``; returns
    (rows copied by table, the paths of tracks the damaged file names, how many tracks
    it held as far as its table, its indexes or its vector index tell: None if none can)."""
    source = _open_damaged(path)
    target = sqlite3.connect(fresh, isolation_level=None)  # a rollback journal: nothing left beside it when closed
    try:
        target.executescript(SCHEMA)
        rows = {table: _copy(source, target, table, _track_check(target) if table == "tracks" else None)
                for table in TABLES}
        meta = dict(target.execute("SELECT key, value FROM meta"))
        named = {row[0] for row in target.execute("SELECT path FROM tracks")}
        if not all(key in meta for key in (MODEL_KEYS[:3] if meta.get("schema_version") == "1" else MODEL_KEYS)):
            target.execute("DELETE FROM tracks")  # their model is unknown: nothing could compare them
            rows["tracks"] = 0
        target.execute("DELETE FROM meta WHERE key = 'library_id'")  # a new library: its own identity, its own index
        in_index = [row[0] for row in _until_error(source, PATHS_IN_INDEX)]
        named.update(in_index)
        counts = [row[0] for query in COUNTS for row in _until_error(source, query)]
        counts += [n for n in (len(in_index) or None, _indexed(path, meta.get("library_id"))) if n is not None]
        return rows, named, max(counts, default=None)
    finally:
        source.close()
        target.close()


def _indexed(path: Path, identity: str | None) -> int | None:
    """How many tracks the library's saved vector index holds (None if it is not this library's)."""
    try:
        state = json.loads(Path(f"{path}.faiss.json").read_text())
        return int(state["count"]) if identity and state.get("library") == identity else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _open_damaged(path: Path) -> sqlite3.Connection:
    """A read-only connection to the damaged file, raising SQLite's own errors."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


def _intact(path: Path) -> bool:
    db = _open_damaged(path)
    try:
        return [row[0] for row in db.execute("PRAGMA quick_check")] == ["ok"]
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()


def _until_error(db: sqlite3.Connection, query: str, parameters=()) -> Iterator[tuple]:
    """The rows of ``query`` up to the first that cannot be read."""
    try:
        yield from db.execute(query, parameters)
    except sqlite3.DatabaseError:
        return


def _readable_rows(db: sqlite3.Connection, table: str, columns: str) -> Iterator[tuple]:
    """The rows of ``table`` that can be read (``columns``, without the rowid).

    A scan in rowid order stops at a damaged page. It resumes 1, 2, 4... rowids further
    on until it can read again, and each time a scan backwards from where it resumed
    picks up the rows between that and the previous attempt.
    """
    forward = f"SELECT rowid, {columns} FROM {table} WHERE rowid > ? ORDER BY rowid"
    backward = f"SELECT rowid, {columns} FROM {table} WHERE rowid <= ? AND rowid > ? ORDER BY rowid DESC"
    previous, start, step = 0, 0, 1
    while start < MAX_ROWID:
        for row in _until_error(db, backward, (start, previous)):
            yield row[1:]
        try:
            for row in db.execute(forward, (start,)):
                start, step = row[0], 1
                yield row[1:]
            return
        except sqlite3.DatabaseError:
            previous, start, step = start, start + step, step * 2


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, table: str,
          keep: Callable[[dict], bool] | None = None) -> int:
    """Copy the readable rows of ``table`` that ``keep`` (column -> value) accepts;
    returns how many were copied."""
    try:
        columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:  # the schema itself cannot be read
        return 0
    ours = {row[1] for row in target.execute(f"PRAGMA table_info({table})")}
    columns = [c for c in columns if c in ours]  # a library of an older schema has fewer
    if not columns:
        return 0
    insert = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    copied = 0
    target.execute("BEGIN")
    for row in _readable_rows(source, table, ", ".join(columns)):
        if keep is None or keep(dict(zip(columns, row))):
            try:
                copied += target.execute(insert, row).rowcount
            except sqlite3.IntegrityError:  # damage that reads as a missing value
                pass
    target.execute("COMMIT")
    return copied


def _track_check(target: sqlite3.Connection) -> Callable[[dict], bool]:
    """Whether a track's arrays have the sizes of the library's model, as far as the
    meta recovered into ``target`` tells them."""
    meta = dict(target.execute("SELECT key, value FROM meta"))
    try:
        dim = int(meta["dim"]) if "dim" in meta else None
        n_tags = len(json.loads(meta["tags"])) if "tags" in meta else None
    except (ValueError, TypeError):
        dim = n_tags = None

    def keep(row: dict) -> bool:
        vector, tags, patches, starts = (row.get(c) for c in ("vector", "tags", "patches", "starts"))
        if not all(isinstance(blob, bytes) for blob in (vector, tags, patches, starts)) or len(starts) % 4:
            return False
        patch_count = len(starts) // 4
        return ((dim is None or (len(vector) == 4 * dim and len(patches) == 2 * dim * patch_count))
                and (n_tags is None or len(tags) == 4 * n_tags))

    return keep


def _set_aside(path: Path) -> Path:
    """Rename the damaged file (its WAL files first, so the library never gets another's)
    to ``LIB.damaged-<time>``; returns the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept, n = Path(f"{path}.damaged-{stamp}"), 1
    while kept.exists():
        n += 1
        kept = Path(f"{path}.damaged-{stamp}-{n}")
    for suffix in ("-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{kept}{suffix}")
    os.replace(path, kept)
    return kept
