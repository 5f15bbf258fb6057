"""Datasets on the user's disk, all of one shape: a track index, a lazy audio loader per
track, splits that never separate a group, and the dataset's licence and citation.

Kinds: ``folders`` (``DIR/<label>/...``), ``csv`` (path to label(s)), ``gtzan``,
``mtat`` (MagnaTagATune), ``fma`` (Free Music Archive) and ``playlists`` (M3U files or
a text file with one playlist per line).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import audio
from .errors import ParameterError
from .library.indexer import AUDIO_EXTENSIONS, find_audio
from .playlist_files import read_m3u

SPLITS = ("train", "valid", "test")
LABEL_SEPARATOR = ";"  # several labels in one CSV cell
PLAYLIST_SEPARATOR = "\t"  # between the tracks of one line of a playlists text file
OWN_LICENCE = "the user's own files; no licence implied"


@dataclasses.dataclass(frozen=True)
class Track:
    """One track of a dataset. ``group`` (artist, album or song, when known) and the track
    itself are never split across train, valid and test; ``split`` is the dataset's
    own split when it has one."""

    key: str
    path: Path
    labels: tuple[str, ...] = ()
    group: str | None = None
    split: str | None = None

    def load(self, sample_rate: int) -> np.ndarray:
        """The decoded track, mono float32 at ``sample_rate`` (MediaError if undecodable)."""
        return audio.load(self.path, sr=sample_rate)


@dataclasses.dataclass
class Dataset:
    kind: str
    root: Path
    tracks: dict[str, Track]
    vocabulary: tuple[str, ...]
    multilabel: bool
    licence: str
    citation: str
    playlists: list[list[str]] = dataclasses.field(default_factory=list)  # track keys in play order

    def splits(self, *, seed: int = 0, fractions: tuple[float, float] = (0.1, 0.1)) -> dict[str, list[Track]]:
        """Train, valid and test tracks: the dataset's own split when every track has one,
        otherwise whole groups drawn at random (seeded) per label, about ``fractions``
        (valid, test) of each label's groups, at least one each where a label has three."""
        tracks = sorted(self.tracks.values(), key=lambda t: t.key)
        if tracks and all(t.split for t in tracks):
            out = {s: [t for t in tracks if t.split == s] for s in SPLITS}
            missing = [s for s in SPLITS if not out[s]]
            if missing:
                raise ParameterError(f"{self.root}: the dataset's own split has no {', '.join(missing)} tracks")
            return out
        groups: dict[str, list[Track]] = defaultdict(list)
        for t in tracks:
            groups[t.group or t.key].append(t)
        by_label: dict[str, list[str]] = defaultdict(list)
        for name, members in groups.items():
            by_label[members[0].labels[0] if members[0].labels else ""].append(name)
        rng = np.random.default_rng(seed)
        out = {s: [] for s in SPLITS}
        for label in sorted(by_label):
            names = sorted(by_label[label])
            rng.shuffle(names)
            n_valid, n_test = (max(1 if len(names) >= 3 else 0, round(f * len(names))) for f in fractions)
            for i, name in enumerate(names):
                split = "valid" if i < n_valid else "test" if i < n_valid + n_test else "train"
                out[split].extend(groups[name])
        return out


def _labelled(kind: str, root: Path, tracks: list[Track], licence: str, citation: str,
              multilabel: bool = False) -> Dataset:
    if not tracks:
        raise ParameterError(f"{root}: no labelled audio files found for a {kind} dataset")
    vocabulary = tuple(sorted({label for t in tracks for label in t.labels}))
    return Dataset(kind, root, {t.key: t for t in tracks}, vocabulary, multilabel, licence, citation)


def folders(root: Path) -> Dataset:
    """``DIR/<label>/...``: the label is the first folder under DIR."""
    tracks = []
    for f in find_audio([root]):
        path = Path(f.path)
        parts = path.relative_to(root).parts
        if len(parts) > 1:
            tracks.append(Track(str(path), path, (parts[0],)))
    return _labelled("folders", root, tracks, OWN_LICENCE, "")


