"""The patch index: faiss over the library's unit patch vectors, for search by passage.

Every stored patch of every track (the default excerpt's spread patches, every patch
of a track analysed in full) is a vector of the library's space (see
:func:`patch_space`), labelled ``track id << PATCH_BITS | patch number`` (its row in the
track's stored patches, whose start time the catalogue keeps). Exact search
(``IndexFlatIP``) up to ``EXACT_PATCHES`` patches; beyond, an inverted file of product-
quantised vectors (IVF-PQ, ``dim / 8`` bytes a patch), which only has to find the
candidate tracks: :mod:`soundalike.passages` scores them again exactly from the stored
patches.

It is kept in step with the catalogue as the track index is (:mod:`.vectors`, whose
persistence it shares): saved beside the library as ``<library>.patches.faiss`` with a
``.json`` state (generation, library identity, space, checksum), updated in place while
the library's mean stays within ``CENTRE_TOLERANCE``: both kinds remove vectors, so the
patches of removed and re-analysed tracks are deleted and the current ones added.
Rebuilt from SQLite when the mean moved further, when the library crosses
``EXACT_PATCHES``, when an IVF holds ``IVF_REGROWTH`` times the patches it was trained
on, or when the saved files are missing, another library's or damaged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import faiss
import numpy as np

from ..analysis import Space
from .catalogue import Catalogue
from .vectors import (CENTRE_TOLERANCE, _save, _state, centre_drift, library_space, read_saved, same_analysis,
                      saved_space, spread, write_saved)

PATCH_BITS = 16  # label = track id << PATCH_BITS | patch number: 65,536 patches (54 hours) a track
PATCH_MASK = (1 << PATCH_BITS) - 1
EXACT_PATCHES = 100_000  # patches searched exactly; IVF-PQ above
IVF_NPROBE = 32  # inverted lists visited per query (bench/bench_passages.py latency)
IVF_TRAIN_PER_LIST = 40  # training patches per inverted list
IVF_REGROWTH = 4  # rebuilt (and trained again) when it holds this many times its training library
BUILD_CHUNK = 50_000  # patches projected and added at a time
SPREAD_SAMPLE = 20_000  # patches the spread around the centre is measured on

log = logging.getLogger(__name__)


def patch_space(catalogue: Catalogue) -> Space:
    """Where patches are compared: the track index's space (:func:`.vectors.library_space`,
    centred on the mean track vector, which is the mean patch of a track) when track
    vectors are patch means; uncentred under TF-IDF, whose track vectors have another scale."""
    space = library_space(catalogue)
    return space if (catalogue.get_meta("aggregate") or "mean") == "mean" else space.with_centre(None)


def labels_of(track_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Labels (sum(counts),) of ``counts[i]`` patches of each track ``track_ids[i]``."""
    track_ids, counts = np.asarray(track_ids, np.int64), np.asarray(counts, np.int64)
    numbers = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return (np.repeat(track_ids, counts) << PATCH_BITS) | np.minimum(numbers, PATCH_MASK)


def ivf_lists(count: int) -> int:
    """Inverted lists for an IVF of ``count`` patches: a power of two near 4 sqrt(count), 256 to
    4,096 (more would make training and adding slow beyond 10M patches)."""
    return int(2 ** np.clip(np.round(np.log2(4 * np.sqrt(max(count, 1)))), 8, 12))


def pq_bytes(dim: int) -> int:
    """Product-quantiser sub-vectors (one byte each): the largest divisor of ``dim`` up to dim / 8."""
    return max(m for m in range(1, max(dim // 8, 1) + 1) if dim % m == 0)


class PatchIndex:
    """Patch vectors of the library in faiss: ``kind`` "exact" or "ivfpq"; ``space``: how
    raw patches became the indexed vectors (queries go through it too)."""

    def __init__(self, index: faiss.Index, kind: str, space: Space, generation: int | None = None,
                 trained_on: int = 0):
        self.index = index
        self.kind = kind
        self.space = space
        self.generation = generation
        self.trained_on = trained_on  # patches in the library when an IVF was trained
        if kind == "ivfpq":
            faiss.extract_index_ivf(index).nprobe = IVF_NPROBE

    def __len__(self) -> int:
        return self.index.ntotal

    @classmethod
    def build(cls, tracks: Iterable[tuple[int, np.ndarray]], count: int, space: Space, *,
              exact_limit: int = EXACT_PATCHES, sample: np.ndarray | None = None) -> PatchIndex:
        """An index of the raw patches (P, d) of each (track id, patches) in ``tracks``,
        ``count`` patches in all; an IVF is trained on the raw patches ``sample`` (n, d)."""
        dim = space.dim
        if count > exact_limit:
            lists = ivf_lists(count)
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, pq_bytes(dim), 8, faiss.METRIC_INNER_PRODUCT)
            index.train(space.project(sample))
            built = cls(index, "ivfpq", space, trained_on=count)
        else:
            built = cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "exact", space)
        for ids, patches in _chunks(tracks):
            built.add(ids, patches)
        return built

    def add(self, track_ids: np.ndarray, patches: list[np.ndarray]) -> None:
        """Add the raw patches (P_i, d) of tracks ``track_ids`` (n,)."""
        if len(track_ids):
            labels = labels_of(track_ids, [len(p) for p in patches])
            self.index.add_with_ids(self.space.project(np.concatenate(patches)), labels)

    @property
    def labels(self) -> np.ndarray:
        """Every label in the index (n,)."""
        if self.kind == "exact":
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = faiss.extract_index_ivf(self.index).invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(lists.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def remove_tracks(self, track_ids: np.ndarray) -> None:
        """Delete every patch of these tracks."""
        labels = self.labels
        doomed = labels[np.isin(labels >> PATCH_BITS, track_ids)]
        if len(doomed):
            self.index.remove_ids(faiss.IDSelectorBatch(doomed))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query (n, d) unit vector of :attr:`space`, its ``k`` nearest patches:
        scores (n, k) (approximate for IVF-PQ), track ids (n, k) and patch numbers (n, k),
        -1 where fewer than ``k`` patches exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.space.dim)
        k = max(1, min(k, len(self)))
        scores, labels = self.index.search(queries, k)
        tracks = np.where(labels >= 0, labels >> PATCH_BITS, -1)
        return scores, tracks, np.where(labels >= 0, labels & PATCH_MASK, -1)

    # --- persistence ---------------------------------------------------------------
    @staticmethod
    def path(catalogue_path: Path) -> Path:
        return Path(f"{catalogue_path}.patches.faiss")

    def save(self, catalogue_path: Path, state: dict) -> None:
        centre = None if self.space.centre is None else self.space.centre.tolist()
        write_saved(self.index, self.path(catalogue_path),
                    {**state, "kind": self.kind, "count": len(self), "trained_on": self.trained_on,
                     "blocks": list(self.space.blocks), "weights": list(self.space.weights), "centre": centre})

    @classmethod
    def load(cls, catalogue_path: Path, library: str) -> tuple[PatchIndex, dict] | None:
        """The saved patch index of the library ``library`` and its state; None when
        missing, another library's or damaged (with a warning)."""
        path = cls.path(catalogue_path)
        try:
            saved = read_saved(path, library)
            if saved is None:
                return None
            index, state = saved
            loaded = cls(index, state["kind"], saved_space(state), state["generation"], state["trained_on"])
            if len(loaded) != state["count"]:
                raise ValueError(f"{len(loaded)} patches, {state['count']} in its state")
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: the saved patch index is damaged (%s: %s); rebuilding it from the library",
                        path, type(exc).__name__, exc)
            return None
        return loaded, state


