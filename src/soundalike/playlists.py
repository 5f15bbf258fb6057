"""Playlists from the library: radio that keeps playing, and paths between songs.

Vectors are the library's unit vectors (:attr:`Library.space`), compared by cosine;
"distance" below is cosine distance, ``1 - cos``, in [0, 2].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from .analysis import normalize
from .errors import ParameterError
from .feedback import Taste
from .library import Library, Seed, Track
from .musical import Musical, Transitions
from .recommend import is_duplicate

CANDIDATES = 50  # nearest tracks considered per step, before rules are applied
LEARNING_CANDIDATES = 200  # with a listener's taste, which can lift a track from further away


@dataclasses.dataclass(frozen=True)
class RadioSettings:
    """keep_on: how many of the last tracks played steer the next (Deej-A.I.'s
    lookback); drunk: randomness from 0 (deterministic) to 1 (adventurous);
    artist_gap: an artist may not recur within this many tracks; random_seed:
    makes a drunk radio reproducible."""

    keep_on: int = 3
    drunk: float = 0.0
    artist_gap: int = 3
    random_seed: int | None = None

    def __post_init__(self):
        if self.keep_on < 1:
            raise ParameterError(f"keep_on must be >= 1, got {self.keep_on}")
        if not 0 <= self.drunk <= 1:
            raise ParameterError(f"drunk must be in [0, 1], got {self.drunk}")
        if self.artist_gap < 0:
            raise ParameterError(f"artist_gap must be >= 0, got {self.artist_gap}")


def _drunk_pick(scores: np.ndarray, drunk: float, rng: np.random.Generator) -> int:
    """Index of the chosen candidate: the best when sober; drunk samples from a
    softmax over scores whose temperature grows with ``drunk`` (0.02 per 0.1)."""
    if drunk == 0 or len(scores) == 1:
        return 0
    logits = (scores - scores.max()) / (0.2 * drunk)
    p = np.exp(logits)
    return int(rng.choice(len(scores), p=p / p.sum()))


def next_track(library: Library, seeds: Sequence[Seed], history: Sequence[int], settings: RadioSettings,
               rng: np.random.Generator | None = None, taste: Taste | None = None,
               allowed: np.ndarray | None = None, transitions: Transitions | None = None) -> Track | None:
    """The next track of a radio started from ``seeds`` that has played ``history`` (track ids).

    Stateless, so a web page can ask one track at a time with its current settings.
    The query is the mean unit vector of the last ``keep_on`` items of seeds +
    history (tracks the listener skipped do not steer); tracks already played, seeds,
    their duplicates and artists heard within ``artist_gap`` tracks are skipped. A
    listener's ``taste`` (see :mod:`soundalike.feedback`) moves the query and rescores
    the candidates, and its ``never`` tracks are not played. ``allowed`` (track ids):
    only these are played (a tag's, or those a player has); ``transitions``: what the
    next track's key and tempo must keep from the last one played (or the last seed).
    None when nothing is left.
    """
    history = list(history)
    history_tracks = library.catalogue.tracks(history)
    # everything played so far, seeds first: (track id or None, unit vector, duration)
    played = [(s.track.id if s.track else None, s.vector, s.duration) for s in seeds]
    if history:
        played += list(zip(history, library.vectors(history), (t.duration for t in history_tracks)))
    query = _heading([(i, v) for i, v, _ in played], len(seeds), settings.keep_on, taste)
    recent = [s.artist for s in seeds] + [t.artist for t in history_tracks]
    avoid = {i for i, _, _ in played if i is not None}
    last = library.catalogue.musical(history[-1:]).get(history[-1]) if history else seeds[-1].measures
    return _pick(library, query, avoid, [(v, d) for _, v, d in played], recent, settings, rng, taste,
                 allowed=allowed, transitions=transitions, after=last)


def _heading(played: list[tuple[int | None, np.ndarray]], seeds: int, keep_on: int, taste: Taste | None) -> np.ndarray:
    """Where a radio heads before its taste moves it: the mean unit vector of the last
    ``keep_on`` of ``played`` (track id or None, unit vector), seeds first, leaving out
    what the listener skipped (the seeds when all was skipped)."""
    skipped = set(taste.skipped_ids.tolist()) if taste else set()
    steering = [v for i, v in played if i not in skipped] or [v for _, v in played[:seeds]]
    return normalize(np.mean(steering[-keep_on:], axis=0))


def why_next(library: Library, taste: Taste, seeds: Sequence[Seed], history: Sequence[int], keep_on: int,
             track: Track) -> str | None:
    """Why ``next_track`` picked ``track`` after ``history``, in words (see :meth:`Taste.why`)."""
    played = [(s.track.id if s.track else None, s.vector) for s in seeds]
    played += list(zip(history, library.vectors(list(history))))
    heading = _heading(played, len(seeds), keep_on, taste)
    return taste.why(library, library.vectors([track.id])[0], heading)


def _pick(library: Library, query: np.ndarray, avoid: set[int], played: list[tuple[np.ndarray, float | None]],
          recent_artists: list[str | None], settings: RadioSettings, rng: np.random.Generator | None,
          taste: Taste | None, *, steer: bool = True, allowed: np.ndarray | None = None,
          transitions: Transitions | None = None, after: Musical | None = None) -> Track | None:
    """The track to play next near unit ``query`` (d,), moved by the taste when ``steer``:
    not in ``avoid`` nor ``taste.never``, no duplicate of a ``played`` (vector,
    duration), no artist among the last ``artist_gap`` of ``recent_artists``; ranked
    by cosine plus the taste's bias. Nor a duplicate of a track the taste never plays
    (another copy of a disliked song), nor one that ``transitions`` forbids after a
    track measured ``after`` (None: not measured, which forbids nothing)."""
    rng = rng if rng is not None else np.random.default_rng(settings.random_seed)
    learning = taste is not None and not taste.empty
    if learning and steer:
        query = taste.steer(query)
    if taste is not None and taste.never:
        avoid = avoid | taste.never
        played = played + _with_durations(library, sorted(taste.never))
    artists = {a.casefold() for a in recent_artists[-settings.artist_gap:] if a} if settings.artist_gap else set()
    considered = LEARNING_CANDIDATES if learning else CANDIDATES
    fetch = considered + len(avoid)
    while True:
        found = library.candidates(query, fetch, allowed=allowed)
        follows = _follows(library, transitions, after, found.ids)
        ok = []
        for row, track in enumerate(found.tracks):
            if track.id in avoid or (track.artist and track.artist.casefold() in artists) or not follows[row]:
                continue
            if any(is_duplicate(float(found.unit[row] @ v), track.duration, d) for v, d in played):
                continue
            ok.append(row)
        if ok or len(found.ids) < fetch:
            break
        fetch *= 4
    if not ok:
        return None
    ok = np.array(ok[:considered])
    scores = found.scores[ok] + (taste.bias(found.ids[ok], found.unit[ok]) if learning else 0)
    ranked = np.argsort(-scores, kind="stable")
    pool = ranked[: max(1, round(1 + settings.drunk * (CANDIDATES - 1)))]
    return found.tracks[ok[pool[_drunk_pick(scores[pool], settings.drunk, rng)]]]


def _follows(library: Library, transitions: Transitions | None, before: Musical | None, ids) -> np.ndarray:
    """Whether each track of ``ids`` may follow a track measured ``before`` (None: not
    measured) under ``transitions``, shape (len(ids),) bool."""
    if transitions is None or not transitions.active:
        return np.ones(len(ids), bool)
    measured = library.catalogue.musical(ids)
    return np.array([transitions.allows(before, measured.get(int(i))) for i in ids], bool)


def radio(library: Library, seeds: Sequence[Seed], settings: RadioSettings = RadioSettings(), *,
          length: int | None = None, taste: Taste | None = None, allowed: np.ndarray | None = None,
          transitions: Transitions | None = None) -> Iterator[Track]:
    """Keep playing: yields up to ``length`` tracks (forever if None) until the library
    runs dry; ``taste``, ``allowed``, ``transitions``: see :func:`next_track`."""
    if not seeds:
        raise ParameterError("radio needs at least one seed")
    rng = np.random.default_rng(settings.random_seed)
    history: list[int] = []
    while length is None or len(history) < length:
        track = next_track(library, seeds, history, settings, rng, taste, allowed, transitions)
        if track is None:
            return
        history.append(track.id)
        yield track


def next_for_you(library: Library, taste: Taste, history: Sequence[int], settings: RadioSettings,
                 rng: np.random.Generator | None = None, allowed: np.ndarray | None = None,
                 transitions: Transitions | None = None) -> Track | None:
    """The next track of a "for you" mix that has played ``history``: the taste cluster
    whose turn it is (each cluster's share of the plays follows its share of the likes;
    see :func:`soundalike.feedback.clusters`) lends one of its liked tracks, in turn,
    and the pick sounds like it, away from what was skipped; never a liked, disliked or
    lately skipped track nor one of ``history``; ``allowed``, ``transitions``: see
    :func:`next_track`. ParameterError when nothing is liked."""
    anchor = _anchor(taste, len(history))
    history = list(history)
    history_tracks = library.catalogue.tracks(history)
    played = _with_durations(library, history) + _with_durations(library, taste.liked_ids.tolist())
    avoid = set(history) | set(taste.liked_ids.tolist())
    last = library.catalogue.musical(history[-1:]).get(history[-1]) if history else None
    return _pick(library, anchor, avoid, played, [t.artist for t in history_tracks], settings, rng,
                 taste, steer=False, allowed=allowed, transitions=transitions, after=last)


def _anchor(taste: Taste, played: int) -> np.ndarray:
    """The unit vector (d,) of the liked track a "for you" mix plays near after ``played`` tracks."""
    centres, shares, member = taste.clusters
    if not len(centres):
        raise ParameterError("no liked or long-played tracks yet for this profile; like some first "
                             "(soundalike like TRACK, or the page's heart)")
    turns = _turns(shares, played + 1)
    liked = np.flatnonzero(member == turns[-1])
    liked = liked[np.argsort(-taste.like_weights[liked], kind="stable")]
    return taste.liked[liked[(turns.count(turns[-1]) - 1) % len(liked)]]


def why_for_you(library: Library, taste: Taste, history: Sequence[int], track: Track) -> str | None:
    """Why ``next_for_you`` picked ``track`` after ``history``, in words (see :meth:`Taste.why`)."""
    return taste.why(library, library.vectors([track.id])[0], _anchor(taste, len(history)))


def _with_durations(library: Library, ids: list[int]) -> list[tuple[np.ndarray, float | None]]:
    """(unit vector, duration) of each track of ``ids``, in order (for duplicate checks)."""
    durations = {t.id: t.duration for t in library.catalogue.tracks(ids)}
    return list(zip(library.vectors(ids), (durations[i] for i in ids)))


def _turns(shares: np.ndarray, n: int) -> list[int]:
    """The clusters whose turn the first ``n`` tracks are, when cluster j is to have
    ``shares[j]`` of them: each time the one furthest behind its share (the heaviest on ties)."""
    counts = np.zeros(len(shares))
    turns = []
    for _ in range(n):
        turns.append(int(np.argmin(counts / shares)))
        counts[turns[-1]] += 1
    return turns


def for_you(library: Library, taste: Taste, settings: RadioSettings = RadioSettings(), *,
            length: int | None = None, allowed: np.ndarray | None = None,
            transitions: Transitions | None = None) -> Iterator[Track]:
    """The "for you" mix: yields up to ``length`` tracks (see :func:`next_for_you`)."""
    rng = np.random.default_rng(settings.random_seed)
    history: list[int] = []
    while length is None or len(history) < length:
        track = next_for_you(library, taste, history, settings, rng, allowed, transitions)
        if track is None:
            return
        history.append(track.id)
        yield track


PATH_CANDIDATES = 30  # tracks considered around each point of a path
TARGET_PULL = 1.0  # weight of a track's squared distance to its point, against squared steps


def _slerp(a: np.ndarray, b: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Points on the great circle from unit ``a`` to unit ``b``, shape (len(fractions), d)."""
    omega = np.arccos(np.clip(a @ b, -1.0, 1.0))
    f = fractions[:, None]
    if np.sin(omega) < 1e-6:  # same or opposite points: no unique great circle
        return normalize((1 - f) * a + f * b)
    return (np.sin((1 - f) * omega) * a + np.sin(f * omega) * b) / np.sin(omega)


def _split(total: int, weights: np.ndarray) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders)."""
    weights = np.maximum(weights, 1e-9)
    raw = total * weights / weights.sum()
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _viterbi(start: np.ndarray, end: np.ndarray, pools: list[np.ndarray], vectors: dict[int, np.ndarray],
             targets: np.ndarray, follows=None) -> list[int]:
    """One track per pool minimising the squared step distances from start to end,
    plus ``TARGET_PULL`` times each track's squared distance to its point; only steps
    that ``follows(before ids, after ids)`` (a (after, before) bool matrix; the start and
    end as None) allows, when given: ParameterError when no sequence keeps them."""
    cost = None
    back = []
    prev_vecs, prev_ids = start[None, :], [None]
    for j, pool in enumerate(pools):
        cur = np.stack([vectors[i] for i in pool])
        pull = TARGET_PULL * (1 - cur @ targets[j]) ** 2
        step = (1 - cur @ prev_vecs.T) ** 2 + pull[:, None]  # (cur, prev)
        if follows is not None:
            step[~follows(prev_ids, list(pool))] = np.inf
        prev_ids = list(pool)
        if cost is None:
            total = step[:, 0]
            back.append(np.zeros(len(pool), int))
        else:
            total = step + cost[None, :]
            same = pool[:, None] == pools[j - 1][None, :]
            total[same] = np.inf
            back.append(np.argmin(total, axis=1))
            total = total[np.arange(len(pool)), back[-1]]
        cost, prev_vecs = total, cur
    final = cost + (1 - prev_vecs @ end) ** 2
    if follows is not None:
        final[~follows(prev_ids, [None])[0]] = np.inf
        if not np.isfinite(final).any():
            raise ParameterError("no tracks near this path keep the key and tempo rules given (--harmonic, "
                                 "--bpm-step) from one to the next; loosen them or choose other songs")
    choice = [int(np.argmin(final))]
    for j in range(len(pools) - 1, 0, -1):
        choice.append(int(back[j][choice[-1]]))
    choice.reverse()
    return [int(pools[j][c]) for j, c in enumerate(choice)]


def path(library: Library, waypoints: Sequence[Seed], *, length: int, drunk: float = 0.0,
         max_per_artist: int | None = None, random_seed: int | None = None, allowed: np.ndarray | None = None,
         transitions: Transitions | None = None) -> list[Track]:
    """A playlist of ``length`` tracks from the first waypoint through the others, in order.

    Between consecutive waypoints the playlist follows the arc between their vectors
    in small, even steps: around each of evenly spaced points on the arc the nearest
    tracks are candidates, and the sequence chosen minimises the sum of squared step
    distances (for a fixed total, even steps) plus each track's squared distance to
    its point. No track (or duplicate recording) appears twice;
    ``max_per_artist`` caps each artist; ``drunk`` (0 to 1) moves the points off the
    arc at random, and tracks are pulled towards their points (``random_seed``
    reproduces a journey). Intermediate tracks are
    shared out between the legs in proportion to their lengths. A waypoint may be a
    file outside the library: it is listed with id None and its copies are avoided.
    ``allowed`` (track ids): the tracks between waypoints are among these;
    ``transitions``: what each track's key and tempo must keep from the one before
    (a waypoint outside the library by its measures: see :attr:`Seed.measures`).
    """
    if len(waypoints) < 2:
        raise ParameterError(f"a path needs at least 2 songs, got {len(waypoints)}")
    if length < len(waypoints):
        raise ParameterError(f"length must be at least the number of songs ({len(waypoints)}), got {length}")
    if not 0 <= drunk <= 1:
        raise ParameterError(f"drunk must be in [0, 1], got {drunk}")
    if max_per_artist is not None and max_per_artist < 1:
        raise ParameterError(f"max_per_artist must be >= 1, got {max_per_artist}")
    keys = [w.entry.id if w.track else w.entry.path for w in waypoints]  # a track id, or an outside file
    if len(set(keys)) != len(keys):
        raise ParameterError("a waypoint appears twice in the path")
    rng = np.random.default_rng(random_seed)
    points = np.stack([w.vector for w in waypoints])
    legs = 1 - np.einsum("ij,ij->i", points[:-1], points[1:])
    per_leg = _split(length - len(waypoints), legs)
    used = {w.track.id for w in waypoints if w.track}
    used_vectors = [(p, w.duration) for p, w in zip(points, waypoints)]
    artists: dict[str, int] = {}
    for w in waypoints:
        if w.artist:
            artists[w.artist.casefold()] = artists.get(w.artist.casefold(), 0) + 1
    playlist = [waypoints[0].entry]
    for leg, n in enumerate(per_leg):
        a, b = points[leg], points[leg + 1]
        if n:
            targets = _slerp(a, b, np.arange(1, n + 1) / (n + 1))
            if drunk:
                spread = drunk * np.sqrt(max(legs[leg], 1e-4))
                targets = normalize(targets + spread * rng.standard_normal(targets.shape) / np.sqrt(targets.shape[1]))
            chosen = _leg(library, a, b, targets, used, used_vectors, artists, max_per_artist, allowed,
                          _transition_mask(library, transitions, (waypoints[leg].measures, waypoints[leg + 1].measures)))
            for track in chosen:
                used.add(track.id)
                if track.artist:
                    artists[track.artist.casefold()] = artists.get(track.artist.casefold(), 0) + 1
            playlist += chosen
            used_vectors += [(v, t.duration) for v, t in zip(library.vectors([t.id for t in chosen]), chosen)]
        playlist.append(waypoints[leg + 1].entry)
    return playlist


def _transition_mask(library: Library, transitions: Transitions | None,
                     ends: tuple[Musical | None, Musical | None]):
    """A ``follows`` for :func:`_viterbi` between waypoints measured ``ends`` (None: not
    measured); None when ``transitions`` sets no rule."""
    if transitions is None or not transitions.active:
        return None

    def follows(before: list[int | None], after: list[int | None]) -> np.ndarray:
        measured = library.catalogue.musical([i for i in (*before, *after) if i is not None])
        froms = [ends[0] if i is None else measured.get(i) for i in before]
        # the end waypoint is there whatever it is: unmeasured, it has nothing to keep
        return np.array([[(i is None and ends[1] is None) or transitions.allows(b, ends[1] if i is None else
                                                                                 measured.get(i))
                          for b in froms] for i in after], bool)

    return follows


def _leg(library: Library, a, b, targets, used, used_vectors, artists, max_per_artist, allowed=None,
         follows=None) -> list[Track]:
    """Tracks for the points ``targets`` between ``a`` and ``b`` (see :func:`path`).

    Candidate pools are gathered once; when the best sequence repeats a track (or a
    duplicate) or breaks the artist cap, that track is struck from the later
    position's pool only and the sequence is solved again.
    """
    pools, vectors, tracks = [], {}, {}
    for target in targets:
        found = library.candidates(target, 2 * PATH_CANDIDATES + len(used), allowed=allowed)
        pool = []
        for row, track in enumerate(found.tracks):
            if track.id in used:
                continue
            if max_per_artist and track.artist and artists.get(track.artist.casefold(), 0) >= max_per_artist:
                continue
            if any(is_duplicate(float(found.unit[row] @ v), track.duration, d) for v, d in used_vectors):
                continue
            pool.append(track.id)
            vectors[track.id], tracks[track.id] = found.unit[row], track
            if len(pool) == PATH_CANDIDATES:
                break
        pools.append(pool)
    while all(pools):
        chosen = _viterbi(a, b, [np.array(p) for p in pools], vectors, targets, follows)
        conflict = _first_conflict([tracks[i] for i in chosen], artists, max_per_artist, vectors)
        if conflict is None:
            return [tracks[i] for i in chosen]
        pools[conflict].remove(chosen[conflict])
    if allowed is not None:
        raise ParameterError("too few tracks keep the filters given (--bpm, --key, --energy) for a path this long; "
                             "try a shorter one or wider filters")
    raise ParameterError("the library has too few tracks for a path this long; try a shorter one")


def _first_conflict(chosen: list[Track], artists: dict[str, int], max_per_artist, vectors) -> int | None:
    """Position of the first track that repeats or duplicates an earlier one, or
    exceeds its artist's cap; None when there is none."""
    counts = dict(artists)
    for position, track in enumerate(chosen):
        earlier = chosen[:position]
        if any(s.id == track.id or is_duplicate(float(vectors[s.id] @ vectors[track.id]), s.duration, track.duration)
               for s in earlier):
            return position
        if track.artist and max_per_artist:
            key = track.artist.casefold()
            counts[key] = counts.get(key, 0) + 1
            if counts[key] > max_per_artist:
                return position
    return None


