"""Sonic families: the library grouped into clusters of tracks that sound alike, each
named by its most typical tags and exportable as a playlist.

Clustering is k-means on the unit track vectors of the library's space (so, near
enough, by cosine). Without a number of families, it is chosen by measurement: the
silhouette (cosine) of each count from 2 to ``MAX_AUTO``, taking the *largest* count
whose silhouette is within ``SILHOUETTE_TOLERANCE`` of the best one (finer families
when the measure can barely tell them apart; 10 families for gtzan-dev's 10 genres, see
bench/bench_families.py). A large library is clustered on ``FIT_SAMPLE`` tracks (a fixed
random sample) and every track then joins its nearest centre. Every random choice is
seeded: the same library gives the same families, numbered by size.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path

import numpy as np

from .errors import ParameterError

FIT_SAMPLE = 5_000          # tracks the clustering is fitted on; the others join their nearest centre
CHOOSE_SAMPLE = 2_000       # tracks the automatic count is measured on
SCAN_DIMENSIONS = 64        # ... clustered for it in this many principal components (silhouettes: in all)
MAX_AUTO = 30               # most families the automatic choice considers
MIN_AUTO_SIZE = 5           # ... and never more than one family per this many tracks
SILHOUETTE_TOLERANCE = 0.01  # a larger count within this of the best silhouette is preferred
N_INIT = 2                  # k-means restarts per count (the best kept)
NAME_TAGS = 3               # tags in a family's name
MIN_LIFT = 0.25             # ... each at least this many library standard deviations above the library's mean
MIN_NAME_PROBABILITY = 0.1  # ... and this probable in the family (a tag it rarely has names nothing)
SYNONYM_CORRELATION = 0.75  # ... and not a tag whose probabilities follow an earlier one's this closely
EXAMPLES = 5                # most typical tracks shown per family
SEED = 0


@dataclasses.dataclass(frozen=True)
class Family:
    """One family: ``number`` (1 = the largest), ``name`` (its typical tags, or
    "family N" without tags), ``tags`` [(tag, lift)] its typical tags, most typical first
    (lift: how many of the library's standard deviations the family's mean probability
    is above the library's), ``ids`` (size,) its tracks, most typical (nearest the
    centre) first."""

    number: int
    name: str
    tags: list[tuple[str, float]]
    ids: np.ndarray

    @property
    def size(self) -> int:
        return len(self.ids)

    def as_dict(self) -> dict:
        """What the CLI's JSON and the API say of a family (its tracks aside)."""
        return {"number": self.number, "name": self.name, "size": self.size,
                "tags": [{"tag": tag, "lift": lift} for tag, lift in self.tags]}

    @property
    def file_name(self) -> str:
        """``NN-the-name.m3u8``: its number, then its name in safe characters."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.casefold()).strip("-") or "family"
        return f"{self.number:02d}-{slug}.m3u8"


@dataclasses.dataclass(frozen=True)
class Families:
    """The library's families, largest first; ``automatic``: whether their count was
    chosen by measurement, with ``silhouettes`` {count: silhouette} of the counts tried."""

    families: list[Family]
    automatic: bool
    silhouettes: dict[int, float]

    def labels(self, ids) -> np.ndarray:
        """The family index (0-based, into :attr:`families`) of each of ``ids`` (n,); -1 for unknown ids."""
        of = {int(i): f for f, family in enumerate(self.families) for i in family.ids}
        return np.fromiter((of.get(int(i), -1) for i in ids), np.int64, len(ids))


def cluster(vectors: np.ndarray, n: int | None = None, *, seed: int = SEED) -> tuple[np.ndarray, np.ndarray,
                                                                                    dict[int, float]]:
    """k-means of unit vectors (m, d): (labels (m,) in 0..k-1, centres (k, d), silhouettes
    {count: silhouette} of the counts tried, empty when ``n`` is given). Same input, same output.

    Fitted on ``FIT_SAMPLE`` of the vectors at most, the count chosen on ``CHOOSE_SAMPLE``
    of those; run on one thread (OpenMP teams on a busy machine made it 10 times slower).
    """
    from threadpoolctl import threadpool_limits

    vectors = np.asarray(vectors, np.float32)
    if len(vectors) == 0:
        return np.zeros(0, np.int64), np.zeros((0, vectors.shape[1]), np.float32), {}
    rng = np.random.default_rng(seed)
    with threadpool_limits(1):
        sample = _sample(vectors, FIT_SAMPLE, rng)
        silhouettes: dict[int, float] = {}
        if n is None:
            n, silhouettes = choose_count(_sample(sample, CHOOSE_SAMPLE, rng), seed=seed)
        centres = _kmeans(sample, min(n, len(sample)), seed)
        return nearest_centre(vectors, centres), centres, silhouettes


def _sample(vectors: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``size`` of the rows of ``vectors``, in their order (all of them when there are fewer)."""
    if len(vectors) <= size:
        return vectors
    return vectors[np.sort(rng.choice(len(vectors), size, replace=False))]


