"""The vector index: faiss over unit-length track vectors (inner product = cosine).

Exact search (``IndexFlatIP``) up to ``EXACT_LIMIT`` tracks, HNSW beyond (see
docs/benchmarks.md for the measured latency and recall). The index is saved beside
the catalogue as ``<library>.faiss`` with ``<library>.faiss.json`` recording the
catalogue generation it reflects. Files are replaced atomically, index first, so
after a crash at any point the recorded generation is either current (index good)
or stale, and a stale index is brought up to date from SQLite on the next open.

HNSW graphs cannot delete. A removed or re-analysed track's old vector stays in the
graph as a *dead* label that searches skip, and a re-analysed track comes back under
a new label (its id plus a version in the high bits), so keeping a large library up
to date costs the changed tracks, not a rebuild. The index is rebuilt once dead
labels pass ``MAX_DEAD_FRACTION`` of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from ..analysis import normalize
from .catalogue import Catalogue

EXACT_LIMIT = 100_000  # tracks searched exactly; HNSW above
HNSW_M = 32  # graph degree
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 512  # candidates kept while searching: recall 0.99 at 2 ms for 1M tracks (docs/benchmarks.md)
BUILD_CHUNK = 20_000  # vectors added at a time (progress is reported between chunks)
MAX_DEAD_FRACTION = 0.2  # HNSW is rebuilt when more of its vectors than this are dead
VERSION_SHIFT = 40  # faiss label = track id | version << VERSION_SHIFT
TRACK_MASK = (1 << VERSION_SHIFT) - 1


class VectorIndex:
    """Track ids and their unit vectors in a faiss index, with search and filters.

    ``dead``: labels whose vectors are out of date (HNSW only), never returned.
    """

    def __init__(self, index: faiss.IndexIDMap2, kind: str, dead: np.ndarray | None = None):
        self.index = index
        self.kind = kind
        self.dead = np.unique(np.asarray([] if dead is None else dead, dtype=np.int64))
        labels = self.labels
        versioned = labels[labels > TRACK_MASK]
        self._versioned = versioned[~np.isin(versioned, self.dead)]  # live labels that are not plain ids
        # built once (hashing the dead labels per query costs as much as the search);
        # the batch is kept referenced because faiss holds a raw pointer to it
        self._dead_batch = faiss.IDSelectorBatch(self.dead) if len(self.dead) else None
        self._alive = faiss.IDSelectorNot(self._dead_batch) if len(self.dead) else None

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, *, exact_limit: int = EXACT_LIMIT,
              progress: Callable[[int], None] | None = None) -> VectorIndex:
        """An index of ``vectors`` (n, d) under track ``ids`` (n,).

        Vectors go in by ``BUILD_CHUNK``; ``progress(n_added)`` is called after each.
        """
        dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1
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
            index.add_with_ids(normalize(vectors[chunk]), ids[chunk])
            if progress:
                progress(min(start + BUILD_CHUNK, len(ids)))
        return cls(index, kind)

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

        ``allowed``, when given, restricts the result to these track ids. Fewer than
        ``k`` results come back when fewer tracks qualify.
        """
        q = normalize(query).reshape(1, -1)
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
        index_path, state_path = self.paths(catalogue_path)
        tmp_index, tmp_state = Path(f"{index_path}.tmp"), Path(f"{state_path}.tmp")
        faiss.write_index(self.index, str(tmp_index))
        tmp_state.write_text(json.dumps({**state, "kind": self.kind, "count": len(self), "dead": self.dead.tolist()}))
        os.replace(tmp_index, index_path)
        os.replace(tmp_state, state_path)

    @classmethod
    def load(cls, catalogue_path: Path) -> tuple["VectorIndex", dict] | None:
        index_path, state_path = cls.paths(catalogue_path)
        try:
            state = json.loads(state_path.read_text())
            index = faiss.read_index(str(index_path))
        except (OSError, ValueError, RuntimeError):
            return None
        if not isinstance(index, faiss.IndexIDMap2):
            index = faiss.downcast_index(index)
        return cls(index, state.get("kind", "exact"), state.get("dead")), state


def _state(catalogue: Catalogue) -> dict:
    return {"generation": catalogue.generation, "model": catalogue.model}


def open_index(catalogue: Catalogue, *, exact_limit: int = EXACT_LIMIT,
               progress: Callable[[int], None] | None = None) -> VectorIndex:
    """The catalogue's vector index, up to date with it (``progress``: see ``VectorIndex.build``).

    Loads the saved index when it reflects the catalogue's current generation;
    otherwise removes (or, in HNSW, marks dead) the tracks deleted or rewritten since
    the saved generation and adds the current vectors of new and rewritten ones, then
    saves it. It is rebuilt from SQLite when there is no usable saved index, when the
    dead labels pass ``MAX_DEAD_FRACTION``, or when the library crossed ``exact_limit``.
    """
    wanted = _state(catalogue)
    loaded = VectorIndex.load(catalogue.path)
    if loaded is not None:
        index, saved = loaded
        if saved.get("generation") == wanted["generation"] and saved.get("model") == wanted["model"]:
            return index
        if saved.get("model") == wanted["model"] and isinstance(saved.get("generation"), int):
            updated = _update(catalogue, index, saved["generation"], exact_limit)
            if updated is not None:
                updated.save(catalogue.path, wanted)
                return updated
    ids, vectors = catalogue.arrays("vector")
    index = VectorIndex.build(ids, vectors, exact_limit=exact_limit, progress=progress)
    index.save(catalogue.path, wanted)
    return index


def _update(catalogue: Catalogue, index: VectorIndex, since: int, exact_limit: int) -> VectorIndex | None:
    """Apply the catalogue's changes after generation ``since``; None if a rebuild is needed.

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
        index.index.add_with_ids(normalize(vectors), _next_labels(labels, ids))
    return VectorIndex(index.index, index.kind, dead)


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