def naive_path(library: Library, waypoints: Sequence[Seed], *, length: int, unused: bool = True) -> list[Track]:
    """The baseline: the nearest track to each evenly spaced point on the straight
    line between waypoints (unused tracks only when ``unused``), for comparison."""
    points = np.stack([w.vector for w in waypoints])
    legs = 1 - np.einsum("ij,ij->i", points[:-1], points[1:])
    per_leg = _split(length - len(waypoints), legs)
    playlist, used = [waypoints[0].entry], {w.track.id for w in waypoints if w.track}
    for leg, n in enumerate(per_leg):
        for f in np.arange(1, n + 1) / (n + 1):
            target = (1 - f) * points[leg] + f * points[leg + 1]
            _, ids = library.nearest(target, len(used) + 1 if unused else 1)
            pick = next(int(i) for i in ids if not unused or int(i) not in used)
            used.add(pick)
            playlist.append(library.catalogue.track(pick))
        playlist.append(waypoints[leg + 1].entry)
    return playlist


def step_distances(library: Library, playlist: Sequence[Track]) -> np.ndarray:
    """Cosine distances between consecutive tracks, shape (len(playlist) - 1,)."""
    v = library.vectors([t.id for t in playlist])
    return 1 - np.einsum("ij,ij->i", v[:-1], v[1:])