def choose_count(vectors: np.ndarray, *, seed: int = SEED) -> tuple[int, dict[int, float]]:
    """The number of families for unit vectors (m, d) and the silhouette (cosine, in all
    d dimensions) of each count tried (see the module's docstring), each count clustered in
    the vectors' first ``SCAN_DIMENSIONS`` principal components (10 times faster); 1 when
    there are too few tracks to tell."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    most = min(MAX_AUTO, len(vectors) // MIN_AUTO_SIZE)
    silhouettes = {}
    distances = np.clip(1.0 - vectors @ vectors.T, 0.0, None)  # cosine, once for every count
    np.fill_diagonal(distances, 0.0)
    dims = min(SCAN_DIMENSIONS, *vectors.shape)
    reduced = PCA(dims, random_state=seed).fit_transform(vectors).astype(np.float32) if dims >= 2 else vectors
    for k in range(2, most + 1):
        labels = nearest_centre(reduced, _kmeans(reduced, k, seed))
        if len(set(labels.tolist())) > 1:
            silhouettes[k] = round(float(silhouette_score(distances, labels, metric="precomputed")), 4)
    if not silhouettes:
        return 1, {}
    best = max(silhouettes.values())
    return max(k for k, s in silhouettes.items() if s >= best - SILHOUETTE_TOLERANCE), silhouettes


def _kmeans(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Centres (k, d) of k-means on ``vectors`` (m, d), the best of ``N_INIT`` seeded restarts."""
    from sklearn.cluster import KMeans

    if k <= 1:
        return vectors.mean(axis=0, keepdims=True)
    return KMeans(k, n_init=N_INIT, random_state=seed).fit(vectors).cluster_centers_.astype(np.float32)


def nearest_centre(vectors: np.ndarray, centres: np.ndarray, block: int = 8192) -> np.ndarray:
    """Index (m,) of the nearest of ``centres`` (k, d), euclidean, for each of ``vectors`` (m, d)."""
    squares = (centres.astype(np.float64) ** 2).sum(axis=1)
    out = np.empty(len(vectors), np.int64)
    for start in range(0, len(vectors), block):
        out[start:start + block] = np.argmin(squares - 2.0 * (vectors[start:start + block] @ centres.T), axis=1)
    return out


def typical_tags(tags: np.ndarray, labels: np.ndarray, names: list[str], k: int,
                 top: int = NAME_TAGS) -> list[list[tuple[str, float]]]:
    """Per family 0..k-1, its ``top`` most typical tags [(tag, lift)]: the tags whose mean
    probability in the family (tags (m, n_tags), labels (m,)) is the most library standard
    deviations above the library's mean, at least ``MIN_LIFT`` of them (a tag as probable
    everywhere names nothing), of a mean probability in the family of at least
    ``MIN_NAME_PROBABILITY``, and none a near-synonym of one before it (their
    probabilities over the library's tracks correlate at ``SYNONYM_CORRELATION`` or more:
    "female vocal" after "female vocalist")."""
    if not len(names) or not len(tags):
        return [[] for _ in range(k)]
    tags = tags.astype(np.float64)
    mean, spread = tags.mean(axis=0), tags.std(axis=0)
    varies = spread > 1e-6
    correlation = np.zeros((len(names), len(names)))
    if len(tags) > 1 and varies.any():
        correlation[np.ix_(varies, varies)] = np.corrcoef(tags[:, varies], rowvar=False)
    out = []
    for family in range(k):
        probability = tags[labels == family].mean(axis=0)
        lift = np.zeros(len(names))
        lift[varies] = (probability[varies] - mean[varies]) / spread[varies]
        chosen: list[int] = []
        for i in np.argsort(-lift, kind="stable"):
            if len(chosen) == top or lift[i] < MIN_LIFT:
                break
            if probability[i] >= MIN_NAME_PROBABILITY and not any(correlation[i, j] >= SYNONYM_CORRELATION
                                                                 for j in chosen):
                chosen.append(int(i))
        out.append([(names[i], round(float(lift[i]), 3)) for i in chosen])
    return out


