"""Recommendations over a library: similar tracks, with filters and duplicate removal."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import musical
from .errors import ParameterError
from .library import Library, Seed, Track

# The same recording in another file (another encoding or copy): nearly the same
# track vector (in the library's space) and the same length. On the soundtracks
# corpus at the default 10 patches, 40 MP3 re-encodings score at least 0.947 (median
# 0.982) against their originals, and those tracks' nearest other track at most
# 0.904; the one distinct pair of the corpus above 0.93 (0.953) differs in length by
# 3.9 s (bench/bench_library.py duplicates, docs/benchmarks.md).
DUPLICATE_COSINE = 0.93
DUPLICATE_SECONDS = 2.0


def tag_dicts(pairs) -> list[dict]:
    """(tag, probability) pairs as JSON objects, probabilities to 4 decimals."""
    return [{"tag": name, "probability": round(float(p), 4)} for name, p in pairs]


@dataclasses.dataclass(frozen=True)
class Recommendation:
    track: Track
    score: float  # cosine similarity to the seed, in [-1, 1]
    top_tags: list[tuple[str, float]]

    def as_dict(self) -> dict:
        return {**self.track.as_dict(), "score": round(self.score, 5),
                "tags": tag_dicts(self.top_tags)}


def is_duplicate(cosine: float, duration_a: float | None, duration_b: float | None) -> bool:
    """Whether two tracks look like the same recording."""
    if cosine < DUPLICATE_COSINE or duration_a is None or duration_b is None:
        return False
    return abs(duration_a - duration_b) <= DUPLICATE_SECONDS


def similar(library: Library, seed: Seed, *, k: int = 10, tag: str | None = None, min_prob: float = 0.5,
            exclude_artist: bool = False, measures: musical.Filter | None = None) -> list[Recommendation]:
    """The ``k`` tracks that sound most like ``seed``, best first.

    Never returns the seed itself nor a duplicate of it (nor two duplicates of one
    recording); ``tag`` keeps tracks whose predicted probability of it is at least
    ``min_prob`` or whose genre tag is it; ``measures`` keeps tracks by tempo, key and
    energy; ``exclude_artist`` skips the seed's artist.
    """
    if k < 1:
        raise ParameterError(f"k must be >= 1, got {k}")
    allowed = library.allowed(tag=tag, min_prob=min_prob, measures=measures)
    seed_artist = (seed.artist or "").casefold() if exclude_artist else ""
    fetch = 2 * k + 10
    while True:
        found = library.candidates(seed.vector, fetch, allowed=allowed)
        kept: list[int] = []  # rows of found kept
        for row, (score, track) in enumerate(zip(found.scores, found.tracks)):
            if seed.track is not None and track.id == seed.track.id:
                continue
            if seed_artist and (track.artist or "").casefold() == seed_artist:
                continue
            if is_duplicate(float(score), seed.duration, track.duration):
                continue
            if any(is_duplicate(float(found.unit[row] @ found.unit[other]), track.duration,
                                found.tracks[other].duration) for other in kept):
                continue
            kept.append(row)
            if len(kept) == k:
                break
        if len(kept) == k or len(found.ids) < fetch:
            break
        fetch *= 4
    tags = library.top_tags([found.tracks[row].id for row in kept])
    return [Recommendation(found.tracks[row], float(found.scores[row]), tags[found.tracks[row].id]) for row in kept]


def rank_by_tag(library: Library, tag: str, *, k: int = 20, allowed: np.ndarray | None = None,
                min_prob: float = 0.0, offset: int = 0) -> list[Recommendation]:
    """Tracks (only ids in ``allowed`` when given) whose predicted probability of ``tag``
    is at least ``min_prob``, most probable first (score = that probability): ``k`` of
    them from the ``offset``-th on."""
    ids, probs = library.tag_scores(tag)
    keep = probs >= min_prob
    if allowed is not None:
        keep &= np.isin(ids, allowed)
    ids, probs = ids[keep], probs[keep]
    order = np.argsort(-probs, kind="stable")[offset : offset + k]
    chosen = [int(ids[i]) for i in order]
    tracks = {t.id: t for t in library.catalogue.tracks(chosen)}
    tags = library.top_tags(chosen)
    return [Recommendation(tracks[i], float(probs[j]), tags[i]) for i, j in zip(chosen, order)]
