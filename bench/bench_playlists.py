"""Paths between songs on a real library: soundalike's method against the naive one.

    python bench/bench_playlists.py LIBRARY.sqlite [--pairs 100] [--length 10]

For random pairs of tracks from different soundtracks (or albums/folders), builds a
path of ``--length`` tracks three ways: ``path`` (soundalike), ``naive`` (nearest
unused track to each evenly spaced point of the straight line) and ``naive, repeats
allowed`` (nearest track, used or not). Reports mean and largest step (cosine
distance), the largest step over the mean step (1 = perfectly even), and how many
paths repeat a track or stall (a step of zero: the same track, or its duplicate,
twice in a row).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from soundalike.library import Library
from soundalike.playlists import naive_path, path, step_distances

STALL = 1e-4  # a step shorter than this goes nowhere


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    methods = {"path": lambda lib, ends: path(lib, ends, length=args.length),
               "naive": lambda lib, ends: naive_path(lib, ends, length=args.length),
               "naive, repeats allowed": lambda lib, ends: naive_path(lib, ends, length=args.length, unused=False)}
    results = {name: {"mean": [], "max": [], "ratio": [], "repeats": 0, "stalls": 0, "seconds": []} for name in methods}
    with Library(args.library) as lib:
        tracks = lib.catalogue.tracks()
        folder = {t.id: Path(t.path).parent for t in tracks}
        pairs = []
        while len(pairs) < args.pairs:
            a, b = rng.choice(len(tracks), 2, replace=False)
            if folder[tracks[a].id] != folder[tracks[b].id]:
                pairs.append((tracks[a], tracks[b]))
        for a, b in pairs:
            ends = [lib.seed(a), lib.seed(b)]
            for name, make in methods.items():
                t0 = time.perf_counter()
                playlist = make(lib, ends)
                results[name]["seconds"].append(time.perf_counter() - t0)
                steps = step_distances(lib, playlist)
                r = results[name]
                r["mean"].append(steps.mean())
                r["max"].append(steps.max())
                r["ratio"].append(steps.max() / max(steps.mean(), 1e-9))
                r["repeats"] += len({t.id for t in playlist}) < len(playlist)
                r["stalls"] += bool((steps < STALL).any())
    print(f"{args.pairs} pairs of tracks from different folders, {args.length} tracks per path, {len(tracks)} tracks")
    print("| method | mean step | largest step | largest / mean (median) | paths with a repeat | paths that stall | ms per path |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {np.mean(r['mean']):.4f} | {np.mean(r['max']):.4f} | {np.median(r['ratio']):.2f} "
              f"| {r['repeats']} / {args.pairs} | {r['stalls']} / {args.pairs} | {1000 * np.median(r['seconds']):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
