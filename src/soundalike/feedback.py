"""What radio learns from listening: a taste built from a profile's events.

A :class:`Taste` holds the tracks a listener was drawn to (likes, long plays) and
pushed away from (skips, dislikes), as unit vectors in the library's space, each
weighted by its kind and by how recent it is (halving every ``half_life`` seconds).
Radio uses it (see :func:`soundalike.playlists.next_track`): its query moves toward
what was liked and away from what was skipped, and each candidate's score gains from
its closeness to liked tracks, loses from its closeness to skipped ones, and gains
along the direction from the skipped tracks' mean to the liked ones' (Rocchio's
relevance feedback: J. J. Rocchio, "Relevance feedback in information retrieval",
1971). Disliked tracks and tracks skipped lately are never played again. The weights
were chosen on simulated listeners of two corpora (bench/bench_feedback.py).

"For you" (:func:`soundalike.playlists.for_you`) plays from the listener's loves
without a seed: the liked tracks are grouped into a few taste clusters
(:func:`clusters`), and the mix takes turns between them in proportion to their
weights, instead of averaging one person's several loves into one muddy centre.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence

import numpy as np

from .analysis import normalize
from .library import Library
from .library import events as stored
from .library.events import DEFAULT_PROFILE, Event

# weight of each kind of event (a play counts when it reached LONG_PLAY of the track)
WEIGHTS = {"like": 1.0, "play": 0.5, "skip": 1.0, "dislike": 2.0}
LONG_PLAY = 0.8  # share of a track that makes a play a sign of liking
SESSION_HALF_LIFE = 30 * 60.0  # seconds: radio steers by what happened within the last hour or so
PROFILE_HALF_LIFE = 30 * 86400.0  # seconds: "for you" remembers months
SKIP_MEMORY = 3 * 3600.0  # seconds a skipped track is not played again
MOST_EVENTS = 2000  # the most recent events a taste learns from
ATTRACT = 0.1  # how far the query moves toward the liked tracks' weighted mean, per unit of weight
REPEL = 0.5  # and away from the skipped tracks'
MOST_PULL = 3.0  # the most weight either sign moves the query by
LIKE_BONUS = 0.3  # score bonus of a candidate at a liked track (kernel 1), fading with distance
SKIP_PENALTY = 0.6  # score penalty of a candidate at a skipped track
CONTRAST = 0.3  # score bonus along the direction from the skipped tracks' mean to the liked ones' (Rocchio)
KERNEL_WIDTH = 0.15  # cosine distance over which closeness to a liked or skipped track fades by 1/e
NEAR = 0.1  # a liked track is named as a reason when a pick's closeness to it (the kernel) is at least this
AWAY = 0.01  # a skipped one when it is at least this close (same neighbourhood, cosine >= 0.31) and weighty
MAX_CLUSTERS = 4  # taste clusters of "for you"
PER_CLUSTER = 3  # liked tracks per cluster at least


@dataclasses.dataclass(frozen=True)
class Taste:
    """liked: (n, d) unit vectors and like_weights (n,); skipped: (m, d) and
    skip_weights (m,) (skips and dislikes); liked_ids / skipped_ids align with them;
    disliked: ids whose latest verdict is a dislike; never: ids radio must not play
    (disliked, or skipped within ``SKIP_MEMORY``)."""

    liked_ids: np.ndarray
    liked: np.ndarray
    like_weights: np.ndarray
    skipped_ids: np.ndarray
    skipped: np.ndarray
    skip_weights: np.ndarray
    disliked: frozenset[int]
    never: frozenset[int]

    @functools.cached_property
    def clusters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`clusters` of this taste, computed once (every pick of a mix asks)."""
        return clusters(self)

    @property
    def empty(self) -> bool:
        return not len(self.liked_ids) and not len(self.skipped_ids)

    def steer(self, query: np.ndarray) -> np.ndarray:
        """The unit ``query`` (d,) moved toward liked and away from skipped tracks."""
        moved = query.copy()
        for vectors, weights, pull in ((self.liked, self.like_weights, ATTRACT),
                                       (self.skipped, self.skip_weights, -REPEL)):
            if len(weights):
                moved += pull * min(float(weights.sum()), MOST_PULL) * normalize(weights @ vectors)
        return normalize(moved)

    def bias(self, ids: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """What candidates ``ids`` (k,) of unit vectors (k, d) gain from closeness to liked
        tracks and lose from closeness to skipped ones, (k,): the largest weighted
        kernel of each sign (a liked track does not lift itself)."""
        gain = np.zeros(len(unit), np.float32)
        for known, vectors, weights, scale in ((self.liked_ids, self.liked, self.like_weights, LIKE_BONUS),
                                               (self.skipped_ids, self.skipped, self.skip_weights, -SKIP_PENALTY)):
            if len(weights):
                closeness = _closeness(unit, vectors, weights)
                closeness[ids[:, None] == known[None, :]] = 0
                gain += scale * closeness.max(axis=1)
        if CONTRAST and len(self.like_weights) and len(self.skip_weights):
            direction = normalize(self.like_weights @ self.liked / self.like_weights.sum()
                                  - self.skip_weights @ self.skipped / self.skip_weights.sum())
            gain += CONTRAST * (unit @ direction)
        return gain

    def why(self, library: Library, vector: np.ndarray, heading: np.ndarray) -> str | None:
        """Why a track of unit ``vector`` was picked when the radio was heading for unit
        ``heading`` (d,), in words: the liked track it is nearest to (when within
        ``NEAR``), and the skipped or disliked track that weighed most near the heading
        (within ``AWAY``) when the pick is further from it; None if neither."""
        parts = []
        if len(self.liked_ids):
            closeness = _closeness(vector[None, :], self.liked, self.like_weights)[0]
            best = int(np.argmax(closeness))
            if closeness[best] >= NEAR:
                parts.append(f"near {_label(library, self.liked_ids[best])} you liked")
        if len(self.skipped_ids):
            ahead, picked = _closeness(np.stack([heading, vector]), self.skipped, self.skip_weights)
            best = int(np.argmax(ahead))
            if ahead[best] >= AWAY and picked[best] < ahead[best]:
                track_id = int(self.skipped_ids[best])
                verdict = "disliked" if track_id in self.disliked else "skipped"
                parts.append(f"away from {_label(library, track_id)} you {verdict}")
        return "; ".join(parts) or None


def _closeness(unit: np.ndarray, vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """How close each of ``unit`` (k, d) is to each of ``vectors`` (n, d), (k, n): a kernel
    of the cosine distance, 1 at the track itself, times the weight (at most 1)."""
    return np.exp((unit @ vectors.T - 1) / KERNEL_WIDTH) * np.minimum(weights, 1)


def _label(library: Library, track_id) -> str:
    track = library.catalogue.track(int(track_id))
    return f"“{track.label}”" if track else f"track {track_id}"


def taste(library: Library, profile: str = DEFAULT_PROFILE, *, half_life: float = SESSION_HALF_LIFE,
          now: float | None = None, extra: Sequence[Event] = ()) -> Taste:
    """The taste of ``profile`` from its latest ``MOST_EVENTS`` stored events (and
    ``extra`` ones), weighted by kind and halving every ``half_life`` seconds before
    ``now``; every track it ever disliked (and did not like since) is never played."""
    latest = stored.events(library.catalogue, profile, latest=MOST_EVENTS)
    return taste_of(library, [*latest, *extra], half_life=half_life, now=now,
                    dislikes=stored.disliked(library.catalogue, profile))


def taste_of(library: Library, history: Sequence[Event], *, half_life: float = SESSION_HALF_LIFE,
             now: float | None = None, dislikes: set[int] = frozenset()) -> Taste:
    """A :class:`Taste` from events, oldest first (see :func:`taste`), and the ids of
    tracks disliked before them; events of tracks no longer in the library are left out."""
    now = time.time() if now is None else now
    durations = {}
    ids = {e.track_id for e in history if e.track_id is not None}
    for track in library.catalogue.tracks(sorted(ids)):
        durations[track.id] = track.duration
    signs: dict[str, dict[int, float]] = {"liked": {}, "skipped": {}}  # track id -> summed weight, latest last
    disliked, skipped_lately = set(dislikes), set()
    for e in history[-MOST_EVENTS:]:
        if e.track_id is None or e.track_id not in durations:
            continue
        if e.kind in ("like", "dislike"):  # the latest verdict holds
            (disliked.add if e.kind == "dislike" else disliked.discard)(e.track_id)
        if e.kind == "skip" and now - e.at <= SKIP_MEMORY:
            skipped_lately.add(e.track_id)
        sign = "skipped" if e.kind in ("skip", "dislike") else "liked"
        if sign == "skipped" or e.kind == "like" or _long_play(e, durations[e.track_id]):
            weights = signs[sign]
            decay = 0.5 ** (max(now - e.at, 0.0) / half_life)
            weights[e.track_id] = weights.pop(e.track_id, 0.0) + WEIGHTS[e.kind] * decay
    for track_id in disliked:  # a dislike takes back earlier likes
        signs["liked"].pop(track_id, None)
    arrays = {}
    for sign, weights in signs.items():
        ids = list(weights)
        arrays[sign] = (np.array(ids, np.int64), library.vectors(ids), np.array(list(weights.values()), np.float32))
    return Taste(*arrays["liked"], *arrays["skipped"], frozenset(disliked), frozenset(disliked | skipped_lately))


def _long_play(event: Event, duration: float | None) -> bool:
    return (event.kind == "play" and event.seconds is not None and duration is not None
            and event.seconds >= LONG_PLAY * duration)


def clusters(taste: Taste, *, most: int = MAX_CLUSTERS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Taste clusters of the liked tracks: centres (c, d) unit vectors, their shares of
    the like weight (c,), heaviest first, and each liked track's cluster (n,).
    Weighted spherical k-means with farthest-point starts (deterministic),
    c = min(most, liked tracks / PER_CLUSTER)."""
    vectors, weights = taste.liked, taste.like_weights
    if not len(weights):
        return np.zeros((0, taste.liked.shape[1]), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
    c = max(1, min(most, len(weights) // PER_CLUSTER))
    centres = [vectors[int(np.argmax(weights))]]
    while len(centres) < c:
        nearest = (vectors @ np.stack(centres).T).max(axis=1)
        centres.append(vectors[int(np.argmin(nearest))])
    centres = np.stack(centres)
    for _ in range(20):
        member = np.argmax(vectors @ centres.T, axis=1)
        moved = np.stack([normalize(weights[member == j] @ vectors[member == j]) if np.any(member == j)
                          else centres[j] for j in range(c)])
        if np.allclose(moved, centres):
            break
        centres = moved
    member = np.argmax(vectors @ centres.T, axis=1)
    shares = np.array([weights[member == j].sum() for j in range(c)], np.float32)
    order = np.argsort(-shares, kind="stable")
    order = order[shares[order] > 0]  # a centre no liked track is nearest to (identical likes) is no cluster
    rank = np.full(c, -1)
    rank[order] = np.arange(len(order))
    return centres[order], shares[order] / shares.sum(), rank[member]