def read_label_csv(path: Path) -> list[Track]:
    """Rows of a CSV with a header: ``path`` and ``label`` (or ``labels``; several joined by
    ';'), optional ``group`` and ``split``. Relative paths are under the CSV's folder."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read the CSV ({exc.strerror})") from None
    header = set(rows[0]) if rows else set()
    label_column = "labels" if "labels" in header else "label"
    if not {"path", label_column} <= header:
        raise ParameterError(f"{path}: the CSV needs a header with 'path' and 'label' columns, got {sorted(header)}")
    tracks = []
    for row in rows:
        file = Path(row["path"]) if os.path.isabs(row["path"]) else path.parent / row["path"]
        labels = tuple(x.strip() for x in (row[label_column] or "").split(LABEL_SEPARATOR) if x.strip())
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            raise ParameterError(f"{path}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        tracks.append(Track(str(file.resolve()), file.resolve(), labels, row.get("group") or None, split))
    return tracks


def labels_csv(path: Path) -> Dataset:
    tracks = read_label_csv(path)
    return _labelled("csv", path.parent, tracks, OWN_LICENCE, "", multilabel=any(len(t.labels) > 1 for t in tracks))


def gtzan(root: Path) -> Dataset:
    """GTZAN: ``genres/<genre>/<genre>.000NN.au`` (or ``genres_original`` with WAV files);
    the genre is the file name up to its first dot. 100 excerpts of 30 s per genre."""
    tracks = [Track(Path(f.path).name, Path(f.path), (Path(f.path).name.split(".")[0],)) for f in find_audio([root])]
    return _labelled(
        "gtzan", root, tracks,
        "no licence given; distributed by its authors for research",
        "G. Tzanetakis and P. Cook, Musical genre classification of audio signals, "
        "IEEE Transactions on Speech and Audio Processing 10(5), 2002")


MTAT_SPLIT = {**{c: "train" for c in "0123456789ab"}, "c": "valid", "d": "test", "e": "test", "f": "test"}


def mtat(root: Path, *, top_n: int = 50) -> Dataset:
    """MagnaTagATune: ``annotations_final.csv`` (tab-separated; clip_id, one 0/1 column per
    tag, mp3_path) and the MP3s in folders 0-f. The ``top_n`` most frequent tags; clips
    with none of them are left out. The usual split by folder: 0-b train, c valid, d-f
    test. Clips cut from one song share a group."""
    table = root / "annotations_final.csv"
    try:
        with open(table, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
    except OSError as exc:
        raise ParameterError(f"{table}: cannot read MagnaTagATune's annotations ({exc.strerror})") from None
    header, rows = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    tag_columns = range(1, len(header) - 1)
    counts = Counter({header[c]: sum(r[c] == "1" for r in rows) for c in tag_columns})
    top = {tag for tag, _ in counts.most_common(top_n)}
    tracks = []
    for r in rows:
        labels = tuple(header[c] for c in tag_columns if r[c] == "1" and header[c] in top)
        mp3 = r[-1]
        if labels and mp3[:1] in MTAT_SPLIT:
            song = Path(mp3).stem.rsplit("-", 2)[0]
            tracks.append(Track(r[0], root / mp3, labels, song, MTAT_SPLIT[mp3[0]]))
    return _labelled(
        "mtat", root, tracks, "Creative Commons BY-NC-SA 1.0 (Magnatune)",
        "E. Law, K. West, M. Mandel, M. Bay and J. S. Downie, Evaluation of algorithms using games: "
        "the case of music tagging, ISMIR 2009", multilabel=True)


FMA_SPLIT = {"training": "train", "validation": "valid", "test": "test"}
FMA_SUBSETS = ("small", "medium", "large")


def fma(root: Path) -> Dataset:
    """FMA: ``fma_metadata/tracks.csv`` (two header rows, then the index name) and the
    audio in ``fma_small``, ``fma_medium``, ``fma_large`` or ``fma_full`` as
    ``000/000002.mp3``. Label: ``genre_top``; the dataset's own split; groups by artist."""
    table = root / "fma_metadata" / "tracks.csv"
    try:
        with open(table, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise ParameterError(f"{table}: cannot read FMA's track table ({exc.strerror})") from None
    column = {(top, sub): i for i, (top, sub) in enumerate(zip(rows[0], rows[1]))}
    try:
        split, subset, genre, artist = (column[c] for c in (("set", "split"), ("set", "subset"),
                                                            ("track", "genre_top"), ("artist", "id")))
    except KeyError as exc:
        raise ParameterError(f"{table}: not FMA's tracks.csv (no column {exc.args[0]})") from None
    audio_dir = next((root / f"fma_{s}" for s in (*FMA_SUBSETS, "full") if (root / f"fma_{s}").is_dir()), None)
    if audio_dir is None:
        raise ParameterError(f"{root}: no audio folder (fma_small, fma_medium, fma_large or fma_full)")
    name = audio_dir.name.removeprefix("fma_")
    allowed = set(FMA_SUBSETS[: FMA_SUBSETS.index(name) + 1]) if name in FMA_SUBSETS else set(FMA_SUBSETS)
    tracks = []
    for r in rows[3:]:
        if len(r) == len(rows[0]) and r[genre] and r[subset] in allowed:
            tid = f"{int(r[0]):06d}"
            tracks.append(Track(tid, audio_dir / tid[:3] / f"{tid}.mp3", (r[genre],), r[artist], FMA_SPLIT[r[split]]))
    return _labelled(
        "fma", root, tracks, "metadata CC BY 4.0; each recording under its artist's Creative Commons licence",
        "M. Defferrard, K. Benzi, P. Vandergheynst and X. Bresson, FMA: a dataset for music analysis, ISMIR 2017")


def playlists(path: Path) -> Dataset:
    """A folder of M3U/M3U8 files, or a text file with one playlist per line (paths joined
    by tabs, relative ones under the file's folder). Tracks not on disk are dropped."""
    if path.is_dir():
        lists = [[e.path for e in read_m3u(f)] for f in sorted(path.iterdir())
                 if f.suffix.lower() in (".m3u", ".m3u8")]
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ParameterError(f"{path}: cannot read the playlists ({exc.strerror})") from None
        lists = [[str((path.parent / p).resolve()) for p in line.split(PLAYLIST_SEPARATOR) if p.strip()]
                 for line in lines if line.strip()]
    on_disk = {p for entries in lists for p in entries
               if Path(p).suffix.lower() in AUDIO_EXTENSIONS and Path(p).is_file()}
    lists = [[p for p in entries if p in on_disk] for entries in lists]
    lists = [entries for entries in lists if len(entries) > 1]
    if not lists:
        raise ParameterError(f"{path}: no playlist with two or more tracks found on disk")
    tracks = {p: Track(p, Path(p)) for p in sorted({p for entries in lists for p in entries})}
    return Dataset("playlists", path, tracks, (), False, OWN_LICENCE, "", lists)


LOADERS: dict[str, Callable[[Path], Dataset]] = {
    "folders": folders, "csv": labels_csv, "gtzan": gtzan, "mtat": mtat, "fma": fma, "playlists": playlists,
}


def open_dataset(spec: str) -> Dataset:
    """A dataset from ``KIND:PATH``, e.g. ``gtzan:~/data/gtzan``."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in LOADERS:
        raise ParameterError(f"data must be KIND:PATH with KIND one of {', '.join(LOADERS)}, got {spec!r}")
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise ParameterError(f"{root}: no such file or folder")
    return LOADERS[kind](root)
