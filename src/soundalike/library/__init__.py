"""The library: a catalogue of analysed tracks, its vector index, and queries on them."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import analysis, audio, musical
from ..analysis import Space
from ..errors import ParameterError, SoundalikeError
from ..models import load_model
from . import postgres
from .catalogue import Catalogue, LibraryError, ModelDescription, Track, TrackRecord
from .vectors import EXACT_LIMIT, VectorIndex, open_index

LIBRARY_ENV = "SOUNDALIKE_LIBRARY"
SUBSET_EXACT_LIMIT = 20_000  # filtered searches over fewer tracks than this are exact
OTHER_MATCHES_SHOWN = 5  # when words match several tracks: how many besides the one taken are named


def default_library_path() -> Path | str:
    """``$SOUNDALIKE_LIBRARY``, else ``library.sqlite`` in the user's data directory."""
    if os.environ.get(LIBRARY_ENV):
        return library_path(os.environ[LIBRARY_ENV])
    import platformdirs

    return Path(platformdirs.user_data_dir("soundalike")) / "library.sqlite"


def library_path(given: str | os.PathLike | None) -> Path | str:
    """The library a caller names, else the default (see :func:`default_library_path`):
    a file's path, or a PostgreSQL database's URL (``postgresql://...``) as it is."""
    if postgres.is_url(given):
        return given
    return Path(given).expanduser() if given else default_library_path()


class QueryError(SoundalikeError):
    """A query names no track of the library and no audio file."""


class Candidates(NamedTuple):
    """The nearest tracks to a query, best first, row-aligned: scores (k,) cosine,
    ids (k,), tracks (k Track), unit (k, d) their vectors in the library's space."""

    scores: np.ndarray
    ids: np.ndarray
    tracks: list[Track]
    unit: np.ndarray


@dataclasses.dataclass(frozen=True)
class Seed:
    """A query resolved to vectors: a library track, or a file analysed on the fly.

    entry : the library track, or (id None) the outside file's absolute path and tags,
    as a playlist lists it; path : as given; vector : (d,) unit track vector in the
    library's space (:attr:`Library.space`); tags : (n_tags,) mean tag probabilities;
    patches : (P, d) raw patch embeddings; starts : (P,) seconds; measures : its tempo,
    key, loudness and energy (None where not measured)
    """

    entry: Track
    path: str
    vector: np.ndarray
    tags: np.ndarray
    patches: np.ndarray
    starts: np.ndarray
    measures: musical.Musical | None = None

    @property
    def track(self) -> Track | None:
        """The library track, None for an outside file."""
        return self.entry if self.entry.id is not None else None

    @property
    def artist(self) -> str | None:
        return self.entry.artist

    @property
    def duration(self) -> float | None:
        return self.entry.duration


