"""The catalogue: one SQLite file holding every analysed track.

Each track is written in its own transaction (WAL journal), so a process killed at
any moment loses at most the tracks it had not yet committed, and the file is never
left half-written. ``meta.generation`` grows with every change; the vector index
beside the file records the generation it was built from (see :mod:`.vectors`).
``meta.vector_sum`` is the sum of every track vector, kept in step by the same
transactions, so that the library's mean (the centre of its similarity space) costs
nothing to read however large the library.

Every track of the library is analysed by one model. Re-analysing a library with
another model writes into ``staged`` while the library keeps answering with the old
one; when every track has been re-analysed, one transaction switches them all.

``meta.library_id``, a random identity made with the file, binds the vector index to
this library and no other. A library that cannot be written (file or folder) is opened
read-only and never written, not even on open. SQLite's errors on the file become a
:class:`LibraryError` naming it, the cause and what to do; a damaged file is refused
for writing (``soundalike repair`` recovers what can be read, see :mod:`.repair`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..audio import TrackMetadata
from ..errors import ParameterError, SoundalikeError
from ..musical import UNKNOWN, Musical
from . import postgres
from .events import SCHEMA as EVENTS_SCHEMA

MAX_TRACK_ID = 2**63 - 1  # SQLite's largest integer: track ids lie in 0..MAX_TRACK_ID
MAX_QUERY_WORDS = 64  # words of a text search (SQLite's expression depth allows about 500)
SCHEMA_VERSION = 3
# tempo (BPM) and its confidence in [0, 1]; tonic pitch class (0 = C), mode (1 major, 0 minor)
# and the key's confidence; integrated loudness of the analysed excerpt (LUFS); energy in [0, 1]
# (see soundalike.musical); NULL where unknown, or not measured yet (a library from before)
MUSICAL_TYPES = {"bpm": "REAL", "bpm_confidence": "REAL", "key": "INTEGER", "mode": "INTEGER",
                 "key_confidence": "REAL", "loudness": "REAL", "energy": "REAL"}
MUSICAL_COLUMNS = tuple(MUSICAL_TYPES)
MUSICAL_SCHEMA = ", ".join(f"{name} {kind}" for name, kind in MUSICAL_TYPES.items())
# covering the filters (--bpm, --key, --energy): they never read the rows' arrays
MUSICAL_INDEX = "CREATE INDEX IF NOT EXISTS tracks_musical ON tracks(bpm, energy, key, mode)"
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
    generation INTEGER NOT NULL,   -- catalogue generation of the last write
    """ + MUSICAL_SCHEMA + """    -- see MUSICAL_TYPES
);
CREATE INDEX IF NOT EXISTS tracks_artist ON tracks(artist COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    size INTEGER, mtime_ns INTEGER,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS staged (  -- a re-analysis with meta.staged_model, not yet switched in
    path TEXT PRIMARY KEY,
    model TEXT NOT NULL,           -- the model that analysed it (only rows of meta.staged_model count)
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    artist TEXT, title TEXT, album TEXT, genre TEXT,
    duration REAL,
    excerpt INTEGER,
    vector BLOB, tags BLOB, patches BLOB, starts BLOB,  -- as in tracks; NULL when the file failed
    reason TEXT,                   -- why the file failed, NULL when it was analysed
    """ + MUSICAL_SCHEMA + """
);
""" + EVENTS_SCHEMA
RECORD_COLUMNS = ("path, size, mtime_ns, artist, title, album, genre, duration, excerpt, "
                  "vector, tags, patches, starts, " + ", ".join(MUSICAL_COLUMNS))
RECORD_MARKS = ", ".join("?" * len(RECORD_COLUMNS.split(",")))
UPSERT_TRACK = (f"INSERT INTO tracks ({RECORD_COLUMNS}, added_at, generation) {{source}} "
                "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
                " artist=excluded.artist, title=excluded.title, album=excluded.album, genre=excluded.genre,"
                " duration=excluded.duration, excerpt=excluded.excerpt, vector=excluded.vector,"
                " tags=excluded.tags, patches=excluded.patches, starts=excluded.starts,"
                + "".join(f" {c}=excluded.{c}," for c in MUSICAL_COLUMNS) +
                " generation=excluded.generation")  # a re-analysed track keeps the time it was added
