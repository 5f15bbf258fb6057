"""The vector index: faiss over the library's unit track vectors (inner product = cosine).

Vectors enter the index through the library's :class:`~soundalike.analysis.Space`,
centred on the library's mean (the centre is saved with the index, and queries go
through the same space). The raw vectors stay in SQLite, so the index can always be
rebuilt around a new centre as the library changes. An index is updated in place
while the library's mean has moved less than ``CENTRE_TOLERANCE`` of the tracks'
spread around it, and rebuilt around the new mean beyond; ``soundalike index`` ends by
re-centring an exact index on the exact mean, so that its neighbours are those of a
library indexed in one go (an HNSW index is approximate anyway, and rebuilding it
after every run would cost a minute at 500,000 tracks).

Exact search (``IndexFlatIP``) up to ``EXACT_LIMIT`` tracks, HNSW beyond (see
docs/benchmarks.md for the measured latency and recall). The index is saved beside
the catalogue as ``<library>.faiss`` with ``<library>.faiss.json`` recording the
catalogue generation it reflects, the library's identity and a SHA-256 of the faiss
file. Files are replaced atomically, index first, so after a crash at any point the
recorded generation is either current (index good) or stale, and a stale index is
brought up to date from SQLite on the next open. The catalogue is the truth and the
index a cache: an index of another library (one deleted and re-created beside it) is
ignored, and a damaged one (checksum, state) rebuilt with a warning. Hashing costs
about 0.1 s per 160 MB (100,000 400-d vectors), against 0.15 s to read the index. A
read-only library's index is kept in memory when it cannot be saved.

HNSW graphs cannot delete. A removed or re-analysed track's old vector stays in the
graph as a *dead* label that searches skip, and a re-analysed track comes back under
a new label (its id plus a version in the high bits), so keeping a large library up
to date costs the changed tracks, not a rebuild. The index is rebuilt once dead
labels pass ``MAX_DEAD_FRACTION`` of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from ..analysis import Space, library_centre
from .catalogue import Catalogue

EXACT_LIMIT = 100_000  # tracks searched exactly; HNSW above
HNSW_M = 32  # graph degree
HNSW_EF_CONSTRUCTION = 80
# candidates kept while searching: at 1M tracks of the default's 400-d vectors, recall@10
# 0.971 at 2.1 ms a query (1024: 0.990 at 3.8 ms; docs/benchmarks.md)
HNSW_EF_SEARCH = 512
BUILD_CHUNK = 20_000  # vectors added at a time (progress is reported between chunks)
MAX_DEAD_FRACTION = 0.2  # HNSW is rebuilt when more of its vectors than this are dead
# How far (in units of the tracks' spread) the library's mean may move before HNSW is
# rebuilt around it: a stale centre then costs 0.005 of recall (bench_library centre)
CENTRE_TOLERANCE = 0.01
VERSION_SHIFT = 40  # faiss label = track id | version << VERSION_SHIFT
TRACK_MASK = (1 << VERSION_SHIFT) - 1

log = logging.getLogger(__name__)


class VectorIndex:
    """Track ids and their unit vectors in a faiss index, with search and filters.

    ``space``: how raw track vectors became the indexed vectors (queries must be in
    it too); ``dead``: labels whose vectors are out of date (HNSW only), never returned.
    """

    def __init__(self, index: faiss.IndexIDMap2, kind: str, space: Space, dead: np.ndarray | None = None,
                 generation: int | None = None):
        self.index = index
        self.kind = kind
        self.space = space
        self.generation = generation  # of the catalogue it reflects
        self.dead = np.unique(np.asarray([] if dead is None else dead, dtype=np.int64))
        labels = self.labels
        versioned = labels[labels > TRACK_MASK]
        self._versioned = versioned[~np.isin(versioned, self.dead)]  # live labels that are not plain ids
        # built once (hashing the dead labels per query costs as much as the search);
        # the batch is kept referenced because faiss holds a raw pointer to it
        self._dead_batch = faiss.IDSelectorBatch(self.dead) if len(self.dead) else None
        self._alive = faiss.IDSelectorNot(self._dead_batch) if len(self.dead) else None

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, space: Space | None = None, *,
              exact_limit: int = EXACT_LIMIT, progress: Callable[[int], None] | None = None) -> VectorIndex:
        """An index of raw ``vectors`` (n, d) under track ``ids`` (n,), projected by
        ``space`` (default: plain cosine, one block, no centre).

        Vectors go in by ``BUILD_CHUNK``; ``progress(n_added)`` is called after each.
        """
        dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1
        space = space if space is not None else Space((dim,), (1.0,))
        if len(ids) > exact_limit:
            inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
            kind = "hnsw"
        else:
            inner = faiss.IndexFlatIP(dim)
            kind = "exact"
        index = faiss.IndexIDMap2(inner)
        ids = np.asarray(ids, dtype=np.int64)
        for start in range(0, len(ids), BUILD_CHUNK):
            chunk = slice(start, start + BUILD_CHUNK)
            index.add_with_ids(space.project(vectors[chunk]), ids[chunk])
            if progress:
                progress(min(start + BUILD_CHUNK, len(ids)))
        return cls(index, kind, space)

    def __len__(self) -> int:
        return self.index.ntotal - len(self.dead)

    @property
    def labels(self) -> np.ndarray:
        """Every faiss label in the index (n_total,), dead ones included."""
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    @property
    def ids(self) -> np.ndarray:
        """Track ids of the live vectors."""
        labels = self.labels
        return labels[~np.isin(labels, self.dead)] & TRACK_MASK

    def search(self, query: np.ndarray, k: int, *, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores (k,) and track ids (k,) of the nearest vectors, best first.

        ``query`` is a unit vector of this index's space (see ``space.project``).
        ``allowed``, when given, restricts the result to these track ids. Fewer than
        ``k`` results come back when fewer tracks qualify.
        """
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        k = min(k, len(self))
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        selector = only = self._alive  # `only` stays a local until the search returns: faiss keeps raw pointers
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            versioned = self._versioned[np.isin(self._versioned & TRACK_MASK, allowed)]
            selector = only = faiss.IDSelectorBatch(np.concatenate([allowed, versioned]))
            if self._alive is not None:
                selector = faiss.IDSelectorAnd(only, self._alive)
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        scores, labels = self.index.search(q, k, params=params)
        keep = labels[0] >= 0
        return scores[0][keep], labels[0][keep] & TRACK_MASK

    # --- persistence ---------------------------------------------------------------
    @staticmethod
    def paths(catalogue_path: Path) -> tuple[Path, Path]:
        return Path(f"{catalogue_path}.faiss"), Path(f"{catalogue_path}.faiss.json")

    def save(self, catalogue_path: Path, state: dict) -> None:
        centre = None if self.space.centre is None else self.space.centre.tolist()
        write_saved(self.index, self.paths(catalogue_path)[0],
                    {**state, "kind": self.kind, "count": len(self), "dead": self.dead.tolist(),
                     "blocks": list(self.space.blocks), "weights": list(self.space.weights), "centre": centre})

    @classmethod
    def load(cls, catalogue_path: Path, library: str) -> tuple["VectorIndex", dict] | None:
        """The saved index of the library whose identity is ``library``, and its state;
        None when missing, of another library, or damaged (with a warning)."""
        index_path, state_path = cls.paths(catalogue_path)
        try:
            saved = read_saved(index_path, library)
            if saved is None:
                return None
            index, state = saved
            space = saved_space(state)
            if not isinstance(index, faiss.IndexIDMap2):
                index = faiss.downcast_index(index)
            loaded = cls(index, state.get("kind", "exact"), space, state.get("dead"), state.get("generation"))
            if len(loaded) != state["count"]:
                raise ValueError(f"{len(loaded)} vectors, {state['count']} in {state_path}")
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s and %s: the saved vector index is damaged (%s: %s); rebuilding it from the library",
                        index_path, state_path, type(exc).__name__, exc)
            return None
        return loaded, state


