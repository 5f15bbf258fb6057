"""The library map's projection: PCA against UMAP (and t-SNE), on labelled corpora and at scale.

    python bench/bench_map.py [--libraries DIR] [--gtzan DIR] [--soundtracks DIR] [--no-tsne]
                              [--sizes 3000 10000 100000] [--runs 3] [--no-timing] [--out FILE.md] [--plot FILE.png]

Quality, on each corpus's library indexed at the defaults (``DIR/NAME.default.sqlite``,
what ``bench/bench_quality.py --keep DIR`` leaves; labels as there): the map drawn as the
server draws it (``soundalike.server.projection.layout`` of ``Library.vectors``), scored by

- 10-NN agreement: the fraction of each track's 10 nearest neighbours on the map that
  share its label (the same figure for the full-dimensional vectors, by cosine, is the
  ceiling a map could reach by keeping neighbourhoods);
- silhouette of the labels on the map (-1..1);
- trustworthiness (k=10) of the map against the full-dimensional vectors (0..1: 1 when
  no track's map neighbours are strangers in the full space).

Time: medians of ``--runs`` warm calls (in this process, after a first call of the same
code path) at each corpus's size and on synthetic libraries of ``--sizes`` tracks (the
corpora's vectors resampled, moved by noise about half a nearest-neighbour distance,
unit length again); peak memory of each call above what the process held before it
(``VmHWM`` reset through ``/proc/self/clear_refs``). Past ``UMAP_MAX_POINTS`` tracks UMAP
maps that many landmarks and places the rest beside their nearest ones, as the server
does; the quality tables show what that costs with a quarter of a corpus as landmarks. The first call in a fresh process
(importing umap-learn and numba's compilation) is timed apart, in a subprocess, with
numba's on-disk cache as it is after one earlier run and with an empty one (the first
map after installing). t-SNE (scikit-learn's Barnes-Hut) is left out past 5,000 tracks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_quality import SHARED, Corpus
from soundalike.server.projection import UMAP_MAX_POINTS

K = 10
TSNE_MAX_POINTS = 5_000


def tsne(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, init="pca", random_state=seed).fit_transform(vectors)


LANDMARKS_QUARTER = "umap, a quarter as landmarks"  # how a library past UMAP_MAX_POINTS is mapped, at corpus size


def draw(method: str, vectors: np.ndarray) -> np.ndarray:
    from soundalike.server.projection import layout

    if method == LANDMARKS_QUARTER:
        return layout(vectors, "umap", landmarks=len(vectors) // 4)
    return tsne(vectors) if method == "tsne" else layout(vectors, method)


def labelled_vectors(corpus: Corpus, library: Path) -> tuple[np.ndarray, np.ndarray]:
    """The library's vectors of the corpus's labelled items (n, d), and their labels (n,)."""
    from soundalike.evaluation import collect
    from soundalike.library import Library

    items = collect(corpus.root, corpus.labels, group_by=corpus.group_by)
    with Library(library) as lib:
        found = [(lib.catalogue.track_by_path(i.path), i) for i in items]
        found = [(t.id, sorted(i.labels)[0]) for t, i in found if t is not None]
        return lib.vectors([i for i, _ in found]), np.array([label for _, label in found])


def neighbour_agreement(points: np.ndarray, labels: np.ndarray, metric: str = "euclidean") -> float:
    """Mean fraction of each point's K nearest neighbours (itself left out) with its label."""
    from sklearn.neighbors import NearestNeighbors

    _, nearest = NearestNeighbors(n_neighbors=K + 1, metric=metric).fit(points).kneighbors(points)
    return float((labels[nearest[:, 1:]] == labels[:, None]).mean())


def quality(vectors: np.ndarray, labels: np.ndarray, xy: np.ndarray) -> dict[str, float]:
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import silhouette_score

    return {"10-NN agreement": neighbour_agreement(xy, labels), "silhouette": float(silhouette_score(xy, labels)),
            "trustworthiness": float(trustworthiness(vectors, xy, n_neighbors=K))}


