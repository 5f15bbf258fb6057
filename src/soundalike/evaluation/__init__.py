"""``soundalike evaluate``: how well embedders find similar music, against baselines.

A dataset is a folder of audio files with a label per file (from its folder, its file
name, or a CSV) and a group (the track itself, or its artist or album). Each embedder
turns every file into patch vectors; a variant (aggregation, patch hop, excerpt)
turns those into item vectors, compared in the embedder's space centred on the
dataset's mean (as a library of these files would be: the same analysis function and
the same :class:`~soundalike.analysis.Space` as ``soundalike index``), which the
metrics of :mod:`.metrics` score.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .. import analysis, audio
from ..analysis import Space, library_centre, model_space
from ..datasets import LABEL_SEPARATOR
from ..errors import ParameterError
from ..library.indexer import find_audio
from ..models import REGISTRY, is_model_path, load_model
from .metrics import Retrieval, probe_accuracy, retrieval, tag_auc

AGGREGATIONS = ("mean", "meanstd", "tfidf")


@dataclasses.dataclass(frozen=True)
class Item:
    path: str
    labels: frozenset[str]
    group: str


@dataclasses.dataclass(frozen=True)
class Features:
    """Per-patch vectors (P, d) of one file, and tag probabilities (P, T) if any."""

    patches: np.ndarray
    tags: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Variant:
    aggregate: str = "mean"
    hop: float | None = None  # seconds between patches; None: side by side
    excerpt: int = 0  # patches per track; 0: all
    centre: bool = True  # centre on the dataset's mean, as a library does; False: raw cosines

    def describe(self) -> str:
        parts = [self.aggregate]
        if self.hop:
            parts.append(f"hop {self.hop:g} s")
        parts.append(f"{self.excerpt} patches" if self.excerpt else "full track")
        if not self.centre:
            parts.append("not centred")
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class Row:
    embedder: str
    variant: Variant
    retrieval: Retrieval
    probe: float
    tag_auc: tuple[float, float] | None


# --- datasets --------------------------------------------------------------------------

def collect(root: str | os.PathLike, labels: str, *, group_by: str = "track") -> list[Item]:
    """Items of a dataset: labels from 'folder', 'filename' (up to the first dot, as in
    GTZAN's blues.00042.au) or a CSV file (columns path, label[, group]; several labels
    joined by ';'); groups by 'track', 'artist' or 'album' (from the file's tags)."""
    if group_by not in ("track", "artist", "album"):
        raise ParameterError(f"group_by must be track, artist or album, got {group_by!r}")
    root = Path(root).expanduser().resolve()
    if labels in ("folder", "filename"):
        files = [Path(f.path) for f in find_audio([root])]
        rows = [(f, f.parent.name if labels == "folder" else f.name.split(".")[0], None) for f in files]
    elif Path(labels).is_file():
        rows = []
        with open(labels, newline="", encoding="utf-8") as handle:
            for record in csv.reader(handle):
                if not record or record[0] == "path":
                    continue
                if len(record) < 2:
                    raise ParameterError(f"{labels}: each row needs a path and a label, got {record}")
                path = Path(record[0]) if os.path.isabs(record[0]) else root / record[0]
                rows.append((path.resolve(), record[1], record[2] if len(record) > 2 and record[2] else None))
    else:
        raise ParameterError(f"labels must be 'folder', 'filename' or a CSV file, got {labels!r}")
    items = []
    for path, label, group in rows:
        if group is None:
            group = str(path)
            if group_by != "track":
                meta = audio.read_metadata(path)
                group = getattr(meta, group_by) or str(path)
        items.append(Item(str(path), frozenset(x.strip() for x in label.split(LABEL_SEPARATOR) if x.strip()), group))
    if len(items) < 2:
        raise ParameterError(f"{root}: found {len(items)} labelled audio files; need at least 2")
    return items


# --- embedders -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _model_features(name: str) -> Callable[[str, Variant], Features]:
    """Analyses by one model, remembered per (file, hop, excerpt) so that its
    penultimate-layer and tag embedders share them."""
    model = load_model(name)
    sr = model.window.sample_rate
    cache: dict[tuple, Features] = {}

    def features(path: str, variant: Variant) -> Features:
        key = (path, variant.hop, variant.excerpt)
        if key not in cache:
            result = analysis.analyse_track(path, model, excerpt=variant.excerpt,
                                            hop=round(variant.hop * sr) if variant.hop else None)
            cache[key] = Features(result.embeddings, result.taggram)
        return cache[key]

    features.tag_names = model.labels
    features.space = model_space(model)
    return features


def embedder(name: str) -> Callable[[str, Variant], Features]:
    """A function (path, variant) -> Features for a registered model's name, or a model
    trained with ``soundalike train`` (its file or run directory); ``NAME:tags`` takes
    its tag probabilities as the vectors. The function's ``space`` tells how its
    vectors are compared (:class:`~soundalike.analysis.Space`, before centring)."""
    model = name.removesuffix(":tags")
    if model in REGISTRY or is_model_path(model):
        features = _model_features(model)
        if name.endswith(":tags"):
            def tags_as_vectors(path, variant, features=features):
                f = features(path, variant)
                return Features(f.tags, f.tags)

            tags_as_vectors.tag_names = features.tag_names
            tags_as_vectors.space = Space((len(features.tag_names),), (1.0,))
            return tags_as_vectors
        return features
    raise ParameterError(f"unknown embedder {name!r}; known: {', '.join(sorted(REGISTRY))} (NAME:tags for "
                         "their tag probabilities), or a trained model's file or run directory")


def item_vectors(features: list[Features], aggregate: str) -> np.ndarray:
    """One raw vector per item from its patches: mean, mean and deviation, or TF-IDF."""
    if aggregate == "mean":
        return np.stack([analysis.aggregate(f.patches) for f in features])
    if aggregate == "meanstd":
        return np.stack([np.concatenate([f.patches.mean(axis=0), f.patches.std(axis=0)]) for f in features])
    if aggregate == "tfidf":
        return np.stack(analysis.tfidf_vectors([f.patches for f in features]))
    raise ParameterError(f"aggregate must be one of {', '.join(AGGREGATIONS)}, got {aggregate!r}")


def search_vectors(features: list[Features], variant: Variant, space: Space) -> np.ndarray:
    """The items' unit vectors (n, d) in ``space`` centred as a library of these files
    would be (unless ``variant.centre`` is False): what that library would compare."""
    raw = item_vectors(features, variant.aggregate)
    if variant.aggregate == "meanstd":  # means and deviations: each block twice
        space = Space(space.blocks * 2, space.weights * 2)
    centre = library_centre(raw.astype(np.float64).sum(axis=0), len(raw)) if variant.centre else None
    return space.with_centre(centre).project(raw)


# --- running ---------------------------------------------------------------------------

def evaluate(items: list[Item], embedders: list[str], variants: list[Variant], *, ks=(5, 10),
             progress: Callable[[Iterator, int, str], Iterator] | None = None) -> list[Row]:
    """Score every embedder under every variant; one :class:`Row` each."""
    progress = progress or (lambda it, total, label: it)
    labels = [item.labels for item in items]
    single = all(len(x) == 1 for x in labels)
    flat = np.array([next(iter(x)) for x in labels]) if single else None
    groups = np.array([item.group for item in items])
    vocabulary = sorted(set().union(*labels))
    rows = []
    for name in embedders:
        features_of = embedder(name)  # remembers analyses: variants differing only in aggregation reuse them
        tag_names = features_of.tag_names
        for variant in variants:
            features = [features_of(item.path, variant)
                        for item in progress(iter(items), len(items), f"{name} ({variant.describe()})")]
            vectors = search_vectors(features, variant, features_of.space)
            result = retrieval(vectors, flat if single else labels, groups, ks=ks)
            try:
                probe = probe_accuracy(vectors, flat, groups) if single else float("nan")
            except ParameterError:  # too few items per label to cross-validate
                probe = float("nan")
            auc = None
            if tag_names and set(vocabulary) <= set(tag_names) and features[0].tags is not None:
                index = [tag_names.index(t) for t in vocabulary]
                predicted = np.stack([f.tags.mean(axis=0)[index] for f in features])
                truth = np.array([[t in x for t in vocabulary] for x in labels], dtype=float)
                auc = tag_auc(predicted, truth)
            rows.append(Row(name, variant, result, probe, auc))
    return rows