# a failure recorded again replaces the one before (SQL both SQLite and PostgreSQL run)
REPLACE_FAILURE = ("ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                   "reason = excluded.reason, at = excluded.at")
# what describes the model of a library (meta keys), and of a re-analysis in progress ("staged_" + key)
MODEL_KEYS = ("model", "tags", "dim", "blocks", "block_weights")


class LibraryError(SoundalikeError):
    """The library file is missing, damaged, read-only for a command that writes, from
    another model, or not a soundalike library."""


def damaged(path: Path, cause) -> LibraryError:
    """The error for a library file SQLite finds damaged, saying what to do."""
    return LibraryError(f"{path}: the library file is damaged ({cause}); run 'soundalike repair --library {path}' "
                        "to recover what can be read (the damaged file is kept)")


def library_error(path: Path, exc: sqlite3.DatabaseError) -> LibraryError:
    """The LibraryError for a SQLite error on the library file ``path``."""
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_CORRUPT"):
        return damaged(path, exc)
    if name.startswith("SQLITE_NOTADB"):
        return LibraryError(f"{path}: not a soundalike library ({exc}), or one damaged beyond repair; give another "
                            "--library, or move it away and run 'soundalike index FOLDER' to make a new one")
    if name.startswith("SQLITE_READONLY"):
        return read_only(path, f"the file or its folder cannot be written: {exc}")
    return LibraryError(f"{path}: {exc}")


def _translating(method):
    """``method`` of a cursor, raising :func:`library_error` for SQLite's errors (not for
    programming errors: a bad statement or a broken constraint is a bug to see whole)."""

    @functools.wraps(method)
    def translated(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.ProgrammingError, sqlite3.IntegrityError):
            raise
        except sqlite3.DatabaseError as exc:
            raise library_error(self.connection.path, exc) from exc

    return translated


class _Cursor(sqlite3.Cursor):
    pass


for _name in ("execute", "executemany", "executescript", "fetchone", "fetchmany", "fetchall", "__next__"):
    setattr(_Cursor, _name, _translating(getattr(sqlite3.Cursor, _name)))


class _Connection(sqlite3.Connection):
    """A connection to the library file ``path`` whose statements run on :class:`_Cursor`."""

    path: Path
    ALL_ROWS = -1  # a LIMIT of every row

    def cursor(self, factory=_Cursor):
        return super().cursor(factory)

    def execute(self, *args):
        return self.cursor().execute(*args)

    def executemany(self, *args):
        return self.cursor().executemany(*args)

    def executescript(self, *args):
        return self.cursor().executescript(*args)


def read_only(path: Path, cause: str = "the file or its folder cannot be written") -> LibraryError:
    """The error for a command that writes a library it cannot write."""
    return LibraryError(f"{path} is read-only ({cause}) and this command writes to it; make both writable, "
                        "or give another --library")


def table_exists(db: sqlite3.Connection, name: str) -> bool:
    """Whether the library file has this table (an older library may lack a newer one)."""
    if not isinstance(db, sqlite3.Connection):
        return db.table_exists(name)
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def writable(path: Path) -> bool:
    """Whether this process may write the library ``path`` and its folder (where SQLite
    keeps the journal)."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def connect(path: Path, *, readonly: bool = False) -> _Connection:
    """A connection to the library file; a read-only one never writes it.

    A library in a folder that cannot be written, where its ``-shm`` file (the WAL's
    index) is missing, can only be read as immutable: nothing can write it there either.
    """
    target = str(path)
    if readonly:
        immutable = not os.access(path.parent, os.W_OK) and not Path(f"{path}-shm").exists()
        target = path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        # check_same_thread off: a server shares one catalogue between threads, one at a time
        db = sqlite3.connect(target, uri=readonly, timeout=30, isolation_level=None, check_same_thread=False,
                             factory=_Connection)
    except sqlite3.DatabaseError as exc:
        raise library_error(path, exc) from exc
    db.path = path
    return db


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What the catalogue records of a model: its name, tag names, and embedding blocks
    with their weights (see :class:`soundalike.analysis.Space`)."""

    name: str
    tags: tuple[str, ...]
    blocks: tuple[int, ...]
    weights: tuple[float, ...]

    @classmethod
    def of(cls, name: str, model) -> "ModelDescription":
        """The description of a loaded ``AudioModel``, loaded by ``name``."""
        return cls(name, tuple(model.labels), tuple(model.embedding_blocks), tuple(model.block_weights))


@dataclasses.dataclass(frozen=True)
class TrackRecord:
    """One analysed file, as stored. Arrays: vector (dim,), tags (n_tags,),
    patches (P, dim) float16, starts (P,) seconds; ``musical`` None: not measured."""

    path: str
    size: int
    mtime_ns: int
    metadata: TrackMetadata
    excerpt: int
    vector: np.ndarray
    tags: np.ndarray
    patches: np.ndarray
    starts: np.ndarray
    musical: Musical | None = None


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
    """SQLite storage of tracks; one writer at a time, any number of readers. Given a
    ``postgresql://`` URL instead of a path, the same in PostgreSQL (:mod:`.postgres`):
    ``path`` is then the URL as shown (no password), ``files`` where files derived from
    the library are kept (for a file, the file itself: they lie beside it).

    ``create``: the writer (``soundalike index``): makes the file if missing, and refuses
    one that cannot be written or is damaged. ``readonly``: never write the file; None
    (the default): exactly when the file or its folder cannot be written, never for
    the writer. :attr:`readonly` says which it is.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = True, readonly: bool | None = None):
        if postgres.is_url(path):
            self.path, self.files, self.db = postgres.open_database(str(path))
            self.readonly, self.measures = False, True
            return
        self.path = self.files = Path(path)
        if not create and not self.path.exists():
            raise LibraryError(f"{self.path}: no library here; run 'soundalike index DIR' first")
        if create and readonly:
            raise ParameterError(f"{self.path}: a library opened to create is written; readonly=True contradicts it")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not writable(self.path):
                raise read_only(self.path)
        self.readonly = not writable(self.path) if readonly is None else readonly
        self.db = connect(self.path, readonly=self.readonly)
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if (self.readonly or tables) and "meta" not in tables:  # another program's database: never touch it
            raise LibraryError(f"{self.path}: not a soundalike library")
        if not self.readonly:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if create:
                self._refuse_damage()
            self.db.executescript(SCHEMA)
        version = self.get_meta("schema_version")
        if version is None and self.readonly:
            raise LibraryError(f"{self.path}: not a soundalike library (no schema version)")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        version = SCHEMA_VERSION if version is None else int(version)
        if version not in (1, 2, SCHEMA_VERSION):
            raise LibraryError(f"{self.path}: schema version {version}; this soundalike reads {SCHEMA_VERSION}")
        if version == 1 and self.readonly:
            raise LibraryError(f"{self.path}: a library of soundalike 0.1, read-only here, that must be upgraded; "
                               "open it once where it is writable")
        if version < SCHEMA_VERSION and not self.readonly:
            if version == 1:
                self._migrate_from_1()
            self._migrate_from_2()
        # a library of schema 2 that cannot be written is read as it is, without measures
        self.measures = version == SCHEMA_VERSION or not self.readonly
        if not self.readonly:
            self.db.execute(MUSICAL_INDEX)
        if not self.readonly and self.identity is None:  # made with the file, or by the first writer since 0.2
            self.db.execute("INSERT INTO meta (key, value) VALUES ('library_id', ?) ON CONFLICT(key) DO NOTHING",
                            (uuid.uuid4().hex,))

    def _refuse_damage(self) -> None:
        """LibraryError if the file is damaged: writing into it could spread the damage.

        ``PRAGMA quick_check`` reads every page: 0.2 s for a 0.5 GB library (50,000
        tracks) from the page cache, so seconds at a million tracks, or more from a cold
        disk. Only the writer pays it, once a run; readers meet damage where they read.
        """
        problems = [row[0] for row in self.db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise damaged(self.path, "; ".join(problems[:3]))

    def _migrate_from_1(self) -> None:
        """Version 1 had one embedding block and no running vector sum (``staged`` is new too)."""
        with self._transaction():
            if self.get_meta("dim") is not None:
                self.set_meta("blocks", json.dumps([int(self.get_meta("dim"))]))
                self.set_meta("block_weights", json.dumps([1.0]))
            self._recompute_sum()
            self.set_meta("schema_version", "2")

    def _migrate_from_2(self) -> None:
        """Version 2 had no tempo, key, loudness or energy: they stay NULL until the track is
        analysed again (changed, or ``soundalike index --reanalyze --model MODEL`` with the
        library's model). Columns already there (``soundalike repair`` copies an older
        library into the new schema) are kept."""
        with self._transaction():
            for table in ("tracks", "staged"):
                have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
                for name, kind in MUSICAL_TYPES.items():
                    if name not in have:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            self.set_meta("schema_version", str(SCHEMA_VERSION))

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
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    @property
    def identity(self) -> str | None:
        """This library's random identity, None for one from before identities that
        has not been opened for writing since."""
        return self.get_meta("library_id")

    def _bump(self) -> int:
        """Advance the generation (inside a transaction); returns the new one."""
        row = self.db.execute("INSERT INTO meta (key, value) VALUES ('generation', '1') "
                              "ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT) "
                              "RETURNING value").fetchone()
        return int(row[0])

    def bind_model(self, model: ModelDescription) -> None:
        """Record the model on first use; refuse a different one later."""
        with self._transaction():
            if self.get_meta("model") is None:
                self._set_model(model)
                return
        self.refuse_other_model(model.name)

    def refuse_other_model(self, name: str) -> None:
        """ParameterError if the library was analysed with another model than ``name``."""
        current = self.get_meta("model")
        if current is not None and current != name:
            raise ParameterError(f"{self.path} was indexed with model {current!r}, not {name!r}; "
                                 f"use --model {current}, another --library, or --reanalyze to re-analyse "
                                 f"the whole library with {name}")

    def _check_model(self, name: str | None, prefix: str = "") -> None:
        """Inside a write transaction: refuse a track analysed by another model than the
        library's (or the re-analysis's), which another process may have switched to."""
        current = self.get_meta(prefix + "model")
        if name is not None and current != name:
            if prefix:
                now = f"being re-analysed with {current}" if current else "not being re-analysed"
            else:
                now = f"analysed with {current}"
            raise LibraryError(f"{self.path} is {now} (another run changed it), not with {name}; "
                               "run the command again")

    def _set_model(self, model: ModelDescription, prefix: str = "") -> None:
        values = (model.name, json.dumps(list(model.tags)), str(sum(model.blocks)), json.dumps(list(model.blocks)),
                  json.dumps(list(model.weights)))
        for key, value in zip(MODEL_KEYS, values):
            self.set_meta(prefix + key, value)

    def _model_description(self, prefix: str = "") -> ModelDescription | None:
        name = self.get_meta(prefix + "model")
        if name is None:
            return None
        return ModelDescription(name, tuple(json.loads(self.get_meta(prefix + "tags") or "[]")),
                                tuple(json.loads(self.get_meta(prefix + "blocks"))),
                                tuple(json.loads(self.get_meta(prefix + "block_weights"))))

    @property
    def model(self) -> str | None:
        return self.get_meta("model")

    @property
    def description(self) -> ModelDescription | None:
        """The library's model: its name, tags and embedding blocks; None while empty."""
        return self._model_description()

    @property
    def tag_names(self) -> list[str]:
        return json.loads(self.get_meta("tags") or "[]")

    # --- the sum of the track vectors --------------------------------------------------
    def vector_sum(self) -> tuple[np.ndarray | None, int]:
        """(the sum of every track vector, float64 (dim,) or None when empty; the number of tracks)."""
        with self.snapshot():
            count = self.count()
            total = self.get_meta("vector_sum")
        if not count or total is None:
            return None, count
        return np.asarray(json.loads(total), dtype=np.float64), count

    def _shift_sum(self, added: Iterable[bytes] = (), removed: Iterable[bytes] = ()) -> None:
        """Add and subtract float32 vector blobs to and from ``meta.vector_sum`` (inside a transaction)."""
        added, removed = [b for b in added if b is not None], [b for b in removed if b is not None]
        if not added and not removed:
            return
        stored = self.get_meta("vector_sum")
        total = np.asarray(json.loads(stored), np.float64) if stored else 0.0
        for blob in added:
            total = total + np.frombuffer(blob, np.float32)
        for blob in removed:
            total = total - np.frombuffer(blob, np.float32)
        self.set_meta("vector_sum", json.dumps(np.asarray(total, np.float64).tolist()))

    def _recompute_sum(self) -> None:
        """``meta.vector_sum`` from every row (inside a transaction)."""
        total = None
        for (blob,) in self.db.execute("SELECT vector FROM tracks"):
            vector = np.frombuffer(blob, np.float32).astype(np.float64)
            total = vector if total is None else total + vector
        if total is None:
            self.db.execute("DELETE FROM meta WHERE key = 'vector_sum'")
        else:
            self.set_meta("vector_sum", json.dumps(total.tolist()))

    # --- writing -------------------------------------------------------------------
    def put(self, record: TrackRecord, model: str | None = None) -> int:
        """Insert or replace a track (and clear its failure), in one transaction; with
        ``model``, refused (LibraryError) unless the library is that model's."""
        with self._transaction():
            self._check_model(model)
            generation = self._bump()
            self.db.execute("DELETE FROM failures WHERE path = ?", (record.path,))
            old = self.db.execute("SELECT vector FROM tracks WHERE path = ?", (record.path,)).fetchone()
            upsert = UPSERT_TRACK.format(source=f"VALUES ({RECORD_MARKS}, ?, ?)") + " RETURNING id"
            track_id = self.db.execute(upsert, (*_record_values(record), time.time(), generation)).fetchone()[0]
            self._shift_sum(added=[_blob(record.vector, np.float32)], removed=[old[0]] if old else [])
        return track_id

    def put_failure(self, path: str, size: int | None, mtime_ns: int | None, reason: str,
                    model: str | None = None) -> None:
        """Record why a file failed; a stale track row for it is removed (``model``: see :meth:`put`)."""
        with self._transaction():
            self._check_model(model)
            removed = self.db.execute("DELETE FROM tracks WHERE path = ? RETURNING vector", (path,)).fetchall()
            self.db.execute(f"INSERT INTO failures (path, size, mtime_ns, reason, at) VALUES (?,?,?,?,?) {REPLACE_FAILURE}",
                            (path, size, mtime_ns, reason, time.time()))
            if removed:
                self._shift_sum(removed=[r[0] for r in removed])
                self._bump()

    def remove(self, paths: Iterable[str]) -> int:
        """Drop tracks and failures of these paths; returns how many tracks went."""
        paths = list(paths)
        with self._transaction():
            gone = []
            for path in paths:
                gone += self.db.execute("DELETE FROM tracks WHERE path = ? RETURNING vector", (path,)).fetchall()
                self.db.execute("DELETE FROM failures WHERE path = ?", (path,))
                self.db.execute("DELETE FROM staged WHERE path = ?", (path,))
            if gone:
                self._shift_sum(removed=[r[0] for r in gone])
                self._bump()
        return len(gone)

    def set_vectors(self, vectors: dict[int, np.ndarray]) -> None:
        """Replace track vectors (after a library-wide re-aggregation)."""
        with self._transaction():
            generation = self._bump()
            self.db.executemany("UPDATE tracks SET vector = ?, generation = ? WHERE id = ?",
                                [(_blob(v, np.float32), generation, i) for i, v in vectors.items()])
            self._recompute_sum()

    def recompute_sum(self) -> None:
        """``meta.vector_sum`` from every row, as a new generation (after rows were copied
        in whole, as :mod:`.repair` does)."""
        with self._transaction():
            self._bump()
            self._recompute_sum()

    # --- re-analysis with another model ---------------------------------------------
    @property
    def staged_model(self) -> ModelDescription | None:
        """The model of the re-analysis in progress, or None."""
        return self._model_description("staged_")

    def begin_staging(self, model: ModelDescription) -> None:
        """Start (or continue) re-analysing the library with ``model``; what was staged
        by any other model is dropped."""
        with self._transaction():
            self.db.execute("DELETE FROM staged WHERE model != ?", (model.name,))
            self._set_model(model, "staged_")

    def stage(self, record: TrackRecord, model: str) -> None:
        """Store a track re-analysed by ``model`` (not yet visible); refused (LibraryError)
        unless a re-analysis with ``model`` is in progress."""
        with self._transaction():
            self._check_model(model, "staged_")
            self.db.execute("DELETE FROM staged WHERE path = ?", (record.path,))
            self.db.execute(f"INSERT INTO staged ({RECORD_COLUMNS}, model) "
                            f"VALUES ({RECORD_MARKS}, ?)", (*_record_values(record), model))

    def stage_failure(self, path: str, size: int, mtime_ns: int, reason: str, model: str) -> None:
        with self._transaction():
            self._check_model(model, "staged_")
            self.db.execute("DELETE FROM staged WHERE path = ?", (path,))
            self.db.execute("INSERT INTO staged (path, model, size, mtime_ns, reason) VALUES (?,?,?,?,?)",
                            (path, model, size, mtime_ns, reason))

    def staged_states(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every file the re-analysis in progress has done (or failed)."""
        rows = self.db.execute("SELECT path, size, mtime_ns FROM staged WHERE model = "
                               "(SELECT value FROM meta WHERE key = 'staged_model')")
        return {p: (s, m) for p, s, m in rows}

    def unstaged(self) -> list[str]:
        """Paths of the library's tracks the re-analysis in progress has not done yet."""
        rows = self.db.execute("SELECT path FROM tracks WHERE path NOT IN (SELECT path FROM staged WHERE model = "
                               "(SELECT value FROM meta WHERE key = 'staged_model')) ORDER BY path")
        return [r[0] for r in rows]

    def finish_staging(self) -> list[tuple[str, str]]:
        """Switch the library to the re-analysis, in one transaction, once every track has
        been re-analysed: analysed files replace their tracks (same ids) or join, failed
        ones leave the library as failures, which are returned as (path, reason).

        Raises LibraryError when no re-analysis is in progress or tracks are left.
        """
        with self._transaction():
            model = self.staged_model
            if model is None:
                raise LibraryError(f"{self.path}: no re-analysis in progress")
            left = len(self.unstaged())
            if left:
                raise LibraryError(f"{self.path}: {left} tracks are not re-analysed yet")
            generation = self._bump()
            done = "FROM staged WHERE model = ? AND reason IS"
            failed = self.db.execute(f"SELECT path, reason {done} NOT NULL ORDER BY path", (model.name,)).fetchall()
            self.db.execute("INSERT INTO failures (path, size, mtime_ns, reason, at) "
                            f"SELECT path, size, mtime_ns, reason, ? {done} NOT NULL {REPLACE_FAILURE}",
                            (time.time(), model.name))
            self.db.execute(f"DELETE FROM tracks WHERE path IN (SELECT path {done} NOT NULL)", (model.name,))
            self.db.execute(UPSERT_TRACK.format(source=f"SELECT {RECORD_COLUMNS}, ?, ? {done} NULL"),
                            (time.time(), generation, model.name))
            self.db.execute(f"DELETE FROM failures WHERE path IN (SELECT path {done} NULL)", (model.name,))
            self._set_model(model)
            for key in MODEL_KEYS:
                self.db.execute("DELETE FROM meta WHERE key = ?", ("staged_" + key,))
            self.db.execute("DELETE FROM staged")
            self._recompute_sum()
        return failed

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
            if exc_type is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:  # SQLite may have rolled back already (a full disk, a damaged page)
                self.db.execute("ROLLBACK")

    def _transaction(self) -> "_Tx":
        return Catalogue._Tx(self.db)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one state of the library (a read transaction), even while
        another process writes; inside a transaction already, that one."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            if self.db.in_transaction:
                self.db.execute("COMMIT")

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
        """Rows (any order) of the tracks with these ids, in chunks under SQLite's parameter
        limit; an id no track can have (outside 0 to ``MAX_TRACK_ID``) matches nothing."""
        rows = []
        ids = [i for i in map(int, ids) if 0 <= i <= MAX_TRACK_ID]
        for chunk in _chunks(ids, 900):  # numpy integers would bind as BLOBs
            marks = ",".join("?" * len(chunk))
            rows += self.db.execute(f"SELECT {columns} FROM tracks WHERE id IN ({marks})", chunk).fetchall()
        return rows

    def musical(self, ids: Iterable[int]) -> dict[int, Musical]:
        """id -> tempo, key, loudness and energy of the tracks with these ids (none in a
        library of schema 2 read as it is)."""
        if not self.measures:
            return {}
        rows = self._select_ids("id, " + ", ".join(MUSICAL_COLUMNS), ids)
        return {row[0]: Musical(*row[1:]) for row in rows}

    def measured(self, where: str, params: list) -> np.ndarray:
        """Ids (sorted) of the tracks whose measures meet the SQL condition ``where`` (over
        ``MUSICAL_COLUMNS``, see :meth:`soundalike.musical.Filter.conditions`)."""
        if not self.measures:
            return np.zeros(0, np.int64)
        rows = self.db.execute(f"SELECT id FROM tracks WHERE {where} ORDER BY id",
                               params)
        return np.fromiter((r[0] for r in rows), np.int64)

    def track(self, track_id: int) -> Track | None:
        found = self.tracks([track_id])
        return found[0] if found else None

    def track_by_path(self, path: str) -> Track | None:
        row = self.db.execute(f"SELECT {TRACK_COLUMNS} FROM tracks WHERE path = ?", (path,)).fetchone()
        return Track(*row) if row else None

    def search_text(self, text: str, limit: int = 20, *, offset: int = 0, artist: str | None = None,
                    album: str | None = None) -> list[Track]:
        """Tracks whose artist, title, album or file name (not its folders) contain every
        word of ``text`` (case-insensitive), those whose title or "artist - title" is
        ``text`` first, then by artist, title and path; only those of ``artist`` /
        ``album`` when given (as :meth:`listing`); ``limit`` -1: all. At most
        ``MAX_QUERY_WORDS`` different words: ParameterError beyond."""
        where, params = _words_filter(text)
        named, names = _exact({"artist": artist, "album": album})
        exact = "(lower(title) = lower(?) OR lower(artist || ' - ' || title) = lower(?))"
        rows = self.db.execute(f"SELECT {TRACK_COLUMNS} FROM tracks WHERE {where} AND {named} "
                               f"ORDER BY {exact} DESC, artist, title, path LIMIT ? OFFSET ?",
                               (*params, *names, text.strip(), text.strip(), self._limit(limit), offset)).fetchall()
        return [Track(*row) for row in rows]

    def _limit(self, limit: int) -> int | None:
        """``limit`` as SQL's LIMIT takes it (-1: every row, which each engine says its way)."""
        return limit if limit >= 0 else self.db.ALL_ROWS

    def count_text(self, text: str) -> int:
        """How many tracks :meth:`search_text` finds, without a limit."""
        where, params = _words_filter(text)
        return self.db.execute(f"SELECT COUNT(*) FROM tracks WHERE {where}", params).fetchone()[0]

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
        """Bytes of the library's files: the catalogue, its journal and its vector index
        (not a damaged file kept beside it by ``soundalike repair``); in PostgreSQL, its tables."""
        if not isinstance(self.db, _Connection):
            return postgres.size_on_disk(self.db)
        files = (Path(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm", ".faiss", ".faiss.json"))
        return sum(p.stat().st_size for p in files if p.is_file())

    # --- browsing ------------------------------------------------------------------
    def listing(self, *, artist: str | None = None, album: str | None = None, offset: int = 0,
                limit: int = 50) -> list[Track]:
        """Tracks ordered by artist, album (case-insensitive, tracks without either after
        those with), then path (an album's files are usually numbered in its order); only
        those of ``artist`` / ``album`` (exact names, "": none) when given; ``limit`` -1: all."""
        where, params = _exact({"artist": artist, "album": album})
        rows = self.db.execute(f"SELECT {TRACK_COLUMNS} FROM tracks WHERE {where} ORDER BY coalesce(artist, '') = '', "
                               "coalesce(artist, '') COLLATE NOCASE, coalesce(album, '') = '', "
                               "coalesce(album, '') COLLATE NOCASE, path "
                               "LIMIT ? OFFSET ?",
                               (*params, self._limit(limit), offset)).fetchall()
        return [Track(*row) for row in rows]

    def artists(self, text: str = "", *, offset: int = 0, limit: int = 100) -> list[dict]:
        """Artists whose name contains ``text``, by name (case-insensitive): {"artist",
        "tracks", "albums", "cover" (the id of one of their tracks)}; tracks without an
        artist are grouped under "", last."""
        rows = self.db.execute(
            "SELECT coalesce(artist, '') AS artist_name, COUNT(*), COUNT(DISTINCT nullif(album, '')), MIN(id) "
            "FROM tracks WHERE coalesce(artist, '') LIKE ? ESCAPE '\\' GROUP BY artist_name "
            "ORDER BY coalesce(artist, '') = '', coalesce(artist, '') COLLATE NOCASE, artist_name "
            "LIMIT ? OFFSET ?", (_like(text), limit, offset)).fetchall()
        return [{"artist": a, "tracks": n, "albums": albums, "cover": cover} for a, n, albums, cover in rows]

    def albums(self, text: str = "", *, artist: str | None = None, offset: int = 0, limit: int = 100) -> list[dict]:
        """Albums (one per artist and album name) whose album or artist name contains
        ``text``, only ``artist``'s when given, by artist then album (case-insensitive):
        {"album", "artist", "tracks", "duration" (seconds), "cover" (the id of one of its
        tracks)}; tracks without an album are grouped under "" for their artist (after its
        albums; tracks without an artist after every artist)."""
        where, params = _exact({"artist": artist})
        rows = self.db.execute(
            "SELECT coalesce(album, '') AS album_name, coalesce(artist, '') AS artist_name, COUNT(*), "
            "coalesce(SUM(duration), 0), MIN(id) FROM tracks "
            f"WHERE {where} AND (coalesce(album, '') LIKE ? ESCAPE '\\' OR coalesce(artist, '') LIKE ? ESCAPE '\\') "
            "GROUP BY artist_name, album_name ORDER BY coalesce(artist, '') = '', coalesce(artist, '') COLLATE NOCASE, "
            "artist_name, coalesce(album, '') = '', coalesce(album, '') COLLATE NOCASE, album_name LIMIT ? OFFSET ?",
            (*params, _like(text), _like(text), limit, offset)).fetchall()
        return [{"album": album, "artist": name, "tracks": n, "duration": seconds, "cover": cover}
                for album, name, n, seconds, cover in rows]


# what a text search looks in: "artist - title", album and the file's name (the path after its last separator)
_SEARCHED = (f"(coalesce(artist,'') || ' - ' || coalesce(title,'') || ' ' || coalesce(album,'') || ' ' || "
             f"substr(path, length(rtrim(path, replace(path, '{os.sep}', ''))) + 1))")


def _words_filter(text: str) -> tuple[str, list[str]]:
    """A WHERE condition and its parameters: every word of ``text`` is in :data:`_SEARCHED`
    (no word: no track)."""
    words = list(dict.fromkeys(text.split()))
    if len(words) > MAX_QUERY_WORDS:
        raise ParameterError(f"a search of {len(words)} different words is too long: give at most "
                             f"{MAX_QUERY_WORDS}")
    if not words:
        return "1 = 0", []
    return " AND ".join(f"{_SEARCHED} LIKE ? ESCAPE '\\'" for _ in words), [_like(w) for w in words]


def _patch_matrix(blob: bytes, patches: int) -> np.ndarray:
    """A stored float16 patch blob as a (patches, dim) float32 matrix."""
    return np.frombuffer(blob, np.float16).reshape(patches, -1).astype(np.float32)


def _record_values(record: TrackRecord) -> tuple:
    """A record's values in the order of ``RECORD_COLUMNS``."""
    m = record.metadata
    measured = record.musical or UNKNOWN
    return (record.path, record.size, record.mtime_ns, m.artist, m.title, m.album, m.genre, m.duration,
            record.excerpt, _blob(record.vector, np.float32), _blob(record.tags, np.float32),
            _blob(record.patches, np.float16), _blob(record.starts, np.float32),
            *(getattr(measured, c) for c in MUSICAL_COLUMNS))


def _like(text: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') matching strings that contain ``text``."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _exact(columns: dict[str, str | None]) -> tuple[str, list[str]]:
    """A WHERE condition (``1 = 1`` when none is given) and its parameters keeping rows whose
    columns equal the given values (None: any; "": none, NULL or empty)."""
    given = {column: value for column, value in columns.items() if value is not None}
    tests = [f"{column} = ?" if value else f"({column} IS NULL OR {column} = ?)" for column, value in given.items()]
    return " AND ".join(tests) or "1 = 1", list(given.values())


def _blob(array: np.ndarray, dtype) -> bytes:
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