def synthetic(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n unit vectors like ``real`` (m, d): resampled, each moved by noise of about half
    the median nearest-neighbour distance of ``real``."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    spacing = np.median(NearestNeighbors(n_neighbors=2).fit(real).kneighbors(real)[0][:, 1])
    x = real[rng.integers(0, len(real), n)] + rng.standard_normal((n, real.shape[1])) * spacing / 2 / np.sqrt(
        real.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class PeakMemory:
    """Peak resident memory (bytes) of this process during a ``with`` block, above what it held before."""

    def __enter__(self):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        self.before = self._status("VmRSS")
        return self

    def __exit__(self, *exc):
        self.peak = self._status("VmHWM") - self.before

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"/proc/self/status has no {field}")


def timed(method: str, vectors: np.ndarray, runs: int) -> tuple[float, int]:
    """Median seconds of ``runs`` warm calls, and the largest peak memory (bytes) of one."""
    seconds, peaks = [], []
    for _ in range(runs):
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            draw(method, vectors)
            seconds.append(time.perf_counter() - t0)
        peaks.append(memory.peak)
    return statistics.median(seconds), max(peaks)


def first_call(method: str, n: int, vectors_file: Path, cold: bool) -> dict[str, float]:
    """Seconds to import and to draw the first map of n tracks, in a fresh process whose
    numba cache is empty (``cold``) or as one earlier process left it."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(1 if cold else 2):
            out = subprocess.run([sys.executable, __file__, "--first-call", method, str(n), str(vectors_file)],
                                 env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def first_call_child(method: str, n: int, vectors_file: Path) -> None:
    import soundalike.server.projection  # noqa: F401  (the server has it; not timed)

    vectors = np.load(vectors_file)[:n]
    t0 = time.perf_counter()
    if method == "umap":
        import umap  # noqa: F401
    else:
        import sklearn.decomposition  # noqa: F401
        import sklearn.manifold  # noqa: F401
    imported = time.perf_counter() - t0
    draw(method, vectors)
    print(json.dumps({"import": imported, "first map": time.perf_counter() - t0 - imported}))


def plot(maps: dict[str, np.ndarray], labels: np.ndarray, title: str, out: Path) -> None:
    """The maps side by side, one colour per label, one legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(set(labels))
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(maps), figsize=(4.6 * len(maps) + 1.6, 4.8), squeeze=False)
    for axis, (method, xy) in zip(axes[0], maps.items()):
        for c, name in enumerate(names):
            mine = labels == name
            axis.scatter(xy[mine, 0], xy[mine, 1], s=9, color=colours(c), label=name, linewidths=0)
        axis.set_title(method.upper() if method != "tsne" else "t-SNE")
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, markerscale=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", type=Path, default=Path("/work/data/bq2"),
                        help="folder of NAME.default.sqlite libraries (bench_quality.py --keep)")
    parser.add_argument("--gtzan", type=Path, default=SHARED / "gtzan-dev")
    parser.add_argument("--soundtracks", type=Path,
                        default=Path(os.environ.get("SOUNDTRACKS", "/work/data/soundtracks")))
    parser.add_argument("--no-tsne", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=[3_000, 10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-timing", action="store_true", help="quality only")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    parser.add_argument("--plot", type=Path, help="draw the gtzan-dev maps side by side to this PNG")
    parser.add_argument("--first-call", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.first_call:
        first_call_child(args.first_call[0], int(args.first_call[1]), Path(args.first_call[2]))
        return 0
    methods = ["pca", "umap"] + ([] if args.no_tsne else ["tsne"])
    corpora = [Corpus("gtzan-dev", args.gtzan, "filename"), Corpus("soundtracks", args.soundtracks, "folder")]
    lines, pooled = [], []
    for corpus in corpora:
        library = args.libraries / f"{corpus.name}.default.sqlite"
        if not (corpus.root.is_dir() and library.is_file()):
            print(f"{corpus.name}: no {corpus.root} or {library}, left out", file=sys.stderr)
            continue
        vectors, labels = labelled_vectors(corpus, library)
        pooled.append(vectors)
        maps = {m: draw(m, vectors) for m in methods + [LANDMARKS_QUARTER]}
        section = [f"### {corpus.name}: {len(vectors)} tracks, {len(set(labels))} labels", "",
                  "| map | 10-NN agreement | silhouette | trustworthiness (k=10) |", "|---|---|---|---|",
                  f"| full-dimensional vectors (cosine), for reference | "
                  f"{neighbour_agreement(vectors, labels, 'cosine'):.3f} | | |"]
        for method, xy in maps.items():
            figures = quality(vectors, labels, xy)
            assert np.array_equal(xy, draw(method, vectors)), f"{method}: not deterministic"
            section.append(f"| {method} | " + " | ".join(f"{v:.3f}" for v in figures.values()) + " |")
        lines += section + [""]
        if args.plot and corpus.name == "gtzan-dev":
            plot({m: xy for m, xy in maps.items() if m != LANDMARKS_QUARTER}, labels, f"gtzan-dev: {len(vectors)} excerpts coloured by genre", args.plot)
        print("\n".join(section), file=sys.stderr, flush=True)
    if not args.no_timing and pooled:
        real = np.concatenate(pooled)
        sizes = [len(v) for v in pooled] + args.sizes
        lines += ["### time and memory", "",
                  "| map | " + " | ".join(f"{n:,} tracks" for n in sizes) + f" | peak memory at {sizes[-1]:,} |",
                  "|---|" + "---|" * (len(sizes) + 1)]
        with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp:
            vectors_file = Path(tmp) / "vectors.npy"
            np.save(vectors_file, synthetic(real, max(sizes)))
            first = {(m, n, cold): first_call(m, n, vectors_file, cold)
                     for m in methods for n in (sizes[0], UMAP_MAX_POINTS) for cold in (False, True)
                     if not (m != "umap" and cold)}
            for method in methods:
                for n in (500, 5000):  # every code path compiled (UMAP: exact neighbours below 4096, NN-descent above)
                    draw(method, synthetic(real, n, seed=1))
                cells, peak = [], 0
                for n, vectors in zip(sizes, pooled + [synthetic(real, n) for n in args.sizes]):
                    if method == "tsne" and n > TSNE_MAX_POINTS:
                        cells.append("not run")
                        continue
                    seconds, peak = timed(method, vectors, args.runs)
                    cells.append(f"{seconds:.2f} s")
                    print(method, n, cells[-1], f"{peak / 2**20:.0f} MiB", file=sys.stderr, flush=True)
                memory = f"{peak / 2**20:.0f} MiB" if cells[-1] != "not run" else ""
                lines.append(f"| {method} (warm, median of {args.runs}) | " + " | ".join(cells) + f" | {memory} |")
        lines += ["", "| first map in a fresh process | import | first map | total |", "|---|---|---|---|"]
        for (method, n, cold), t in first.items():
            cache = ", empty numba cache (first run after install)" if cold else ""
            lines.append(f"| {method}, {n:,} tracks{cache} | {t['import']:.2f} s | {t['first map']:.2f} s | "
                         f"{t['import'] + t['first map']:.2f} s |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
