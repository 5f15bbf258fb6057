"""Retrieval and classification metrics over item vectors: pure functions.

Items carry a label (what should be retrieved) and a group (a track, artist or
album). Items of the query's own group never count, neither as hits nor as misses:
without this, excerpts of one track find each other and inflate every figure.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ParameterError


@dataclasses.dataclass(frozen=True)
class Retrieval:
    """Leave-one-out cosine retrieval figures; per_label maps a label to its
    (queries, precision at each k, average precision); per_query holds each query's
    figure (arrays of length ``queries``) under the names of :data:`FIGURES`."""

    ks: tuple[int, ...]
    precision_at: dict[int, float]
    mean_average_precision: float
    nn_accuracy: float
    queries: int
    per_label: dict[str, tuple[int, dict[int, float], float]]
    per_query: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    def figures(self) -> dict[str, float]:
        """The means, by name: P@k..., mAP, 1-NN."""
        return {name: float(values.mean()) for name, values in self.per_query.items()}


def bootstrap_intervals(result: Retrieval, *, level: float = 0.95, samples: int = 2000,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each figure over queries (resampled with replacement)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, result.queries, (samples, result.queries))
    tail = 100 * (1 - level) / 2
    return {name: (float(np.percentile(values[draws].mean(axis=1), tail)),
                   float(np.percentile(values[draws].mean(axis=1), 100 - tail)))
            for name, values in result.per_query.items()}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval(vectors: np.ndarray, labels, groups, *, ks=(5, 10)) -> Retrieval:
    """Rank every other item by cosine similarity to each item in turn.

    Parameters
    ----------
    vectors : np.ndarray [shape=(n, d)]
    labels : sequence of length n
        A label per item, or a frozenset of labels (multi-label: items sharing any
        label are relevant to each other).
    groups : sequence of length n
    ks : precision cut-offs

    A query with no relevant item outside its group is skipped (it could not score).
    """
    vectors = _unit(vectors)
    multi = len(labels) > 0 and isinstance(labels[0], (set, frozenset))
    labels = np.array(labels, dtype=object) if multi else np.asarray(labels)
    groups = np.asarray(groups)
    n = len(vectors)
    if not (len(labels) == len(groups) == n):
        raise ParameterError(f"{n} vectors, {len(labels)} labels and {len(groups)} groups: lengths differ")
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise ParameterError(f"k must be >= 1, got {ks}")
    sims = vectors @ vectors.T
    precision = {k: [] for k in ks}
    aps, nn_hits, used = [], [], []
    for i in range(n):
        keep = groups != groups[i]
        same = np.fromiter((bool(x & labels[i]) for x in labels), bool, n) if multi else labels == labels[i]
        relevant = same & keep
        if not relevant.any():
            continue
        order = np.argsort(-sims[i], kind="stable")
        ranked = relevant[order][keep[order]]  # candidates outside the query's group, best first
        hits = np.cumsum(ranked)
        for k in ks:
            precision[k].append(hits[min(k, len(ranked)) - 1] / k)
        ranks = np.flatnonzero(ranked) + 1
        aps.append(float(np.mean(hits[ranks - 1] / ranks)))
        nn_hits.append(bool(ranked[0]))
        used.append(i)
    if not used:
        raise ParameterError("no item has a relevant item outside its own group")
    used = np.array(used)
    per_query = {**{f"P@{k}": np.array(precision[k]) for k in ks}, "mAP": np.array(aps),
                 "1-NN": np.array(nn_hits, dtype=float)}
    per_label = {}
    query_labels = [set(labels[i]) if multi else {labels[i]} for i in used]
    for label in sorted(set().union(*query_labels), key=str):
        rows = np.array([r for r, q in enumerate(query_labels) if label in q])
        per_label[str(label)] = (len(rows), {k: float(np.mean(np.array(precision[k])[rows])) for k in ks},
                                 float(np.mean(np.array(aps)[rows])))
    return Retrieval(ks, {k: float(np.mean(v)) for k, v in precision.items()}, float(np.mean(aps)),
                     float(np.mean(nn_hits)), len(used), per_label, per_query)


def probe_accuracy(vectors: np.ndarray, labels, groups, *, folds: int = 5, seed: int = 0) -> float:
    """Accuracy of a logistic regression on standardized vectors, cross-validated so
    that no group is split between training and test folds (StratifiedGroupKFold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    groups = np.asarray(groups)
    smallest_class = min(np.unique(labels, return_counts=True)[1])
    folds = min(folds, len(set(groups.tolist())), smallest_class)
    if folds < 2:
        raise ParameterError("the probe needs at least 2 groups and 2 items of every label")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    correct = 0
    for train, test in splitter.split(vectors, labels, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        model.fit(vectors[train], labels[train])
        correct += int((model.predict(vectors[test]) == labels[test]).sum())
    return correct / len(labels)


def tag_auc(probabilities: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Macro ROC-AUC and PR-AUC (average precision) of predicted tag probabilities
    (n, tags) against 0/1 truth (n, tags), over tags with both classes present."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    present = (truth.sum(axis=0) > 0) & (truth.sum(axis=0) < len(truth))
    if not present.any():
        raise ParameterError("no tag has both positive and negative items")
    return (float(roc_auc_score(truth[:, present], probabilities[:, present], average="macro")),
            float(average_precision_score(truth[:, present], probabilities[:, present], average="macro")))
