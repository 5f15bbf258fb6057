"""Search by passage: planted passages found on a real library, and latency at scale.

    python bench/bench_passages.py planted LIBRARY [--seconds 10] [--snr 20] [--n 0] [--uncentred]
    python bench/bench_passages.py latency --like LIBRARY [--sizes 1000000,10000000] [--queries 50]

``planted`` copies LIBRARY (a ``.sqlite`` with its index files) to a temporary folder,
never touching the original, and for each track cuts a passage of ``--seconds`` at a
random place (the whole track when shorter), adds white noise at ``--snr`` dB, encodes
it to MP3 at 128 kbps (PyAV, libmp3lame) and searches the library with the file, as
``soundalike similar CLIP.mp3`` would (an outside file: its own track may be found). A
hit: the first result is the track it was cut from and its time is within one patch
(``--tolerance``, 3 s) of where it was cut. A time further off is an exact repeat when
the track's own audio there is as like its audio where the passage was cut as the
degraded passage is (the :func:`soundalike.passages.alignment` correlation of their
spectrograms, best within ``REPEAT_SLACK`` s, at least ``--repeat``; the median for the
degraded passages is printed as ``median_query_correlation``): right by ear, counted in
``hit_or_repeat_at_1``. ``--n``: that many tracks (0: all); ``--uncentred``: patches
compared without centring on the library's mean.

``latency`` fits a Gaussian (mean and covariance) to LIBRARY's stored patches, draws
synthetic patches from it in chunks, builds the patch index soundalike would ship at
each size (IVF-PQ beyond 100,000 patches; on every core) and times the index search of
a passage of eight patches (a 10 s passage analysed at 1 s hops, 64 neighbours each) on
one thread;
recall: how often a stored patch plus noise (cosine ~0.9) finds itself among its 64
neighbours. Each size runs in a subprocess of its own, reporting its peak memory.
``--niter`` trains with fewer k-means iterations than faiss's 25 (a quicker build of the
same structure, for a loaded machine; recall may be a little lower).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPEAT_SLACK = 0.5  # seconds either side of a found time searched for the repeat's best alignment


def encode_mp3(signal: np.ndarray, rate: int, path: Path) -> None:
    """Mono float ``signal`` to an MP3 at 128 kbps."""
    import av

    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.bit_rate = 128_000
        stream.layout = "mono"
        stream.format = "fltp"
        size = stream.codec_context.frame_size or 1152
        for start in range(0, len(signal), size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(signal[None, start:start + size], np.float32),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def copy_library(library: Path, folder: Path) -> Path:
    for path in library.parent.glob(library.name + "*"):
        if path.suffix not in (".tmp",) and path.is_file():
            shutil.copy2(path, folder / path.name)
    return folder / library.name


def planted(args) -> None:
    from soundalike import audio, passages
    from soundalike.library import Library
    from soundalike.library import patches as patch_module

    if args.uncentred:
        centred = patch_module.patch_space
        patch_module.patch_space = lambda catalogue: centred(catalogue).with_centre(None)
    rng = np.random.default_rng(0)
    rate = passages.ALIGN_RATE  # the clips are made, and aligned, at this rate
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        library = Library(copy_library(Path(args.library), folder))  # a copy: upgraded if old
        built = time.perf_counter()
        index = library.patch_index
        built = time.perf_counter() - built
        tracks = library.catalogue.tracks()
        if args.n:
            tracks = [tracks[i] for i in np.sort(rng.choice(len(tracks), min(args.n, len(tracks)), replace=False))]
        records = []
        for track in tracks:
            length = min(args.seconds, track.duration)
            start = float(rng.uniform(0, track.duration - length)) if track.duration > length else 0.0
            y = audio.load(track.path, sr=rate, start=start, duration=length)
            clean = passages.align_frames(y)
            noise = rng.standard_normal(len(y)).astype(np.float32)
            noise *= np.sqrt(np.mean(y ** 2) / 10 ** (args.snr / 10) / max(np.mean(noise ** 2), 1e-12))
            clip = folder / "clip.mp3"
            encode_mp3(np.clip(y + noise, -1, 1), rate, clip)
            t = time.perf_counter()
            query = passages.passage(library, str(clip))
            analysed = time.perf_counter()
            found = passages.similar_passages(library, query, k=5)
            searched = time.perf_counter()
            degraded = passages.align_frames(audio.load(clip, sr=rate))
            record = {"track": track.id, "cut_at": round(start, 2), "analysis_s": round(analysed - t, 3),
                      "search_s": round(searched - analysed, 3),
                      "query_correlation": round(_correlation(clean, degraded), 3),
                      "first": found[0].track.id if found else None,
                      "first_at": round(found[0].start, 2) if found else None,
                      "rank": next((i + 1 for i, m in enumerate(found)
                                    if m.track.id == track.id and abs(m.start - start) <= args.tolerance), None)}
            if record["first"] == track.id and record["rank"] != 1:  # the right track at another time: a repeat?
                around = max(0.0, found[0].start - REPEAT_SLACK)
                there = audio.load(track.path, sr=rate, start=around, duration=length + 2 * REPEAT_SLACK)
                record["repeat_correlation"] = round(_correlation(clean, passages.align_frames(there)), 3)
            records.append(record)
            print(json.dumps(record), file=sys.stderr, flush=True)
        print(json.dumps({"library": args.library, "patches": len(index), "index": index.kind,
                          "index_build_s": round(built, 2), "seconds": args.seconds, "snr_db": args.snr,
                          "centred": not args.uncentred, **summary(records, args.repeat),
                          "load_1m": os.getloadavg()[0],
                          "misses": [r for r in records if r["rank"] != 1]}))


def summary(records: list[dict], repeat: float) -> dict:
    """Rates and medians over the planted passages' ``records`` (as ``planted`` logs them)."""
    n = len(records)
    rank = np.array([r["rank"] or 0 for r in records])
    right_track = [r for r in records if r["first"] == r["track"]]
    repeats = sum(r.get("repeat_correlation", -1) >= repeat for r in records)
    search = [r["search_s"] for r in records]
    return {"tracks": n, "hit_at_1": round(float(np.mean(rank == 1)), 4), "hit_at_5": round(float(np.mean(rank > 0)), 4),
            "hit_or_repeat_at_1": round((int(np.sum(rank == 1)) + repeats) / n, 4), "repeat_threshold": repeat,
            "right_track_at_1": round(len(right_track) / n, 4),
            "time_within_0.1s": round(sum(abs(r["first_at"] - r["cut_at"]) <= 0.1 for r in right_track) / n, 4),
            "median_query_correlation": round(float(np.median([r["query_correlation"] for r in records])), 3),
            "median_analysis_s": round(float(np.median([r["analysis_s"] for r in records])), 3),
            "median_search_s": round(float(np.median(search)), 3),
            "p90_search_s": round(float(np.percentile(search, 90)), 3)}


