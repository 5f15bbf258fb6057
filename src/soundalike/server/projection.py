"""The library map (``GET /api/map``): every track as a point of a 2-D projection of its vector.

UMAP keeps sounds that belong together in one place far better than PCA (on GTZAN, 67 %
of a track's 10 nearest points share its genre against 36 %, see docs/benchmarks.md), but
takes seconds past a few thousand tracks. So a larger library is mapped by UMAP on
``UMAP_MAX_POINTS`` landmark tracks (a fixed random sample), and every other track is
placed among its nearest landmarks. PCA only below ``UMAP_MIN_POINTS``. ``umap-learn``
(and its numba compilation, cached on disk) is imported only when such a map is drawn.
"""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np

MAP_MAX_POINTS = 200_000   # tracks drawn at most
UMAP_MIN_POINTS = 20       # fewer tracks: PCA (UMAP needs neighbours to speak of)
UMAP_MAX_POINTS = 3_000    # more tracks: UMAP on this many landmarks; 1.2 s warm here, 7 s at 10,000 (docs/benchmarks.md)
LANDMARK_NEIGHBOURS = 5    # a track beyond the landmarks sits at the mean of this many nearest ones
UMAP_EPOCHS = 200
UMAP_NEIGHBOURS = 15       # umap-learn's default


def layout(vectors: np.ndarray, method: str, *, seed: int = 0, landmarks: int = UMAP_MAX_POINTS) -> np.ndarray:
    """Map coordinates: unit vectors (n, d) -> (n, 2) float64, by 'pca' or 'umap' (same input,
    same output); beyond ``landmarks`` points, UMAP maps that many and places the rest
    (:func:`_place`). Fewer than 2 points sit at the origin."""
    vectors = np.asarray(vectors, np.float32)
    xy = np.zeros((len(vectors), 2))
    if len(vectors) < 2:
        return xy
    if method == "umap" and len(vectors) > landmarks:
        chosen = np.sort(np.random.default_rng(seed).choice(len(vectors), landmarks, replace=False))
        return _place(vectors, chosen, layout(vectors[chosen], "umap", seed=seed))
    if method == "pca":
        from sklearn.decomposition import PCA

        components = min(2, vectors.shape[1])
        xy[:, :components] = PCA(n_components=components, random_state=seed).fit_transform(vectors)
    elif method == "umap":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by setting random_state", numba chatter
            knn = _nearest(vectors, UMAP_NEIGHBOURS)
            xy[:] = _umap(lambda umap: umap.UMAP(n_components=2, n_neighbors=UMAP_NEIGHBOURS, n_epochs=UMAP_EPOCHS,
                                                 precomputed_knn=knn, random_state=seed).fit_transform(vectors))
    else:
        raise ValueError(f"map method must be 'pca' or 'umap', got {method!r}")
    return xy


def _nearest(vectors: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray, None]:
    """Exact k nearest neighbours of each of (n, d) vectors, itself first: indices (n, k),
    euclidean distances (n, k) float32, no search index (as umap-learn's precomputed_knn).
    umap-learn's own exact search below 4,096 points calls a Python function per pair."""
    k = min(k, len(vectors))
    squares = (vectors.astype(np.float64) ** 2).sum(axis=1)
    indices = np.empty((len(vectors), k), np.int64)
    distances = np.empty((len(vectors), k), np.float32)
    for start in range(0, len(vectors), block):
        rows = np.arange(start, min(start + block, len(vectors)))
        d2 = squares[rows, None] + squares[None, :] - 2.0 * (vectors[rows] @ vectors.T)
        d2[np.arange(len(rows)), rows] = -1.0  # itself first, even beside an identical track
        nearest = np.argpartition(d2, k - 1, axis=1)[:, :k]
        nearest = np.take_along_axis(nearest, np.argsort(np.take_along_axis(d2, nearest, axis=1), axis=1), axis=1)
        indices[rows] = nearest
        distances[rows] = np.sqrt(np.clip(np.take_along_axis(d2, nearest, axis=1), 0.0, None))
    return indices, distances, None


def _place(vectors: np.ndarray, landmarks: np.ndarray, landmark_xy: np.ndarray, block: int = 4096) -> np.ndarray:
    """Coordinates (n, 2) of unit vectors (n, d): the landmarks (indices (m,)) where
    ``landmark_xy`` (m, 2) puts them, every other point at the similarity-weighted mean of
    its ``LANDMARK_NEIGHBOURS`` most similar landmarks (cosine)."""
    xy = np.empty((len(vectors), 2))
    k = min(LANDMARK_NEIGHBOURS, len(landmarks))
    for start in range(0, len(vectors), block):
        similarity = vectors[start:start + block] @ vectors[landmarks].T  # (b, m)
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(similarity, nearest, axis=1), 1e-3, None)
        xy[start:start + block] = (weights[..., None] * landmark_xy[nearest]).sum(1) / weights.sum(1, keepdims=True)
    xy[landmarks] = landmark_xy
    return xy


_umap_compiled = False


def _umap(fit):
    """``fit(umap)``, the first time in this process under the lock that all soundalike
    processes compile numba code under (see ``descriptors._librosa``), with numba's on-disk
    cache turned on for umap-learn's kernels: most are compiled anew by every process
    otherwise, 11 s before the first map (docs/benchmarks.md)."""
    global _umap_compiled
    if _umap_compiled:
        import umap

        return fit(umap)
    from filelock import FileLock
    from numba.core.registry import CPUDispatcher

    from soundalike.descriptors import NUMBA_LOCK

    with FileLock(NUMBA_LOCK):
        import umap

        for name, module in list(sys.modules.items()):
            if name.split(".")[0] in ("umap", "pynndescent"):
                for kernel in vars(module).values():
                    if isinstance(kernel, CPUDispatcher) and type(kernel._cache).__name__ == "NullCache":
                        try:
                            kernel.enable_caching()
                        except RuntimeError:  # nowhere to write a cache: compiled in memory, as before
                            pass
        result = fit(umap)
        _umap_compiled = True
        return result


def method_for(count: int) -> str:
    """The projection drawn for a library of ``count`` tracks."""
    return "umap" if count >= UMAP_MIN_POINTS else "pca"


@functools.lru_cache(maxsize=2)
def library_map(library, generation: int) -> dict:
    """The map's points (at most MAP_MAX_POINTS tracks), recomputed only when the library
    changed (its ``generation``): ids, x, y, each track's strongest tag (an index into
    tags), tag names, labels, and the method ('pca' or 'umap')."""
    ids, vectors = library.catalogue.arrays("vector")
    ids = ids[:MAP_MAX_POINTS]
    method = method_for(len(ids))
    xy = layout(library.space.project(vectors[:MAP_MAX_POINTS]), method) if len(ids) else np.zeros((0, 2))
    tracks = {t.id: t for t in library.catalogue.tracks(ids)}
    names = library.catalogue.tag_names
    _, tags = library.catalogue.arrays("tags", ids)
    top = tags.argmax(axis=1) if tags.shape[1] else np.zeros(len(ids), int)
    return {"ids": ids.tolist(), "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
            "tag": top.tolist(), "tags": names or ["(no tags)"],
            "labels": [tracks[int(i)].label for i in ids], "method": method}
