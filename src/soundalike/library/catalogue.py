"""The catalogue: one SQLite file holding every analysed track.

Each track is written in its own transaction (WAL journal), so a process killed at
any moment loses at most the tracks it had not yet committed, and the file is never
left half-written. ``meta.generation`` grows with every change; the vector index
beside the file records the generation it was built from (see :mod:`.vectors`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..audio import TrackMetadata
from ..errors import ParameterError, SoundalikeError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    artist TEXT, title TEXT, album TEXT, genre TEXT,
    duration REAL,
    excerpt INTEGER NOT NULL,      -- 0: every patch analysed; N: N spread patches
    vector BLOB NOT NULL,          -- float32 (dim,), the track vector
    tags BLOB NOT NULL,            -- float32 (n_tags,), mean tag probabilities
    patches BLOB NOT NULL,         -- float16 (P, dim), patch embeddings
    starts BLOB NOT NULL,          -- float32 (P,), patch start times in seconds
    added_at REAL NOT NULL,
    generation INTEGER NOT NULL    -- catalogue generation of the last write
);
CREATE INDEX IF NOT EXISTS tracks_artist ON tracks(artist COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    size INTEGER, mtime_ns INTEGER,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""


class LibraryError(SoundalikeError):
    """The library file is missing, from another model, or not a soundalike library."""


@dataclasses.dataclass(frozen=True)
class TrackRecord:
    """One analysed file, as stored. Arrays: vector (dim,), tags (n_tags,),
    patches (P, dim) float16, starts (P,) seconds."""

    path: str
    size: int
    mtime_ns: int
    metadata: TrackMetadata
    excerpt: int
    vector: np.ndarray
    tags: np.ndarray
    patches: np.ndarray
    starts: np.ndarray


@dataclasses.dataclass(frozen=True)
class Track:
    """A catalogue row without its arrays (cheap to list); id None for a file outside
    the library that a playlist passes through."""

    id: int | None
    path: str
    artist: str | None
    title: str | None
    album: str | None
    genre: str | None
    duration: float | None

    def as_dict(self) -> dict:
        return {"id": self.id, "path": self.path, "artist": self.artist, "title": self.title,
                "album": self.album, "duration": self.duration}

    @property
    def label(self) -> str:
        """"Artist - Title", falling back to the file name."""
        if self.artist and self.title:
            return f"{self.artist} - {self.title}"
        return self.title or Path(self.path).stem


TRACK_COLUMNS = "id, path, artist, title, album, genre, duration"


class Catalogue:
    """SQLite storage of tracks; one writer at a time, any number of readers."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LibraryError(f"{self.path}: no library here; run 'soundalike index DIR' first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # check_same_thread off: a server shares one catalogue between threads, one at a time
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path}: not a soundalike library ({exc})") from None
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise LibraryError(f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Catalogue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- meta ----------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def _bump(self) -> int:
        """Advance the generation (inside a transaction); returns the new one."""
        row = self.db.execute("INSERT INTO meta (key, value) VALUES ('generation', '1') "
                              "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 "
                              "RETURNING value").fetchone()
        return int(row[0])

    def bind_model(self, name: str, tags: Iterable[str], dim: int) -> None:
        """Record the model on first use; refuse a different one later."""
        current = self.get_meta("model")
        if current is None:
            self.set_meta("model", name)
            self.set_meta("tags", json.dumps(list(tags)))
            self.set_meta("dim", str(dim))
        elif current != name:
            raise ParameterError(f"{self.path} was indexed with model {current!r}, not {name!r}; "
                                 f"use --model {current} or another --library")

    @property
    def model(self) -> str | None:
        return self.get_meta("model")

    @property
    def tag_names(self) -> list[str]:
        return json.loads(self.get_meta("tags") or "[]")

    # --- writing -------------------------------------------------------------------
    def put(self, record: TrackRecord) -> int:
        """Insert or replace a track (and clear its failure), in one transaction."""
        m = record.metadata
        with self._transaction():
            generation = self._bump()
            self.db.execute("DELETE FROM failures WHERE path = ?", (record.path,))
            cur = self.db.execute(
                "INSERT INTO tracks (path, size, mtime_ns, artist, title, album, genre, duration, excerpt,"
                " vector, tags, patches, starts, added_at, generation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
                " artist=excluded.artist, title=excluded.title, album=excluded.album, genre=excluded.genre,"
                " duration=excluded.duration, excerpt=excluded.excerpt, vector=excluded.vector,"
                " tags=excluded.tags, patches=excluded.patches, starts=excluded.starts,"
                " added_at=excluded.added_at, generation=excluded.generation RETURNING id",
                (record.path, record.size, record.mtime_ns, m.artist, m.title, m.album, m.genre,
                 m.duration, record.excerpt, _blob(record.vector, np.float32), _blob(record.tags, np.float32),
                 _blob(record.patches, np.float16), _blob(record.starts, np.float32), time.time(), generation))
            track_id = cur.fetchone()[0]
        return track_id

    def put_failure(self, path: str, size: int | None, mtime_ns: int | None, reason: str) -> None:
        """Record why a file failed; a stale track row for it is removed."""
        with self._transaction():
            removed = self.db.execute("DELETE FROM tracks WHERE path = ?", (path,)).rowcount
            self.db.execute("INSERT OR REPLACE INTO failures (path, size, mtime_ns, reason, at) VALUES (?,?,?,?,?)",
                            (path, size, mtime_ns, reason, time.time()))
            if removed:
                self._bump()

    def remove(self, paths: Iterable[str]) -> int:
        """Drop tracks and failures of these paths; returns how many tracks went."""
        paths = list(paths)
        with self._transaction():
            removed = 0
            for path in paths:
                removed += self.db.execute("DELETE FROM tracks WHERE path = ?", (path,)).rowcount
                self.db.execute("DELETE FROM failures WHERE path = ?", (path,))
            if removed:
                self._bump()
        return removed

    def set_vectors(self, vectors: dict[int, np.ndarray]) -> None:
        """Replace track vectors (after a library-wide re-aggregation)."""
        with self._transaction():
            generation = self._bump()
            self.db.executemany("UPDATE tracks SET vector = ?, generation = ? WHERE id = ?",
                                [(_blob(v, np.float32), generation, i) for i, v in vectors.items()])

    def changed_since(self, generation: int) -> np.ndarray:
        """Ids of tracks written after ``generation``."""
        rows = self.db.execute("SELECT id FROM tracks WHERE generation > ?", (generation,))
        return np.fromiter((r[0] for r in rows), np.int64)

    def ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.db.execute("SELECT id FROM tracks")), np.int64)

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type, *rest):
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _transaction(self) -> "_Tx":
        return Catalogue._Tx(self.db)

    # --- reading -------------------------------------------------------------------
    def file_states(self) -> dict[str, tuple[int, int, bool, int | None]]:
        """path -> (size, mtime_ns, failed, excerpt) for every known file (excerpt None if failed)."""
        rows = self.db.execute("SELECT path, size, mtime_ns, excerpt FROM tracks")
        states = {p: (s, m, False, e) for p, s, m, e in rows}
        for p, s, m in self.db.execute("SELECT path, size, mtime_ns FROM failures"):
            states.setdefault(p, (s, m, True, None))
        return states

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]

    def failures(self) -> list[tuple[str, str]]:
        return self.db.execute("SELECT path, reason FROM failures ORDER BY path").fetchall()

    def tracks(self, ids: Iterable[int] | None = None) -> list[Track]:
        if ids is None:
            rows = self.db.execute(f"SELECT {TRACK_COLUMNS} FROM tracks ORDER BY id").fetchall()
            return [Track(*row) for row in rows]
        ids = [int(i) for i in ids]
        by_id = {row[0]: Track(*row) for row in self._select_ids(TRACK_COLUMNS, ids)}
        return [by_id[i] for i in ids if i in by_id]

    def _select_ids(self, columns: str, ids: Iterable[int]) -> list[tuple]:
        """Rows (any order) of the tracks with these ids, in chunks under SQLite's parameter limit."""
        rows = []
        for chunk in _chunks([int(i) for i in ids], 900):  # numpy integers would bind as BLOBs
            marks = ",".join("?" * len(chunk))
            rows += self.db.execute(f"SELECT {columns} FROM tracks WHERE id IN ({marks})", chunk).fetchall()
        return rows

    def track(self, track_id: int) -> Track | None:
        found = self.tracks([track_id])
        return found[0] if found else None

    def track_by_path(self, path: str) -> Track | None:
        row = self.db.execute(f"SELECT {TRACK_COLUMNS} FROM tracks WHERE path = ?", (path,)).fetchone()
        return Track(*row) if row else None

    def search_text(self, text: str, limit: int = 20) -> list[Track]:
        """Tracks whose artist, title, album or file name contain every word of ``text``."""
        words = text.split()
        if not words:
            return []
        haystack = "(coalesce(artist,'') || ' ' || coalesce(title,'') || ' ' || coalesce(album,'') || ' ' || path)"
        where = " AND ".join(f"{haystack} LIKE ? ESCAPE '\\'" for _ in words)
        params = ["%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for w in words]
        rows = self.db.execute(f"SELECT {TRACK_COLUMNS} FROM tracks WHERE {where} ORDER BY artist, title, path "
                               f"LIMIT ?", (*params, limit)).fetchall()
        return [Track(*row) for row in rows]

    def arrays(self, column: str, ids: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n,), matrix (n, d)) of a fixed-length array column: 'vector' or 'tags'."""
        if column not in ("vector", "tags"):
            raise ValueError(column)
        if ids is None:
            rows = self.db.execute(f"SELECT id, {column} FROM tracks ORDER BY id").fetchall()
        else:
            rows = self._select_ids(f"id, {column}", ids)
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        out_ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        data = np.frombuffer(b"".join(r[1] for r in rows), np.float32)
        matrix = data.reshape(len(rows), len(data) // len(rows))  # width 0 for a model without tags
        return out_ids, matrix

    def patches(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(patch embeddings (P, dim) float32, start times (P,) seconds) of one track."""
        row = self.db.execute("SELECT patches, starts FROM tracks WHERE id = ?", (track_id,)).fetchone()
        if row is None:
            raise LibraryError(f"no track with id {track_id}")
        starts = np.frombuffer(row[1], np.float32)
        return _patch_matrix(row[0], len(starts)), starts

    def iter_patches(self) -> Iterator[tuple[int, np.ndarray]]:
        """(id, patch embeddings (P, dim) float32) of every track, in id order."""
        for track_id, blob, starts in self.db.execute("SELECT id, patches, starts FROM tracks ORDER BY id"):
            yield track_id, _patch_matrix(blob, len(starts) // 4)  # starts: 4-byte floats

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())


def _patch_matrix(blob: bytes, patches: int) -> np.ndarray:
    """A stored float16 patch blob as a (patches, dim) float32 matrix."""
    return np.frombuffer(blob, np.float16).reshape(patches, -1).astype(np.float32)


def _blob(array: np.ndarray, dtype) -> bytes:
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
