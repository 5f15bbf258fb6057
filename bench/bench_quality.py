"""Similarity quality of the pipeline users run, on every labelled corpus we have.

    python bench/bench_quality.py [--gtzan DIR] [--soundtracks DIR] [--corpus DIR:LABELS[:GROUP] ...]
                                  [--previous REF] [--full] [--sweep] [--out FILE.md] [--plot FILE.png]

Each corpus is indexed with ``soundalike index`` at its defaults (model, excerpt,
aggregation; a fresh library, in a subprocess, timed), and its items are ranked by
the library's own vectors (``Library.vectors``: the library's space, centred on its
mean), leave-one-out: precision at 5 and 10, mean average precision and 1-NN
accuracy, with 95 % percentile-bootstrap intervals over queries. Items of the query's
group (the same track, or artist...) never count. Named alternatives:

- from the same library (the same stored analysis, compared in another space): each
  network's block alone, both blocks with equal weights, and without centring;
- ``descriptors``: a library indexed with ``--model descriptors``, the MFCC-statistics
  floor every learned embedder must clear;
- ``--previous REF``: the same corpus indexed by soundalike at git revision REF (run
  from a temporary worktree, its library's raw vectors compared by plain cosine, as
  that version did), in the same run;
- ``--full``: the default model with every patch analysed (``--excerpt 0``);
- ``--sweep``: the MSD block's weight from 0.4 to 0.8 (the choice of the default).

Corpora: ``--gtzan`` (labels from file names, ``../shared/data/gtzan-dev``), ``--soundtracks``
(labels from folders, what ``../shared/data/fetch-soundtracks`` writes) and any
``--corpus DIR:LABELS[:GROUP]`` with LABELS ``folder``, ``filename`` or a CSV (see
``soundalike evaluate``) and GROUP ``track``, ``artist`` or ``album``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import versions

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
KS = (5, 10)
FIGURES = ("P@5", "P@10", "mAP", "1-NN")


@dataclasses.dataclass(frozen=True)
class Corpus:
    name: str
    root: Path
    labels: str
    group_by: str = "track"


@dataclasses.dataclass
class Row:
    name: str
    figures: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    queries: int
    note: str = ""


def index(corpus: Path, library: Path, *args: str, source: Path | None = None) -> float:
    """Run ``soundalike index`` (of the checkout at ``source``, default this one); seconds taken."""
    cmd = versions.command("index", str(corpus), "--library", str(library), *args)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=versions.environment(source), capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: some files failed (they are left out)
        raise RuntimeError(f"{' '.join(cmd)}\n{proc.stderr}")
    return time.perf_counter() - t0


def scored(name: str, vectors: np.ndarray, items, *, note: str = "", samples: int = 2000) -> Row:
    from soundalike.evaluation.metrics import bootstrap_intervals, retrieval

    labels = [next(iter(i.labels)) if len(i.labels) == 1 else i.labels for i in items]
    result = retrieval(vectors, labels, [i.group for i in items], ks=KS)
    return Row(name, result.figures(), bootstrap_intervals(result, samples=samples), result.queries, note)


def library_rows(library: Path, items, seconds: float, *, samples: int, sweep: bool) -> list[Row]:
    """The default's row, and the alternatives that compare its stored vectors in other spaces."""
    from soundalike.analysis import Space, library_centre
    from soundalike.library import Library
    from soundalike.models import DEFAULT_LIBRARY_MODEL, LIBRARY_MEMBERS

    with Library(library) as lib:
        ids = [lib.catalogue.track_by_path(i.path) for i in items]
        kept = [i for i, t in zip(items, ids) if t is not None]
        ids = [t.id for t in ids if t is not None]
        found, raw = lib.catalogue.arrays("vector", ids)
        order = {int(i): row for row, i in enumerate(found)}
        raw = raw[[order[i] for i in ids]]
        space, model, hours = lib.space, lib.catalogue.model, lib.stats()["hours"]
        members = [name for name, _ in LIBRARY_MEMBERS] if model == DEFAULT_LIBRARY_MODEL else \
            [f"block {b + 1}" for b in range(len(space.blocks))]
        rows = [scored(f"**default: {model}**", lib.vectors(ids), kept, samples=samples,
                       note=f"{len(ids) / seconds:.2f} tracks/s, {hours * 3600 / seconds:.0f}x real time")]
    centre = library_centre(raw.astype(np.float64).sum(axis=0), len(raw))  # as a library of these items
    edges = np.cumsum((0, *space.blocks))
    if len(space.blocks) > 1:
        for b, (a, z) in enumerate(zip(edges[:-1], edges[1:])):
            part = raw[:, a:z]
            rows.append(scored(f"{members[b]} alone, centred",
                               Space((z - a,), (1.0,), centre[a:z]).project(part), kept, samples=samples))
            rows.append(scored(f"{members[b]} alone, not centred", Space((z - a,), (1.0,)).project(part), kept,
                               samples=samples))
        equal = (1.0,) * len(space.blocks)
        rows.append(scored("equal weights, centred", Space(space.blocks, equal, centre).project(raw), kept,
                           samples=samples))
        if sweep:
            for w in (0.4, 0.5, 0.6, 0.7, 0.8):
                weights = (w, 1 - w) if len(space.blocks) == 2 else space.weights
                rows.append(scored(f"{members[0]} weight {weights[0]:.1f}, {members[1]} {weights[1]:.1f}, centred",
                                   Space(space.blocks, weights, centre).project(raw), kept, samples=samples))
    rows.append(scored("default, not centred", Space(space.blocks, space.weights).project(raw), kept, samples=samples))
    return rows