class Library:
    """A catalogue file plus its vector index (opened lazily, kept up to date).

    ``create``: open it to write tracks (``soundalike index``); ``readonly``: see
    :class:`Catalogue` (by default, read-only exactly when it cannot be written).

    A Library may live long (a server): whatever it derives from the catalogue (the
    index and its space, the loaded model, the tag matrix) follows the catalogue's
    generation, so changes made by other processes (an index run, a re-analysis that
    switches the model) are seen by the next call.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = False,
                 readonly: bool | None = None, exact_limit: int = EXACT_LIMIT):
        self.location = library_path(path)  # what opens it again (another connection)
        self.catalogue = Catalogue(self.location, create=create, readonly=readonly)
        self.path = self.catalogue.path  # what names it to people (a PostgreSQL URL without its password)
        self.exact_limit = exact_limit
        self._index: VectorIndex | None = None
        self._model: tuple[str, object] | None = None  # (name, loaded model)
        self._tags: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None  # (generation, tag matrix)
        self._patches = None  # the patch index (search by passage), opened on first use
        self._patches_lock = threading.Lock()  # one thread brings it up to date at a time

    def close(self) -> None:
        self.catalogue.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def index(self) -> VectorIndex:
        """The vector index, brought up to date with the catalogue (and saved) whenever
        the catalogue changed since it was last used."""
        if self._index is None or self._index.generation != self.catalogue.generation:
            return self.refresh_index()
        return self._index

    def refresh_index(self, progress: Callable[[int], None] | None = None, *, recentre: bool = False) -> VectorIndex:
        """Bring the saved vector index up to date with the catalogue now (``recentre``:
        an exact index on the exact mean, see :func:`open_index`).

        ``progress(n_added)`` is called while the index is being rebuilt, if it is.
        """
        if postgres.is_url(self.location):
            self._index = postgres.open_index(self.catalogue, exact_limit=self.exact_limit, progress=progress,
                                              recentre=recentre)
            # searched on the connection of whoever searches (a server's request: its own)
            self._index.connection = lambda: self.catalogue.db
        else:
            self._index = open_index(self.catalogue, exact_limit=self.exact_limit, progress=progress,
                                     recentre=recentre)
        return self._index

    @property
    def patch_index(self):
        """The patch index (:mod:`.patches`, search by passage), brought up to date with the
        catalogue whenever it changed since it was last used."""
        from .patches import open_patch_index

        with self._patches_lock:
            if self._patches is None or self._patches.generation != self.catalogue.generation:
                self._patches = open_patch_index(self.catalogue)
            return self._patches

    @property
    def space(self) -> Space:
        """Where similarity is measured: the index's space, centred on the library's mean
        when the index was built (within ``CENTRE_TOLERANCE`` of the mean now)."""
        return self.index.space

    @property
    def model(self):
        """The library's model, loaded."""
        name = self.catalogue.model
        if not name:
            raise LibraryError(f"{self.path}: the library is empty; index some music first")
        model = self._model  # one read: another thread may replace it meanwhile
        if model is None or model[0] != name:
            model = self._model = (name, load_model(name))
        return model[1]

    @property
    def _tag_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        generation = self.catalogue.generation
        tags = self._tags  # one read: another thread may replace it meanwhile
        if tags is None or tags[0] != generation:
            tags = self._tags = (generation, self.catalogue.arrays("tags"))
        return tags[1]

    def tag_index(self, tag: str) -> int:
        """Position of a predicted tag (case-insensitive); ParameterError lists the known ones."""
        names = self.catalogue.tag_names
        lowered = [n.casefold() for n in names]
        if tag.casefold() not in lowered:
            close = difflib.get_close_matches(tag.casefold(), lowered, n=3)
            guess = f" (did you mean {' or '.join(repr(names[lowered.index(c)]) for c in close)}?)" if close else ""
            raise ParameterError(f"unknown tag {tag!r}{guess}; the model's tags are: {', '.join(names)}")
        return lowered.index(tag.casefold())

    def tag_scores(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """(track ids (n,), predicted probability of ``tag`` (n,))."""
        ids, matrix = self._tag_matrix
        if not len(ids):
            return ids, np.zeros(0, np.float32)
        return ids, matrix[:, self.tag_index(tag)]

    def tag_filter(self, tag: str, min_prob: float) -> np.ndarray:
        """Ids of tracks whose predicted ``tag`` probability is at least ``min_prob``,
        or whose file genre is ``tag`` (case-insensitive)."""
        if not 0 <= min_prob <= 1:
            raise ParameterError(f"min_prob must be in [0, 1], got {min_prob}")
        by_genre = np.fromiter((r[0] for r in self.catalogue.db.execute(
            "SELECT id FROM tracks WHERE genre = ? COLLATE NOCASE", (tag,))), np.int64)
        names = [n.casefold() for n in self.catalogue.tag_names]
        if tag.casefold() not in names:
            if len(by_genre):
                return by_genre
            self.tag_index(tag)  # raises, listing the tags
        ids, probs = self.tag_scores(tag)
        return np.union1d(ids[probs >= min_prob], by_genre)

    def allowed(self, *, tag: str | None = None, min_prob: float = 0.5,
                measures: musical.Filter | None = None) -> np.ndarray | None:
        """Ids (sorted) of the tracks every filter given keeps: ``tag`` (see :meth:`tag_filter`)
        and ``measures`` (tempo, key, energy); None when no filter is given."""
        kept = [self.tag_filter(tag, min_prob)] if tag else []
        if measures is not None and measures.active:
            kept.append(self.catalogue.measured(*measures.conditions()))
        if not kept:
            return None
        return functools.reduce(np.intersect1d, kept)

    def nearest(self, vector: np.ndarray, k: int, *, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores and ids of the ``k`` nearest tracks to a unit ``vector`` of
        :attr:`space` (restricted to ``allowed``)."""
        if allowed is not None and len(allowed) <= SUBSET_EXACT_LIMIT and self.index.kind == "hnsw":
            ids, vectors = self.catalogue.arrays("vector", allowed)
            if not len(ids):
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            scores = self.space.project(vectors) @ vector
            order = np.argsort(-scores, kind="stable")[:k]
            return scores[order], ids[order]
        return self.index.search(vector, k, allowed=allowed)

    def candidates(self, vector: np.ndarray, k: int, *, allowed: np.ndarray | None = None) -> Candidates:
        """:meth:`nearest`, with each hit's track and unit vector, for rules to filter."""
        scores, ids = self.nearest(vector, k, allowed=allowed)
        return Candidates(scores, ids, self.catalogue.tracks(ids), self.vectors(ids))

    def vectors(self, ids) -> np.ndarray:
        """Unit track vectors (n, d) in :attr:`space`, in the order of ``ids``."""
        if not len(ids):
            return np.zeros((0, self.space.dim), np.float32)
        found, matrix = self.catalogue.arrays("vector", ids)
        position = {int(i): row for row, i in enumerate(found)}
        return self.space.project(matrix[[position[int(i)] for i in ids]])

    # --- queries ---------------------------------------------------------------------
    def resolve(self, query: str, *, note: Callable[[str], None] | None = None) -> Seed:
        """A library path, a track id, an audio file outside the library, or words of a
        track's artist, title, album or file name (see :meth:`match_words`, which tells
        ``note`` which track it took when several match)."""
        candidate = Path(query).expanduser()
        try:
            is_file, resolved = candidate.is_file(), str(candidate.resolve())
        except (OSError, RuntimeError):  # too long for a file name, or a loop of links: not a path
            is_file, resolved = False, None
        if is_file:
            track = self.catalogue.track_by_path(resolved)
            return self.seed(track) if track else self.analyse_outside(candidate)
        by_path = resolved and self.catalogue.track_by_path(resolved)
        if by_path:  # a library path whose file is not there right now
            return self.seed(by_path)
        number = query.strip().isdigit()
        if number:
            track = self.catalogue.track(int(query))
            if track:
                return self.seed(track)
        track = self.match_words(query, note=note)
        if track and (not number or _titled(track, query)):  # a number is an id, or a title ("1999") exactly
            return self.seed(track)
        if number:
            raise QueryError(f"no track has id {query.strip()} in {self.path}")
        if _looks_like_a_file(query):
            raise QueryError(f"{query}: no such file, and no track of {self.path} matches these words")
        raise QueryError(f"{query!r}: no such track id, file, or artist/title in {self.path}")

    def match_words(self, query: str, *, note: Callable[[str], None] | None = None) -> Track | None:
        """The track that words name (see :meth:`Catalogue.search_text`): the only match,
        else the only one titled ``query`` (or "artist - title"), else the first by artist
        and title, saying to ``note`` how many matched, which was taken and up to
        ``OTHER_MATCHES_SHOWN`` others with their ids. None when none matches."""
        matches = self.catalogue.search_text(query, limit=OTHER_MATCHES_SHOWN + 1)
        if len(matches) < 2:
            return matches[0] if matches else None
        taken = matches[0]
        if note and not (_titled(taken, query) and not _titled(matches[1], query)):
            total = self.catalogue.count_text(query)
            others = ", ".join(f"{t.label!r} (id {t.id})" for t in matches[1:])
            if total > len(matches):
                others += f" and {total - len(matches)} more"
            note(f"{total} tracks match {query!r}: took {taken.label!r} (id {taken.id}); others: {others}. "
                 "Give an id to choose one.")
        return taken

    def seed(self, track: Track) -> Seed:
        patches, starts = self.catalogue.patches(track.id)
        ids, tags = self.catalogue.arrays("tags", [track.id])
        return Seed(track, track.path, self.vectors([track.id])[0], tags[0], patches, starts,
                    self.catalogue.musical([track.id]).get(track.id))

    def analyse_outside(self, path: str | os.PathLike) -> Seed:
        """Analyse a file that is not in the library (it is not added)."""
        return self.outside_seed(path, audio.read_metadata(path),
                                 analysis.analyze(path, self.model, keep_audio=musical.enabled()))

    def outside_seed(self, path: str | os.PathLike, meta: audio.TrackMetadata, result: analysis.Analysis) -> Seed:
        """A file outside the library, already analysed with the library's model, as a seed
        (measured, when the analysis kept its audio: ``keep_audio``)."""
        if self.aggregation == "tfidf":  # weighted against the library's patches
            patches = [p for _, p in self.catalogue.iter_patches()]
            vector = analysis.tfidf_vectors([*patches, result.embeddings])[-1]
        else:
            vector = analysis.aggregate(result.embeddings)
        entry = Track(None, str(Path(path).resolve()), meta.artist, meta.title, meta.album, meta.genre, meta.duration)
        measures = (musical.measure(list(result.clips), self.model.window.sample_rate, meta.channels)
                    if result.clips and musical.enabled() else None)
        return Seed(entry, str(path), self.space.project(vector), result.tag_probabilities, result.embeddings,
                    result.starts, measures)

    def seed_tags(self, seed: Seed, n: int) -> list[tuple[str, float]]:
        """A seed's ``n`` most probable tags as (name, probability), best first."""
        names = self.catalogue.tag_names or list(self.model.labels)
        order = np.argsort(-seed.tags, kind="stable")[:n]
        return [(names[i], float(seed.tags[i])) for i in order]

    def top_tags(self, track_ids, n: int = 3) -> dict[int, list[tuple[str, float]]]:
        names = self.catalogue.tag_names
        ids, matrix = self.catalogue.arrays("tags", track_ids)
        out = {}
        for i, row in zip(ids, matrix):
            order = np.argsort(-row, kind="stable")[:n]
            out[int(i)] = [(names[j], float(row[j])) for j in order]
        return out

    @property
    def aggregation(self) -> str:
        return self.catalogue.get_meta("aggregate") or "mean"

    def reaggregate(self, method: str) -> None:
        """Recompute every track vector from its stored patches ("mean" or "tfidf");
        TF-IDF depends on the whole library, so it is redone after each index run."""
        if method not in analysis.AGGREGATIONS:
            raise ParameterError(f"aggregation must be one of {', '.join(analysis.AGGREGATIONS)}, got {method!r}")
        ids, patches = zip(*self.catalogue.iter_patches()) if self.catalogue.count() else ((), ())
        if method == "mean":
            vectors = [analysis.aggregate(p) for p in patches]
        else:
            vectors = analysis.tfidf_vectors(list(patches))
        self.catalogue.set_vectors(dict(zip(ids, vectors)))
        self.catalogue.set_meta("aggregate", method)

    def stats(self) -> dict:
        index_kind = self.index.kind if self.catalogue.count() else None
        staged = self.catalogue.staged_model
        return {
            "library": str(self.path),
            "tracks": self.catalogue.count(),
            "failed": len(self.catalogue.failures()),
            "model": self.catalogue.model,
            "reanalysis": None if staged is None else {
                "model": staged.name, "left": len(self.catalogue.unstaged())},
            "aggregate": self.aggregation,
            "index": index_kind,
            "hours": round((self.catalogue.db.execute("SELECT SUM(duration) FROM tracks").fetchone()[0] or 0) / 3600, 2),
            "bytes_on_disk": self.catalogue.size_on_disk(),
        }


def _looks_like_a_file(query: str) -> bool:
    """Whether words meant a file: a folder in them, or an audio file's extension."""
    from .indexer import AUDIO_EXTENSIONS

    return os.sep in query or query.startswith("~") or Path(query).suffix.lower() in AUDIO_EXTENSIONS


def _titled(track: Track, query: str) -> bool:
    """Whether ``query`` is the track's title, or "artist - title" (case-insensitive)."""
    named = query.strip().casefold()
    return bool(track.title) and named in (track.title.casefold(), f"{track.artist} - {track.title}".casefold())


__all__ = ["Candidates", "Catalogue", "Library", "LibraryError", "ModelDescription", "QueryError", "Seed", "Track",
           "TrackRecord", "default_library_path"]
