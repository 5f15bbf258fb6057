"""Sonic families against the labels: agreement (adjusted Rand index) of the families of
the default library with each corpus's labels, against k-means on the descriptors
(MFCC etc. statistics), with the automatic count and with as many families as labels;
and the time to group a synthetic library of ``--size`` tracks.

    python bench/bench_families.py [--libraries DIR] [--size 100000] [--out FILE.md]

Libraries: ``DIR/gtzan-dev.{default,descriptors}.sqlite`` (label: the file name before
its first dot) and ``DIR/soundtracks.{default,descriptors}.sqlite`` (label: the parent
folder), copied to a temporary folder before they are opened (never modified). Both
embeddings are clustered by the same code (:func:`soundalike.families.library_families`).
Time: one call of :func:`soundalike.families.group` (automatic count, tag names) on
``--size`` synthetic unit vectors of 400 dimensions drawn around 40 centres, with 92
tags; reading the vectors from the catalogue is not counted.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from soundalike import families
from soundalike.library import Library

CORPORA = {  # name -> label of a track's path
    "gtzan-dev": lambda path: Path(path).name.split(".")[0],
    "soundtracks": lambda path: Path(path).parent.name,
}
EMBEDDINGS = {"default": "families (default model)", "descriptors": "k-means on the descriptors"}


def agreement(library_file: Path, label_of, folder: Path) -> list[tuple[str, int, float]]:
    """(count, number of families, ARI with the labels) for the automatic count and as many as labels."""
    copy = folder / library_file.name
    shutil.copy(library_file, copy)
    with Library(copy) as library:
        ids = library.catalogue.ids()
        labels = [label_of(t.path) for t in library.catalogue.tracks(ids.tolist())]
        rows = []
        for count, n in (("automatic", None), ("= labels", len(set(labels)))):
            found = families.library_families(library, n)
            rows.append((count, len(found.families), adjusted_rand_score(labels, found.labels(ids))))
    return rows


def synthetic_time(size: int, dim: int = 400, n_tags: int = 92, seed: int = 0) -> tuple[float, int]:
    """Seconds to group ``size`` synthetic tracks, and the number of families found."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    which = rng.integers(0, len(centres), size)
    vectors = centres[which] + 2.0 * rng.standard_normal((size, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tags = rng.random((size, n_tags)).astype(np.float32)
    names = [f"tag{i}" for i in range(n_tags)]
    start = time.perf_counter()
    found = families.group(np.arange(size), vectors, tags, names)
    return time.perf_counter() - start, len(found.families)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", default="/work/data/bq2", help="folder of NAME.EMBEDDING.sqlite libraries")
    parser.add_argument("--size", type=int, default=100_000, help="tracks of the synthetic library timed (0: none)")
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args()
    lines = ["| corpus | clustering | count | families | ARI with the labels |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="bench-families-") as folder:
        for corpus, label_of in CORPORA.items():
            for embedding, what in EMBEDDINGS.items():
                library_file = Path(args.libraries) / f"{corpus}.{embedding}.sqlite"
                for count, n, ari in agreement(library_file, label_of, Path(folder)):
                    lines.append(f"| {corpus} | {what} | {count} | {n} | {ari:.3f} |")
    if args.size:
        seconds, n = synthetic_time(args.size)
        lines += ["", f"Grouping {args.size:,} synthetic tracks (400 dimensions, 92 tags): {seconds:.1f} s, "
                      f"{n} families."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
