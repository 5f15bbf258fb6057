"""Library benchmarks: indexing the soundtracks corpus, and query latency at scale.

    python bench/bench_library.py index CORPUS_DIR [--excerpts 3,5,10] [--workers 1,2]
    python bench/bench_library.py query [--sizes 10000,100000,1000000] [--queries 500] [--like LIBRARY] [--ef 128,512]
    python bench/bench_library.py update [--tracks 500000] [--removed 5000] [--rewritten 1000]
    python bench/bench_library.py centre [--tracks 200000] [--added 4000] [--drifts 0.005,0.01,0.02,0.05,0.1]
    python bench/bench_library.py duplicates CORPUS_DIR LIBRARY [--n 12]

``index`` builds one library per setting with ``soundalike index`` (fresh each time),
reports tracks per second and real-time factor, and compares each excerpt setting's
top-10 neighbours with full analysis (mean overlap; a track's own file never counts).
CORPUS_DIR is what ``../shared/data/fetch-soundtracks`` writes.

``query`` times top-10 queries on one thread against synthetic clustered vectors
(200-d, or shaped like a real library's with ``--like``) through soundalike's
VectorIndex (exact below 100k tracks, HNSW above), centred on their mean as a library
centres its vectors, with recall@10 against exact search, memory and disk per track;
with ``--ef``, HNSW sizes are queried at each efSearch (candidates kept while searching).

``update`` removes and re-analyses tracks of a large HNSW library and times bringing
the index up to date (dead labels) against rebuilding it, then compares query
latency and recall@10 of the two indexes on the same queries.

``centre`` measures what an HNSW index updated in place costs when the library's mean
(the centre of its space) has moved: tracks far from the rest are added until the mean
moved by each drift (in units of the tracks' spread around it); the index keeps its
old centre, and its top-10 are compared with exact search in the space centred on the
new mean, against an index rebuilt around the new mean.

``duplicates`` compares a re-encoded copy of a track with its original in the
library's space, against the nearest distinct track.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_index(corpus: Path, library: Path, workers: int, excerpt: int) -> dict:
    # one worker = one core (one torch thread); N workers = N processes of cores/N threads
    cmd = [str(Path(sys.executable).parent / "soundalike"), "index", str(corpus), "--library", str(library),
           "--workers", str(workers), "--excerpt", str(excerpt), *(["--threads", "1"] if workers == 1 else [])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: some files failed, reported below
        raise RuntimeError(proc.stderr)
    from soundalike.library import Library

    with Library(library) as lib:
        n = lib.catalogue.count()
        hours = lib.stats()["hours"]
        failed = len(lib.catalogue.failures())
    return {"workers": workers, "excerpt": excerpt, "tracks": n, "failed": failed, "seconds": round(seconds, 1),
            "tracks_per_s": round(n / seconds, 2), "rtf": round(hours * 3600 / seconds, 1),
            "sqlite_kib_per_track": round(library.stat().st_size / 1024 / n, 1)}


def neighbours(library: Path, k: int = 10) -> dict[str, list[str]]:
    from soundalike.library import Library

    with Library(library) as lib:
        ids = lib.catalogue.ids()
        unit = lib.vectors(ids)
        paths = {t.id: t.path for t in lib.catalogue.tracks()}
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)[:, :k]
    return {paths[int(i)]: [paths[int(ids[j])] for j in row] for i, row in zip(ids, order)}


def cmd_index(args) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            tmp = str(args.keep)
            args.keep.mkdir(parents=True, exist_ok=True)
        libraries = {}
        for workers in [int(w) for w in args.workers.split(",")]:
            for excerpt in [0, *[int(e) for e in args.excerpts.split(",")]]:
                library = Path(tmp) / f"w{workers}-e{excerpt}.sqlite"
                rows.append(run_index(args.corpus, library, workers, excerpt))
                libraries[excerpt] = library
                print(json.dumps(rows[-1]), file=sys.stderr)
        full = neighbours(libraries[0])
        for excerpt, library in libraries.items():
            if excerpt:
                other = neighbours(library)
                overlap = np.mean([len(set(full[p]) & set(other[p])) / 10 for p in full])
                for row in rows:
                    if row["excerpt"] == excerpt:
                        row["top10_overlap_with_full"] = round(float(overlap), 3)
    print("| workers | excerpt | tracks | seconds | tracks/s | RTF | top-10 overlap with full | SQLite KiB/track |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['excerpt'] or 'full'} | {r['tracks']} | {r['seconds']} | {r['tracks_per_s']} "
              f"| {r['rtf']}x | {r.get('top10_overlap_with_full', '-')} | {r['sqlite_kib_per_track']} |")


def cmd_duplicates(args) -> None:
    """Cosine between a track and a re-encoded copy of it, against the nearest distinct track."""
    sys.path.insert(0, str(ROOT / "tests"))
    import csv

    import synth

    from soundalike import analysis, audio
    from soundalike.library import Library
    from soundalike.models import load_model

    with Library(args.library) as lib:
        model = load_model(lib.catalogue.model)
    rows = list(csv.DictReader(open(args.corpus / "manifest.csv")))
    picks = [rows[i] for i in np.linspace(0, len(rows) - 1, args.n).astype(int)]
    copy_cos, distinct_cos = [], []
    with Library(args.library) as lib:
        ids = lib.catalogue.ids()
        unit = lib.vectors(ids)  # the library's space, as similar, radio and path compare
        excerpts = dict(lib.catalogue.db.execute("SELECT id, excerpt FROM tracks"))
        with tempfile.TemporaryDirectory() as tmp:
            for row in picks:
                path = args.corpus / row["path"]
                track = lib.catalogue.track_by_path(str(path.resolve()))
                y = audio.load(path, sr=44_100)
                copy = synth.write(Path(tmp) / "copy.mp3", np.tile(y, (2, 1)) * 0.98, 44_100)
                # analysed as the library analysed the original (the same number of spread patches)
                result = analysis.analyse_track(copy, model, excerpt=excerpts[track.id])
                v = lib.space.project(analysis.aggregate(result.embeddings))
                own = unit[list(ids).index(track.id)]
                copy_cos.append(float(v @ own))
                sims = unit @ own
                sims[list(ids).index(track.id)] = -1
                distinct_cos.append(float(sims.max()))
                print(json.dumps({"path": row["path"], "copy": copy_cos[-1], "nearest_other": distinct_cos[-1]}),
                      file=sys.stderr)
    print(f"re-encoded copies (MP3, mono, -0.2 dB): cosine min {min(copy_cos):.5f}, median {np.median(copy_cos):.5f}")
    print(f"nearest distinct track: cosine max {max(distinct_cos):.5f}, median {np.median(distinct_cos):.5f}")


def real_patches(library: str) -> np.ndarray:
    """Every patch embedding of ``library`` (n, d): the shape ``clustered`` imitates."""
    from soundalike.library import Library

    with Library(library) as lib:
        return np.concatenate([p for _, p in lib.catalogue.iter_patches()])


def clustered(n: int, like: np.ndarray | None = None, d: int = 200, clusters: int = 1000,
              seed: int = 0, draw_seed: int | None = None) -> np.ndarray:
    """Vectors around ``clusters`` centres (albums, genres), the centres drawn from
    ``seed``; with ``draw_seed``, new vectors around the same centres (queries like the
    library's tracks), else the vectors ``seed`` gives.

    With ``like`` (real embeddings, (m, d)), both the centres and the spread around
    them follow the real data's covariance (its PCA basis and variances), split 0.8^2
    between centres and 0.6^2 within clusters: real MusiCNN vectors put half their
    variance in 5 directions, which isotropic noise would not imitate. Without it,
    isotropic Gaussian clusters.
    """
    rng = np.random.default_rng(seed)
    if like is None:
        mean, basis = np.zeros(d), np.eye(d)
    else:
        mean = like.mean(axis=0)
        _, s, vt = np.linalg.svd(like - mean, full_matrices=False)
        basis = vt.T * (s / np.sqrt(len(like)))  # (d, r): unit normals to the data's shape
    r = basis.shape[1]
    centres = mean + 0.8 * rng.standard_normal((clusters, r)) @ basis.T
    if draw_seed is not None:
        rng = np.random.default_rng(draw_seed)
    out = np.empty((n, basis.shape[0]), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        out[start : start + m] = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, r)) @ basis.T
    return out


def cmd_query(args) -> None:
    import faiss

    from soundalike.library import vectors as vi

    faiss.omp_set_num_threads(1)
    like = real_patches(args.like) if args.like else None
    rows = []
    default_ef = vi.HNSW_EF_SEARCH
    for n in [int(s) for s in args.sizes.split(",")]:
        vectors = clustered(n, like)
        queries = clustered(args.queries, like, seed=1)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building may use every core
        space = centred(vectors)
        index = vi.VectorIndex.build(np.arange(n), vectors, space)
        faiss.omp_set_num_threads(1)
        build = time.perf_counter() - t0
        growth = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024)
        exact = faiss.IndexFlatIP(vectors.shape[1])
        exact.add(space.project(vectors))
        truth = exact.search(space.project(queries), 10)[1]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.faiss"
            faiss.write_index(index.index, str(path))
            disk = path.stat().st_size
        efs = [int(e) for e in args.ef.split(",")] if args.ef and index.kind == "hnsw" else [default_ef]
        for ef in efs:
            vi.HNSW_EF_SEARCH = ef  # what VectorIndex.search reads
            rows.append({"tracks": n, "kind": index.kind, "ef_search": ef if index.kind == "hnsw" else None,
                         "build_s": round(build, 1), **timed_queries(index, queries, truth),
                         "index_bytes_per_track": round(disk / n), "peak_rss_growth_mib": growth})
            print(json.dumps(rows[-1]), file=sys.stderr)
        vi.HNSW_EF_SEARCH = default_ef
        del index, exact, vectors
    print("| tracks | index | efSearch | build s | p50 ms | p99 ms | recall@10 | index bytes/track |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tracks']:,} | {r['kind']} | {r['ef_search'] or '–'} | {r['build_s']} | {r['p50_ms']} "
              f"| {r['p99_ms']} | {r['recall_at_10']} | {r['index_bytes_per_track']} |")


def centred(vectors: np.ndarray):
    """The space a library of these vectors compares them in: centred on their mean."""
    from soundalike.analysis import Space, library_centre

    return Space((vectors.shape[1],), (1.0,), library_centre(vectors.astype(np.float64).sum(axis=0), len(vectors)))


class _Catalogue:
    """The three catalogue queries the index update makes, over arrays in memory."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, changed: np.ndarray):
        self._ids, self._vectors, self._changed = ids, vectors, changed

    def ids(self) -> np.ndarray:
        return self._ids

    def changed_since(self, generation: int) -> np.ndarray:
        return self._changed

    def arrays(self, column: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.sort(ids)
        return ids, self._vectors[np.searchsorted(self._ids, ids)]


def timed_queries(index, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Top-10 latency and recall of raw ``queries`` (n, d), projected into the index's space first."""
    latencies, recalls = [], []
    for q, t in zip(index.space.project(queries), truth):
        start = time.perf_counter()
        found = index.search(q, 10)[1]
        latencies.append(time.perf_counter() - start)
        recalls.append(len(set(found.tolist()) & set(t.tolist())) / 10)
    return {"p50_ms": round(1000 * float(np.percentile(latencies, 50)), 3),
            "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 3),
            "recall_at_10": round(float(np.mean(recalls)), 4)}


def cmd_update(args) -> None:
    import faiss

    from soundalike.library import vectors as vi

    rng = np.random.default_rng(2)
    n = args.tracks
    data = clustered(n, None)
    ids = np.arange(n, dtype=np.int64)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    space = centred(data)  # kept through the update (the few changes barely move the mean)
    index = vi.VectorIndex.build(ids, data, space, exact_limit=min(n - 1, vi.EXACT_LIMIT))
    removed = rng.choice(n, args.removed, replace=False)
    kept = np.setdiff1d(ids, removed)
    rewritten = rng.choice(kept, args.rewritten, replace=False)
    def near_others(count: int) -> np.ndarray:  # in the data's clusters: another track's vector, moved a little
        return data[rng.choice(kept, count)] + 0.3 * rng.standard_normal((count, data.shape[1])).astype(np.float32)

    data[rewritten] = near_others(args.rewritten)
    catalogue = _Catalogue(kept, data[kept], rewritten)
    t0 = time.perf_counter()
    updated = vi._update(catalogue, index, 0, min(n - 1, vi.EXACT_LIMIT))
    update_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rebuilt = vi.VectorIndex.build(kept, data[kept], space, exact_limit=min(n - 1, vi.EXACT_LIMIT))
    rebuild_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    queries = np.concatenate([data[rewritten[: args.queries // 2]], near_others(args.queries - args.queries // 2)])
    exact = faiss.IndexFlatIP(data.shape[1])
    exact.add(space.project(data[kept]))
    truth = kept[exact.search(space.project(queries), 10)[1]]
    rows = [{"index": "updated (dead labels)", "seconds": round(update_s, 2), **timed_queries(updated, queries, truth)},
            {"index": "rebuilt", "seconds": round(rebuild_s, 2), **timed_queries(rebuilt, queries, truth)}]
    print(f"{n:,} tracks, {args.removed:,} removed, {args.rewritten:,} re-analysed; half the queries are "
          f"re-analysed tracks' new vectors")
    print("| index | seconds to bring up to date | p50 ms | p99 ms | recall@10 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['index']} | {r['seconds']} | {r['p50_ms']} | {r['p99_ms']} | {r['recall_at_10']} |")


def cmd_centre(args) -> None:
    import faiss

    from soundalike.analysis import Space
    from soundalike.library import vectors as vi

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    n, m = args.tracks, args.added
    like = None
    if args.like:
        from soundalike.library import Library

        with Library(args.like) as lib:
            like = np.concatenate([p for _, p in lib.catalogue.iter_patches()])
    data = clustered(n, like)
    space = Space((data.shape[1],), (1.0,), data.astype(np.float64).mean(axis=0))
    spread = vi.spread(data, space)[0]
    index = vi.VectorIndex.build(np.arange(n), data, space, exact_limit=n - 1)
    rng = np.random.default_rng(3)
    direction = rng.standard_normal(data.shape[1])
    direction /= np.linalg.norm(direction)
    queries = clustered(args.queries, like, seed=1)
    shape = f"shaped like {args.like.name}'s patches" if args.like else "isotropic clusters"
    print(f"{n:,} tracks ({shape}, {data.shape[1]}-d), {m:,} added far to one side; recall@10 against exact "
          "search centred on the new mean")
    print("| drift (spread units) | updated in place, old centre | rebuilt around the new mean |")
    print("|---|---|---|")
    for drift in [float(d) for d in args.drifts.split(",")]:
        # m tracks whose mean lies at the distance that moves the library's mean by `drift` spreads
        offset = drift * spread * (n + m) / m
        added = clustered(m, like, seed=4)
        added = (added - added.mean(axis=0) + space.centre + offset * direction).astype(np.float32)
        ids, everything = np.arange(n + m), np.concatenate([data, added])
        now = space.with_centre(everything.astype(np.float64).mean(axis=0))
        assert abs(vi.centre_drift(space, now, [spread]) - drift) < 1e-3 * max(drift, 1e-3)
        exact = faiss.IndexFlatIP(data.shape[1])
        exact.add(now.project(everything))
        truth = exact.search(now.project(queries), 10)[1]
        updated = vi.VectorIndex(faiss.clone_index(index.index), "hnsw", space)
        updated.index.add_with_ids(space.project(added), ids[n:])
        rebuilt = vi.VectorIndex.build(ids, everything, now, exact_limit=n - 1)
        faiss.omp_set_num_threads(1)
        row = [timed_queries(i, queries, truth)["recall_at_10"] for i in (updated, rebuilt)]
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        print(f"| {drift:g} | {row[0]:.4f} | {row[1]:.4f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("index")
    p.add_argument("corpus", type=Path)
    p.add_argument("--excerpts", default="3,5,10")
    p.add_argument("--workers", default=f"1,{os.cpu_count()}")
    p.add_argument("--keep", type=Path, help="keep the libraries in this folder")
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("duplicates")
    p.add_argument("corpus", type=Path)
    p.add_argument("library", type=Path, help="a library of the corpus")
    p.add_argument("--n", type=int, default=12)
    p.set_defaults(func=cmd_duplicates)
    p = sub.add_parser("query")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--like", type=Path, help="a real library whose patch embeddings shape the synthetic vectors")
    p.add_argument("--ef", help="HNSW efSearch values to compare, e.g. 128,256,512,1024 (default: the library's)")
    p.set_defaults(func=cmd_query)
    p = sub.add_parser("update")
    p.add_argument("--tracks", type=int, default=500_000)
    p.add_argument("--removed", type=int, default=5_000)
    p.add_argument("--rewritten", type=int, default=1_000)
    p.add_argument("--queries", type=int, default=500)
    p.set_defaults(func=cmd_update)
    p = sub.add_parser("centre")
    p.add_argument("--tracks", type=int, default=200_000)
    p.add_argument("--added", type=int, default=4_000)
    p.add_argument("--drifts", default="0.005,0.01,0.02,0.05,0.1")
    p.add_argument("--like", type=Path, help="a real library whose patch embeddings shape the synthetic vectors")
    p.add_argument("--queries", type=int, default=500)
    p.set_defaults(func=cmd_centre)
    args = parser.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