def group(ids: np.ndarray, vectors: np.ndarray, tags: np.ndarray, names: list[str],
          n: int | None = None) -> Families:
    """Families of the tracks ``ids`` (m,) with unit vectors (m, d) and tag probabilities
    (m, n_tags) named by ``names``; ``n`` families, else an automatic count."""
    order = np.argsort(ids, kind="stable")  # the same tracks in any order: the same families
    ids, vectors, tags = ids[order], vectors[order], tags[order]
    labels, centres, silhouettes = cluster(vectors, n)
    # numbered by size, largest first; ties by their first track
    k = len(centres)
    sizes = np.bincount(labels, minlength=k)
    first = [int(ids[labels == c].min()) if sizes[c] else np.iinfo(np.int64).max for c in range(k)]
    ranked = sorted((c for c in range(k) if sizes[c]), key=lambda c: (-sizes[c], first[c]))
    renumber = np.full(k, -1)
    renumber[ranked] = np.arange(len(ranked))
    labels = renumber[labels]
    typical = typical_tags(tags, labels, names, len(ranked))
    families, seen = [], {}
    for f, c in enumerate(ranked):
        members = np.flatnonzero(labels == f)
        closeness = vectors[members] @ (centres[c] / (np.linalg.norm(centres[c]) or 1.0))
        members = members[np.lexsort((ids[members], -closeness))]
        name = ", ".join(tag for tag, _ in typical[f]) or f"family {f + 1}"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # two families with the same typical tags: tell them apart
            name = f"{name} ({seen[name]})"
        families.append(Family(f + 1, name, typical[f], ids[members]))
    return Families(families, n is None, silhouettes)


def library_families(library, n: int | None = None) -> Families:
    """The families of a library's tracks (see :func:`group`), computed once per catalogue
    generation and count."""
    if n is not None and n < 1:
        raise ParameterError(f"the number of families must be at least 1, got {n}")
    count = library.catalogue.count()
    if n is not None and n > count:
        raise ParameterError(f"the library has {count} tracks: ask for {count} families or fewer, not {n}")
    return _families(library, library.catalogue.generation, n)


@functools.lru_cache(maxsize=4)
def _families(library, generation: int, n: int | None) -> Families:
    ids, vectors = library.catalogue.arrays("vector")
    tag_ids, tags = library.catalogue.arrays("tags")
    if not np.array_equal(ids, tag_ids):  # both are read in id order
        raise RuntimeError("the catalogue's vectors and tags are not of the same tracks")
    unit = library.space.project(vectors) if len(ids) else vectors
    return group(ids, unit, tags, library.catalogue.tag_names, n)


WRITTEN_LIST = ".soundalike-families"  # in a playlists folder: the files the last run wrote there


def write_playlists(library, families: Families, out: str | os.PathLike, *, relative: bool = False) -> list[Path]:
    """One extended M3U8 per family in the folder ``out`` (made if need be), its tracks
    most typical first; the files written, in family order. The playlists an earlier
    grouping wrote there (listed in ``WRITTEN_LIST``) and this one does not are removed,
    so that a player syncing the folder gets one grouping; no other file is touched."""
    from .playlist_files import write_m3u

    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ParameterError(f"{folder} is a file; give a folder for the families' playlists")
    folder.mkdir(parents=True, exist_ok=True)
    listed = folder / WRITTEN_LIST
    before = set(listed.read_text(encoding="utf-8", errors="replace").splitlines()) if listed.is_file() else set()
    written = []
    for family in families.families:
        path = folder / family.file_name
        write_m3u(entries(library.catalogue.tracks(family.ids.tolist())), path, relative=relative)
        written.append(path)
    for name in before - {p.name for p in written}:
        if Path(name).name == name and name.endswith(".m3u8") and not (folder / name).is_dir():
            (folder / name).unlink(missing_ok=True)  # only playlists of this folder
    listed.write_text("".join(f"{p.name}\n" for p in written), encoding="utf-8")
    return written


def entries(tracks) -> list:
    """Library tracks as playlist entries, in their order."""
    from .playlist_files import Entry

    return [Entry(t.path, t.artist, t.title, t.album, t.duration) for t in tracks]