def raw_rows(name: str, library: Path, items, seconds: float, *, samples: int) -> Row:
    """A library's raw vectors compared by plain cosine, read from SQLite directly (any version)."""
    from soundalike.analysis import normalize

    db = sqlite3.connect(library)
    vectors = {p: np.frombuffer(v, np.float32) for p, v in db.execute("SELECT path, vector FROM tracks")}
    model = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()[0]
    db.close()
    kept = [i for i in items if i.path in vectors]
    return scored(f"{name}: {model}", normalize(np.stack([vectors[i.path] for i in kept])), kept, samples=samples,
                  note=f"{len(kept) / seconds:.2f} tracks/s")


def measure(corpus: Corpus, work: Path, args) -> list[Row]:
    from soundalike.evaluation import collect

    items = collect(corpus.root, corpus.labels, group_by=corpus.group_by)
    workers = ["--workers", str(args.workers)]
    library = work / f"{corpus.name}.default.sqlite"
    seconds = index(corpus.root, library, *workers)
    rows = library_rows(library, items, seconds, samples=args.samples, sweep=args.sweep)
    if args.full:
        full = work / f"{corpus.name}.full.sqlite"
        seconds = index(corpus.root, full, *workers, "--excerpt", "0")
        rows.append(dataclasses.replace(library_rows(full, items, seconds, samples=args.samples, sweep=False)[0],
                                        name="default model, every patch (--excerpt 0)"))
    descriptors = work / f"{corpus.name}.descriptors.sqlite"
    seconds = index(corpus.root, descriptors, *workers, "--model", "descriptors")
    rows.append(dataclasses.replace(library_rows(descriptors, items, seconds, samples=args.samples, sweep=False)[0],
                                    name="descriptors (MFCC etc. statistics), centred"))
    if args.previous:
        old = work / f"{corpus.name}.previous.sqlite"
        seconds = index(corpus.root, old, *workers, source=args.previous_tree)
        rows.append(raw_rows(f"previous default (soundalike {args.previous})", old, items, seconds,
                             samples=args.samples))
    print(f"{corpus.name}: {len(items)} items", file=sys.stderr)
    return rows


def markdown(corpus: Corpus, rows: list[Row]) -> str:
    queries = rows[0].queries
    lines = [f"### {corpus.name} (labels: {corpus.labels}, grouped by {corpus.group_by}; {queries} queries)", "",
             "| variant | " + " | ".join(FIGURES) + " | |", "|---|" + "---|" * len(FIGURES) + "---|"]
    for row in rows:
        cells = [f"{row.figures[f]:.3f} [{row.intervals[f][0]:.3f}, {row.intervals[f][1]:.3f}]" for f in FIGURES]
        lines.append(f"| {row.name} | " + " | ".join(cells) + f" | {row.note} |")
    return "\n".join(lines) + "\n"


def plot(results: list[tuple[Corpus, list[Row]]], out: Path) -> None:
    """P@5 with its 95 % interval, one panel per corpus sharing the variants' axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name.replace("**", "") for r in results[0][1]]
    fig, axes = plt.subplots(1, len(results), sharey=True, squeeze=False,
                             figsize=(3.2 * len(results) + 3.5, 0.32 * len(names) + 1.2))
    y = np.arange(len(names))[::-1]
    for axis, (corpus, rows) in zip(axes[0], results):
        values = np.array([r.figures["P@5"] for r in rows])
        errors = np.abs(np.array([r.intervals["P@5"] for r in rows]).T - values)
        colours = ["#c33" if "default:" in r.name else "#579" for r in rows]
        axis.errorbar(values, y[: len(rows)], xerr=errors, fmt="none", ecolor="#999", capsize=2)
        axis.scatter(values, y[: len(rows)], c=colours, zorder=3)
        axis.set_title(f"{corpus.name}: P@5", fontsize=10)
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, names, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, default=SHARED / "gtzan-dev")
    parser.add_argument("--soundtracks", type=Path,
                        default=Path(os.environ.get("SOUNDTRACKS", "/work/data/soundtracks")))
    parser.add_argument("--corpus", action="append", default=[], metavar="DIR:LABELS[:GROUP]")
    parser.add_argument("--previous", metavar="REF", help="also measure soundalike at this git revision")
    parser.add_argument("--full", action="store_true", help="also analyse every patch (slow)")
    parser.add_argument("--sweep", action="store_true", help="also sweep the MSD block's weight")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap samples")
    parser.add_argument("--keep", type=Path, help="keep the libraries in this folder")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    parser.add_argument("--plot", type=Path, help="draw P@5 with intervals to this PNG")
    args = parser.parse_args(argv)
    corpora = []
    if args.gtzan.is_dir():
        corpora.append(Corpus("gtzan-dev", args.gtzan, "filename"))
    if args.soundtracks.is_dir():
        corpora.append(Corpus("soundtracks", args.soundtracks, "folder"))
    for spec in args.corpus:
        folder, labels, *group = spec.split(":")
        corpora.append(Corpus(Path(folder).name, Path(folder), labels, *(group or ["track"])))
    if not corpora:
        parser.error("no corpus found: give --gtzan, --soundtracks or --corpus")
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            args.previous_tree = stack.enter_context(versions.worktree(args.previous)) if args.previous else None
            results = [(corpus, measure(corpus, work, args)) for corpus in corpora]
    text = "\n".join(markdown(corpus, rows) for corpus, rows in results)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