def write_saved(index: faiss.Index, index_path: Path, state: dict) -> None:
    """Save a faiss index as ``index_path`` and ``state`` with its checksum as
    ``<index_path>.json``, each replaced atomically, the index first."""
    state_path = Path(f"{index_path}.json")
    tmp_index, tmp_state = Path(f"{index_path}.{os.getpid()}.tmp"), Path(f"{state_path}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(tmp_index))
        tmp_state.write_text(json.dumps({**state, "checksum": _checksum(tmp_index)}))
        os.replace(tmp_index, index_path)
        os.replace(tmp_state, state_path)
    finally:
        tmp_index.unlink(missing_ok=True)
        tmp_state.unlink(missing_ok=True)


def read_saved(index_path: Path, library: str) -> tuple[faiss.Index, dict] | None:
    """A faiss index saved by :func:`write_saved` and its state; None when there is none
    or it is another library's. Raises (OSError, ValueError, RuntimeError, KeyError) when
    it is damaged."""
    state_path = Path(f"{index_path}.json")
    if not state_path.exists() and not index_path.exists():
        return None
    state = json.loads(state_path.read_text())
    if state.get("library") != library:  # also an index from before identities
        log.info("%s: the vector index is another library's; rebuilding it", index_path)
        return None
    if _checksum(index_path) != state["checksum"]:
        raise ValueError(f"its checksum is not the one saved in {state_path}")
    return faiss.read_index(str(index_path)), state


def saved_space(state: dict) -> Space:
    """The space recorded in an index's state (its blocks, weights and centre)."""
    centre = state["centre"]
    return Space(tuple(state["blocks"]), tuple(state["weights"]),
                 None if centre is None else np.asarray(centre, dtype=np.float64))


def _checksum(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _save(index: VectorIndex, catalogue: Catalogue, state: dict) -> None:
    """Save ``index`` beside the catalogue; a read-only library's stays in memory."""
    if catalogue.readonly:
        return
    try:
        index.save(catalogue.path, state)
    except (OSError, RuntimeError) as exc:  # faiss says RuntimeError
        log.warning("%s: cannot save the vector index (%s); it is kept in memory", catalogue.path, exc)


def _state(catalogue: Catalogue) -> dict:
    return {"generation": catalogue.generation, "model": catalogue.model, "library": catalogue.identity}


def library_space(catalogue: Catalogue) -> Space:
    """The catalogue's space now: its model's blocks and weights, centred on its mean
    (:func:`~soundalike.analysis.library_centre`)."""
    model = catalogue.description
    if model is None:  # empty: any space will do
        return Space((1,), (1.0,))
    return Space(model.blocks, model.weights, library_centre(*catalogue.vector_sum()))


def spread(vectors: np.ndarray, space: Space) -> list[float]:
    """Per block, the root-mean-square distance of ``vectors`` (n, d) from the centre."""
    x = np.asarray(vectors, np.float64) - (space.centre if space.centre is not None else 0.0)
    edges = np.cumsum((0, *space.blocks))
    return [float(np.sqrt((x[:, a:b] ** 2).sum(axis=1).mean())) if len(x) else 0.0
            for a, b in zip(edges[:-1], edges[1:])]


def same_analysis(saved: dict, wanted: dict, saved_space: Space, space: Space) -> bool:
    """Whether a saved index holds vectors of the library's model, in blocks weighted as now."""
    return saved.get("model") == wanted["model"] and saved_space.blocks == space.blocks \
        and saved_space.weights == space.weights


def centre_drift(saved: Space, current: Space, spreads: list[float]) -> float:
    """How far the mean moved since the index was built: the largest, over blocks, of
    the shift divided by the block's spread around the saved centre (inf if unknown)."""
    if saved.centre is None or current.centre is None or saved.blocks != current.blocks or not spreads:
        return float("inf")
    edges = np.cumsum((0, *saved.blocks))
    shifts = [np.linalg.norm(current.centre[a:b] - saved.centre[a:b]) / s if s > 0 else float("inf")
              for a, b, s in zip(edges[:-1], edges[1:], spreads)]
    return float(max(shifts))


def open_index(catalogue: Catalogue, *, exact_limit: int = EXACT_LIMIT,
               progress: Callable[[int], None] | None = None, recentre: bool = False) -> VectorIndex:
    """The catalogue's vector index, up to date with it (``progress``: see ``VectorIndex.build``).

    Loads the saved index when it reflects the catalogue's current generation. Behind
    it, while the library's mean moved less than ``CENTRE_TOLERANCE``, the index is
    updated in its saved space: the tracks deleted or rewritten since are removed
    (exact) or marked dead (HNSW), the current vectors of new and rewritten ones added,
    and it is saved. Otherwise it is rebuilt from SQLite around the library's current
    mean: past the tolerance, when the dead labels pass ``MAX_DEAD_FRACTION`` or the
    library crossed ``exact_limit``, with no usable saved state, and, with ``recentre``,
    an exact index whose centre is not the current mean. A read-only library without an
    identity (made before identities) has its index rebuilt, in memory.
    """
    with catalogue.snapshot():  # one state of the library throughout
        wanted = _state(catalogue)
        space = library_space(catalogue)
        loaded = VectorIndex.load(catalogue.path, wanted["library"]) if wanted["library"] else None
        if loaded is not None:
            index, saved = loaded
            same_model = same_analysis(saved, wanted, index.space, space)
            drift = centre_drift(index.space, space, saved.get("spread") or [])
            stale_centre = recentre and index.kind == "exact" and drift > 0
            if same_model and not stale_centre and saved.get("generation") == wanted["generation"]:
                return index
            # a saved generation ahead of the library's: the library was restored from a backup
            if same_model and not stale_centre and isinstance(saved.get("generation"), int) \
                    and saved["generation"] < wanted["generation"] and drift <= CENTRE_TOLERANCE:
                updated = _update(catalogue, index, saved["generation"], exact_limit)
                if updated is not None:
                    updated.generation = wanted["generation"]
                    _save(updated, catalogue, {**wanted, "spread": saved["spread"]})
                    return updated
        ids, vectors = catalogue.arrays("vector")
    index = VectorIndex.build(ids, vectors, space, exact_limit=exact_limit, progress=progress)
    index.generation = wanted["generation"]
    _save(index, catalogue, {**wanted, "spread": spread(vectors, space)})
    return index


def _update(catalogue: Catalogue, index: VectorIndex, since: int, exact_limit: int) -> VectorIndex | None:
    """Apply the catalogue's changes after generation ``since``, in the index's own
    space; None if a rebuild is needed.

    Vectors of removed and rewritten tracks are deleted (exact) or marked dead (HNSW);
    new and rewritten tracks are added, a rewritten one under its next version's label.
    """
    current = catalogue.ids()
    if (len(current) > exact_limit) != (index.kind == "hnsw"):
        return None
    labels = index.labels
    live = labels[~np.isin(labels, index.dead)]
    live_tracks = live & TRACK_MASK
    rewritten = catalogue.changed_since(since)
    stale = live[~np.isin(live_tracks, current) | np.isin(live_tracks, rewritten)]
    missing = np.union1d(np.setdiff1d(current, live_tracks), rewritten)
    dead = index.dead
    if index.kind == "hnsw":
        dead = np.union1d(dead, stale)
        if len(dead) > MAX_DEAD_FRACTION * (len(labels) + len(missing)):
            return None
    elif len(stale):
        index.index.remove_ids(stale)
        labels = index.labels
    if len(missing):
        ids, vectors = catalogue.arrays("vector", missing)
        index.index.add_with_ids(index.space.project(vectors), _next_labels(labels, ids))
    return VectorIndex(index.index, index.kind, index.space, dead)


def _next_labels(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Labels (n,) for track ``ids`` (n,): each id with a version one above any label of it in ``labels``."""
    versions = np.zeros(len(ids), np.int64)
    taken = labels[np.isin(labels & TRACK_MASK, ids)]
    if len(taken):
        position = {track: i for i, track in enumerate(ids.tolist())}
        for label in taken.tolist():
            i = position[label & TRACK_MASK]
            versions[i] = max(versions[i], (label >> VERSION_SHIFT) + 1)
    return ids | (versions << VERSION_SHIFT)