def _chunks(tracks: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """(track ids, their patches) by about ``BUILD_CHUNK`` patches."""
    ids, patches, size = [], [], 0
    for track_id, p in tracks:
        ids.append(track_id)
        patches.append(p)
        size += len(p)
        if size >= BUILD_CHUNK:
            yield np.asarray(ids, np.int64), patches
            ids, patches, size = [], [], 0
    if ids:
        yield np.asarray(ids, np.int64), patches


def _patches_of(catalogue: Catalogue, track_ids: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    for track_id in track_ids:
        yield int(track_id), catalogue.patches(int(track_id))[0]


def patch_count(catalogue: Catalogue) -> int:
    """Patches stored in the catalogue (starts are 4-byte floats)."""
    return int(catalogue.db.execute("SELECT COALESCE(SUM(LENGTH(starts)), 0) FROM tracks").fetchone()[0]) // 4


def _sample(catalogue: Catalogue, count: int, wanted: int, seed: int = 0) -> np.ndarray:
    """Raw patches (about ``wanted``, n, d) of tracks taken at random, to train an IVF on."""
    ids = catalogue.ids()
    order = np.random.default_rng(seed).permutation(len(ids))
    take = order[: max(1, int(np.ceil(len(ids) * min(1.0, wanted / max(count, 1)))))]
    return np.concatenate([p for _, p in _patches_of(catalogue, ids[np.sort(take)])])


def open_patch_index(catalogue: Catalogue, *, exact_limit: int = EXACT_PATCHES) -> PatchIndex:
    """The catalogue's patch index, up to date with it (see the module's docstring)."""
    with catalogue.snapshot():
        wanted = _state(catalogue)
        space = patch_space(catalogue)
        count = patch_count(catalogue)
        loaded = PatchIndex.load(catalogue.files, wanted["library"]) if wanted["library"] else None
        if loaded is not None:
            index, saved = loaded
            same_model = same_analysis(saved, wanted, index.space, space) \
                and (index.space.centre is None) == (space.centre is None)
            if same_model and saved["generation"] == wanted["generation"]:
                return index
            kind = "ivfpq" if count > exact_limit else "exact"
            fits = kind == index.kind and (kind == "exact" or count <= IVF_REGROWTH * index.trained_on)
            uncentred = index.space.centre is None and space.centre is None
            drift = 0.0 if uncentred else centre_drift(index.space, space, saved.get("spread") or [])
            if same_model and fits and saved["generation"] < wanted["generation"] and drift <= CENTRE_TOLERANCE:
                _update(catalogue, index, saved["generation"])
                index.generation = wanted["generation"]
                _save(index, catalogue, {**wanted, "spread": saved["spread"]})
                return index
        sample = _sample(catalogue, count, max(ivf_lists(count) * IVF_TRAIN_PER_LIST, SPREAD_SAMPLE)) \
            if count else np.zeros((0, space.dim), np.float32)
        index = PatchIndex.build(catalogue.iter_patches(), count, space, exact_limit=exact_limit, sample=sample)
    index.generation = wanted["generation"]
    _save(index, catalogue, {**wanted, "spread": spread(sample[:SPREAD_SAMPLE], space)})
    return index


def _update(catalogue: Catalogue, index: PatchIndex, since: int) -> None:
    """Apply the catalogue's changes after generation ``since``: the patches of removed and
    rewritten tracks deleted, those of new and rewritten tracks added."""
    current = catalogue.ids()
    indexed = np.unique(index.labels >> PATCH_BITS)
    rewritten = catalogue.changed_since(since)
    index.remove_tracks(np.union1d(np.setdiff1d(indexed, current), rewritten))
    missing = np.union1d(np.setdiff1d(current, indexed), rewritten)
    for ids, patches in _chunks(_patches_of(catalogue, missing)):
        index.add(ids, patches)