def _correlation(wanted: np.ndarray, there: np.ndarray) -> float:
    """Best alignment correlation of spectrogram ``wanted`` along ``there`` (-1 when it does not fit)."""
    from soundalike.passages import alignment

    correlation = alignment(wanted, there)
    return float(correlation.max()) if len(correlation) else -1.0


def latency(args) -> None:
    if args.size:
        return latency_at(args)
    for size in map(int, args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "latency", "--like", args.like, "--size", str(size),
                              "--queries", str(args.queries), "--niter", str(args.niter)], capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr[-2000:], flush=True)


def latency_at(args) -> None:
    import faiss

    from soundalike.library import Library
    from soundalike.library.patches import IVF_TRAIN_PER_LIST, PatchIndex, ivf_lists, patch_space
    from soundalike.passages import NEIGHBOURS

    with tempfile.TemporaryDirectory() as folder, Library(copy_library(Path(args.like), Path(folder))) as library:
        real = np.concatenate([p for _, p in library.catalogue.iter_patches()]).astype(np.float64)
        space = patch_space(library.catalogue)
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
    factor = np.linalg.cholesky(cov + 1e-6 * np.eye(len(mean)) * np.trace(cov) / len(mean))
    size, chunk, per_track = args.size, 100_000, 50

    def draw(n, seed):
        z = np.random.default_rng(seed).standard_normal((n, len(mean)))
        return (mean + z @ factor.T).astype(np.float32)

    rng = np.random.default_rng(7)
    targets = np.sort(rng.choice(size, 8 * args.queries, replace=False))  # 8 patches a query
    kept = {}  # target row -> its raw patch, drawn while building

    def tracks():
        for c, start in enumerate(range(0, size, chunk)):
            block = draw(min(chunk, size - start), c + 1)
            mine = targets[(targets >= start) & (targets < start + len(block))]
            kept.update(zip(mine.tolist(), block[mine - start]))
            for i in range(0, len(block), per_track):
                yield (start + i) // per_track, block[i:i + per_track]

    if args.niter:  # fewer k-means iterations: a quicker build of the same structure (recall may drop)
        ivfpq = faiss.IndexIVFPQ

        def quicker(*shape):
            index = ivfpq(*shape)
            index.cp.niter = index.pq.cp.niter = args.niter
            return index

        faiss.IndexIVFPQ = quicker
    sample = draw(ivf_lists(size) * IVF_TRAIN_PER_LIST, 10**6)
    t = time.perf_counter()
    index = PatchIndex.build(tracks(), size, space, sample=sample)
    build = time.perf_counter() - t
    faiss.omp_set_num_threads(1)  # built on every core, searched on one
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder) / "x", {"library": "bench", "generation": 0})
        disk = (Path(folder) / "x.patches.faiss").stat().st_size
    times, found = [], 0
    for rows in rng.permutation(targets).reshape(args.queries, 8):
        unit = space.project(np.stack([kept[r] for r in rows.tolist()]))
        noisy = unit + rng.standard_normal(unit.shape).astype(np.float32) * 0.48 / np.sqrt(unit.shape[1])
        queries = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)  # cosine ~0.9 to the stored patch
        t = time.perf_counter()
        _, track_ids, numbers = index.search(queries, NEIGHBOURS)
        times.append(time.perf_counter() - t)
        for row, got_tracks, got_numbers in zip(rows, track_ids, numbers):
            found += bool(np.any((got_tracks == row // per_track) & (got_numbers == row % per_track)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"patches": size, "index": index.kind, "niter": args.niter or 25,
                      "lists": ivf_lists(size) if index.kind == "ivfpq" else None,
                      "build_s": round(build, 1), "disk_mb": round(disk / 2**20, 1), "peak_rss_mb": round(rss),
                      "median_ms": round(1000 * float(np.median(times)), 2),
                      "p95_ms": round(1000 * float(np.percentile(times, 95)), 2),
                      "p99_ms": round(1000 * float(np.percentile(times, 99)), 2),
                      "recall_at_64": round(found / (8 * args.queries), 4), "load_1m": os.getloadavg()[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("planted")
    p.add_argument("library")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--snr", type=float, default=20.0, help="noise added, dB below the passage")
    p.add_argument("--tolerance", type=float, default=3.0, help="seconds a found time may be off")
    p.add_argument("--repeat", type=float, default=0.9, help="correlation from which a wrong time is a repeat")
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--uncentred", action="store_true")
    p.set_defaults(func=planted)
    p = sub.add_parser("latency")
    p.add_argument("--like", required=True)
    p.add_argument("--sizes", default="1000000,10000000")
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--niter", type=int, default=0, help="k-means iterations training the IVF-PQ (0: faiss's 25)")
    p.set_defaults(func=latency)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}", file=sys.stderr)
    args.func(args)


if __name__ == "__main__":
    main()
