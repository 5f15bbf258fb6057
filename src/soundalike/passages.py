"""Search by passage: the tracks whose passages sound most like a span of a track or file.

A passage (``start`` to ``end`` seconds of a library track or of any file) becomes
patch vectors: a library track's stored patches when they cover the span as densely as
patches side by side would (a track analysed in full), otherwise the span analysed on
the fly, in patches ``QUERY_HOP_SECONDS`` apart (overlapping, so that one of them lines
up with a stored patch of the track it is in within half that). Each query patch asks
the patch index (:mod:`soundalike.library.patches`) for its nearest patches; their tracks
are scored again exactly, against all their stored patches: a track's score is its best
cosine between a query patch and one of its patches, and the time of that match, less
the query patch's offset in the passage, is where the passage begins in the track.

Patch vectors say which tracks sound alike, not where: a track's sections sound alike
to them. So the ``LOCALISED`` best tracks are then localised by their audio: the
passage's log-mel spectrogram is slid along the track's (the whole track, or around its
best patch pairs when it is long) and, where the normalised correlation peaks at
``ALIGNED`` or more, that is the time (to 12 ms: frames 46 ms apart, the passage's
taken at ``ALIGN_SHIFTS`` offsets within a frame, so that one lines up): the passage's
own audio, or a repeat of it, found again. The first track so localised comes first
(nothing sounds more like the passage than the passage), marked ``own_audio`` (its
patch score may be below the next one's); the others keep their patches' times.

The filters of :func:`soundalike.recommend.similar` (tag, tempo, key, energy, the
query's artist) apply before all this: a track they drop is never scored, localised
nor returned.

A library track never finds itself nor another copy of its recording
(:func:`soundalike.recommend.is_duplicate`): the passage's own place is no news. A file
from outside the library may find the track it was cut from, at the time it was cut
from: that answers "where is this from?". Two copies of one recording are listed once.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import analysis, audio, musical
from .errors import MediaError, ParameterError
from .library import Library, Seed, Track
from .recommend import is_duplicate

log = logging.getLogger(__name__)

QUERY_HOP_SECONDS = 1.0  # patches of a passage analysed on the fly start this far apart
MAX_QUERY_PATCHES = 60  # a longer passage is analysed in patches further apart (side by side at most)
NEIGHBOURS = 64  # nearest patches fetched from the index per query patch
MAX_NEIGHBOURS = 4096  # at most, when filters drop the nearest ones' tracks
MIN_CANDIDATES = 50  # tracks scored exactly, at least (and 5 per result asked for)
ANCHORS = 20  # best patch pairs of a track whose places are weighed by how many others agree
ALIGNMENT = 0.75  # seconds within which two patch pairs place a passage at the same time
EDGE = 0.1  # seconds a stored patch may stick out of the passage and still count as inside it
LOCALISED = 5  # best tracks localised by their audio, until one is (3 missed 4 of 100 planted passages)
ALIGN_RATE = 44_100  # Hz the audio is aligned at (most files' own rate: no resampling)
ALIGN_FFT = ALIGN_HOP = 2048  # samples: frames of 46 ms side by side
ALIGN_SHIFTS = 4  # the passage's frames taken at this many offsets within a frame (12 ms apart)
ALIGN_BANDS, ALIGN_FMIN, ALIGN_FMAX = 40, 60.0, 8000.0  # mel bands (Hz) of the aligned spectrograms
ALIGN_FLOOR_DB = 80.0  # spectrogram floor below its peak
ALIGN_FLAT_DB = 0.01  # rms (dB) about its band means under which a spectrogram span is flat (silence): scores 0
ALIGNED = 0.5  # correlation from which the audio's time is taken: a clip with noise 20 dB down as MP3 scores
# ~0.9 (0.58 at worst seen) at its source, another track's best lag mostly < 0.4 (bench/bench_passages.py)
MAX_ALIGNED_SECONDS = 60.0  # a longer passage keeps the patches' times
SCAN_SECONDS = 600.0  # a track up to this long is searched whole; a longer one around its best patch pairs
AROUND = 15.0  # seconds searched either side of a best patch pair's place in a long track
PLACES = 3  # best patch pairs' places searched in a long track
TIME = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str) -> float:
    """Seconds from "83", "83.5", "1:23" or "1:02:03.5"; ParameterError otherwise."""
    found = TIME.match(text.strip())
    if not found:
        raise ParameterError(f"{text!r} is not a time: give seconds (83.5) or minutes:seconds (1:23.5)")
    hours, minutes, seconds = found.groups()
    if minutes is not None and float(seconds) >= 60:
        raise ParameterError(f"{text!r} is not a time: the seconds after a colon must be under 60")
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)


def format_time(seconds: float, *, tenths: bool = False) -> str:
    """m:ss (h:mm:ss from an hour), to the tenth of a second when not whole or ``tenths``:
    83.5 -> "1:23.5"; 83 -> "1:23" ("1:23.0" with ``tenths``, for columns of times)."""
    whole, tenth = divmod(round(seconds * 10), 10)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return text + (f".{tenth}" if tenth or tenths else "")


@dataclasses.dataclass(frozen=True)
class Passage:
    """A span of a track or file as patch vectors.

    name : the file's name, for messages; path : the file; track : the library track,
    None for a file from outside; start, end : the span, seconds; patches : (P, d) raw
    patch embeddings; starts : (P,) their start times in the file, seconds; artist :
    the track's or file's artist tag (None when it has none)
    """

    name: str
    path: str
    track: Track | None
    start: float
    end: float
    patches: np.ndarray
    starts: np.ndarray
    artist: str | None = None


@dataclasses.dataclass(frozen=True)
class PassageMatch:
    """A track with a passage like the query's: ``score`` the cosine of the best patch pair,
    ``start`` where the passage begins in the track (seconds), ``query_start`` where its
    best-matching patch starts in the query file, ``own_audio`` whether the passage's
    own audio (or a repeat of it) was found there, which puts it first whatever its score."""

    track: Track
    score: float
    start: float
    query_start: float
    own_audio: bool = False

    def as_dict(self) -> dict:
        return {**self.track.as_dict(), "score": round(self.score, 5), "start": round(self.start, 2),
                "query_start": round(self.query_start, 2), "own_audio": self.own_audio}


def span(name: str, duration: float | None, start: float | None, end: float | None, patch: float) -> tuple[float, float]:
    """The span (start, end) seconds of a file ``name`` of ``duration`` seconds that a
    passage covers: the whole file by default, an end past the file's end cut to it, and
    one shorter than a ``patch`` widened to one patch around its middle. ParameterError
    when it ends before it starts or starts after the file's end."""
    start = 0.0 if start is None else float(start)
    known = duration is not None and duration > 0
    end = (duration if known else math.inf) if end is None else float(end)
    if start < 0 or end < 0:
        raise ParameterError(f"{name}: a passage cannot start or end before 0:00")
    if known and start >= duration:
        raise ParameterError(f"{name}: the passage starts at {format_time(start)}, after the track's end "
                             f"({format_time(duration)})")
    if end <= start:
        raise ParameterError(f"{name}: the passage ends at {format_time(end)}, not after it starts "
                             f"({format_time(start)})")
    if known:
        end = min(end, duration)
    if end - start < patch:
        middle = (start + end) / 2
        start = max(0.0, middle - patch / 2)
        end = start + patch if not known else min(duration, start + patch)
        start = max(0.0, end - patch)
    return start, end


def query_hop(start: float, end: float, patch: float) -> float:
    """Seconds between the patches of a passage analysed on the fly."""
    return min(patch, max(QUERY_HOP_SECONDS, (end - start) / MAX_QUERY_PATCHES))


def analyse_span(library: Library, path: str | Path, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw patches (P, d) and their starts (P,) of ``start`` to ``end`` seconds of a file,
    analysed with the library's model in overlapping patches (:func:`query_hop`)."""
    model = library.model
    window = model.window
    hop = round(query_hop(start, end, window.length / window.sample_rate) * window.sample_rate)
    result = analysis.analyze(path, model, start=start, duration=end - start, hop=hop)
    return result.embeddings, result.starts


def passage(library: Library, query: str | Seed, start: float | None = None, end: float | None = None, *,
            note: Callable[[str], None] | None = None) -> Passage:
    """The passage ``start`` to ``end`` seconds (default: all) of a library track, or of an
    audio file (``query``: as :meth:`Library.resolve` takes it, or a seed). Only the
    span of a file outside the library is analysed."""
    if isinstance(query, str):
        candidate = Path(query).expanduser()
        if candidate.is_file() and library.catalogue.track_by_path(str(candidate.resolve())) is None:
            return outside_passage(library, candidate, start, end)
        query = library.resolve(query, note=note)
    seed = query
    track = seed.track
    if track is None:
        return outside_passage(library, Path(seed.path), start, end)
    window = library.model.window
    patch = window.length / window.sample_rate
    name = Path(track.path).name
    start, end = span(name, track.duration, start, end, patch)
    inside = (seed.starts >= start - EDGE) & (seed.starts + patch <= end + EDGE)
    if inside.sum() >= max(1, math.floor((end - start - patch) / patch + EDGE)):  # as many as side by side
        return Passage(name, track.path, track, start, end, seed.patches[inside], seed.starts[inside], track.artist)
    patches, starts = analyse_span(library, track.path, start, end)
    return Passage(name, track.path, track, start, end, patches, starts, track.artist)


def outside_passage(library: Library, path: Path, start: float | None, end: float | None, *,
                    name: str | None = None) -> Passage:
    """A span of a file that is not in the library (``name``: what to call it, default its
    file name), analysed."""
    window = library.model.window
    name = name or path.name
    metadata = audio.read_metadata(path)
    start, end = span(name, metadata.duration, start, end, window.length / window.sample_rate)
    patches, starts = analyse_span(library, path, start, end)
    return Passage(name, str(path), None, start, end, patches, starts, metadata.artist)


def similar_passages(library: Library, query: Passage, *, k: int = 10, tag: str | None = None,
                     min_prob: float = 0.5, exclude_artist: bool = False,
                     measures: musical.Filter | None = None) -> list[PassageMatch]:
    """The ``k`` tracks with the passages most like ``query``, best first (see the module),
    among those the filters keep: as :func:`soundalike.recommend.similar` takes them."""
    if k < 1:
        raise ParameterError(f"k must be >= 1, got {k}")
    allowed = library.allowed(tag=tag, min_prob=min_prob, measures=measures)
    index = library.patch_index
    if not len(index) or not len(query.patches):
        return []
    queries = index.space.project(query.patches)
    artist = (query.artist or "").casefold() if exclude_artist else ""
    candidates = _candidates(library, queries, query, max(MIN_CANDIDATES, 5 * k), allowed, artist)
    matched = [_best_match(library, index.space, queries, query, t) for t in candidates]
    matched = [m for m in matched if m is not None]
    matched.sort(key=lambda m: -m[0].score)
    found = _distinct(library, query, [m for m, _ in matched], k)
    places = {m.track.id: p for m, p in matched}
    wanted = passage_frames(query) if found else None
    if wanted is None:
        return found
    for i, match in enumerate(found[:LOCALISED]):
        localised = localise(match, places[match.track.id], wanted)
        if localised.own_audio:  # the passage's own audio: first; the others only sound like it
            return [localised, *found[:i], *found[i + 1:]]
    return found


def _candidates(library: Library, queries: np.ndarray, query: Passage, count: int, allowed: np.ndarray | None,
                artist: str) -> list[int]:
    """Ids of up to ``count`` tracks, best first, whose patches are nearest the query
    patches (unit (Q, d) of the patch index's space): not the query's track, only ids in
    ``allowed`` (None: any) and none by ``artist`` (casefolded; "": any). When ``allowed``
    holds ``count`` tracks or fewer, all of them (to be scored exactly); otherwise a
    filtered search fetches more neighbours until it has ``count`` (``MAX_NEIGHBOURS`` a
    query patch at most)."""
    index = library.patch_index
    own = query.track.id if query.track is not None else None
    everyone = allowed is not None and len(allowed) <= count
    fetch = NEIGHBOURS
    while True:
        ranked = [t for t in (allowed.tolist() if everyone else _nearest_tracks(index, queries, fetch)) if t != own]
        if allowed is not None:
            ranked = [t for t, kept in zip(ranked, np.isin(ranked, allowed).tolist()) if kept]
        if artist:
            ranked = [t.id for t in library.catalogue.tracks(ranked) if (t.artist or "").casefold() != artist]
        if (everyone or len(ranked) >= count or (allowed is None and not artist)
                or fetch >= min(len(index), MAX_NEIGHBOURS)):
            return ranked[:count]
        fetch = min(4 * fetch, MAX_NEIGHBOURS)


def _nearest_tracks(index, queries: np.ndarray, fetch: int) -> list[int]:
    """Ids of the tracks of the ``fetch`` nearest patches to each query (Q, d), by their best score."""
    scores, tracks, _ = index.search(queries, fetch)
    best: dict[int, float] = {}
    for score, track_id in zip(scores.ravel().tolist(), tracks.ravel().tolist()):
        if track_id >= 0 and score > best.get(track_id, -math.inf):
            best[track_id] = score
    return sorted(best, key=best.get, reverse=True)


def _best_match(library: Library, space, queries: np.ndarray, query: Passage,
                track_id: int) -> tuple[PassageMatch, list[float]] | None:
    """The best pair of a query patch and one of the track's stored patches, and the places
    (seconds, best first) its best patch pairs put the passage at."""
    patches, starts = library.catalogue.patches(track_id)
    track = library.catalogue.track(track_id)
    if track is None or not len(patches):
        return None
    cos = queries @ space.project(patches).T  # (Q, P)
    begins = starts[None, :] - (query.starts[:, None] - query.start)  # (Q, P) where each pair puts the passage
    i, j = np.unravel_index(int(np.argmax(cos)), cos.shape)
    places = [max(0.0, p) for p in _places(cos, begins)]
    return PassageMatch(track, float(cos[i, j]), places[0], float(query.starts[i])), places


def _places(cos: np.ndarray, begins: np.ndarray) -> list[float]:
    """Where the passage may begin in a track, best first: the places its ``ANCHORS`` best
    patch pairs (cosines ``cos`` (Q, P), places ``begins`` (Q, P) seconds) say, ranked by
    how much of the track agrees (the sum over its patches of their best cosine with a
    query patch placing the passage within ``ALIGNMENT`` seconds of it): a repeated riff
    matched by one patch does not win over the whole passage matched by several."""
    support = {}
    for flat in np.argsort(-cos, axis=None)[:ANCHORS]:
        at = float(begins.flat[flat])
        agreeing = np.where(np.abs(begins - at) <= ALIGNMENT, cos, -math.inf).max(axis=0)
        support.setdefault(at, float(agreeing[np.isfinite(agreeing)].sum()))
    return sorted(support, key=lambda at: -support[at])


def passage_frames(query: Passage) -> np.ndarray | None:
    """The passage's spectrograms to align (ALIGN_SHIFTS, F, T): :func:`align_frames` of its
    audio from ``i * ALIGN_HOP / ALIGN_SHIFTS`` samples on for each i; None when it is
    longer than ``MAX_ALIGNED_SECONDS`` or its file cannot be read."""
    if query.end - query.start > MAX_ALIGNED_SECONDS:
        return None
    try:
        y = audio.load(query.path, sr=ALIGN_RATE, start=query.start, duration=query.end - query.start)
    except MediaError as exc:
        log.info("%s: passage not localised by its audio (%s)", query.path, exc)
        return None
    shifted = [align_frames(y[i * ALIGN_HOP // ALIGN_SHIFTS:]) for i in range(ALIGN_SHIFTS)]
    frames = min(f.shape[1] for f in shifted)
    return np.stack([f[:, :frames] for f in shifted])


def localise(match: PassageMatch, places: list[float], wanted: np.ndarray) -> PassageMatch:
    """``match`` at the time where its track's audio best aligns with the passage's
    spectrograms ``wanted`` (:func:`passage_frames`) (see the module) when that
    correlation reaches ``ALIGNED``, marked ``own_audio``; as it was otherwise, or when
    the track's file cannot be read. ``places``: where its patches put the passage, best first (searched around
    in a long track)."""
    length = wanted.shape[2] * ALIGN_HOP / ALIGN_RATE + 1  # seconds, a little more than the passage
    spans: list[tuple[float, float | None]] = []
    if (match.track.duration or math.inf) <= SCAN_SECONDS:
        spans = [(0.0, None)]
    else:  # around the best places, merged where they overlap
        for at in sorted(places[:PLACES]):
            begin = max(0.0, at - AROUND)
            if spans and begin <= spans[-1][0] + spans[-1][1]:
                spans[-1] = (spans[-1][0], at + length + AROUND - spans[-1][0])
            else:
                spans.append((begin, length + 2 * AROUND))
    best, where = -math.inf, match.start
    try:
        for begin, seconds in spans:
            found = align_frames(audio.load(match.track.path, sr=ALIGN_RATE, start=begin, duration=seconds))
            correlation = alignment(wanted, found)  # (ALIGN_SHIFTS, lags)
            if correlation.size and correlation.max() > best:
                shift, lag = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
                best = float(correlation[shift, lag])
                where = begin + (lag * ALIGN_HOP - shift * ALIGN_HOP // ALIGN_SHIFTS) / ALIGN_RATE
    except MediaError as exc:
        log.info("%s: not localised by its audio (%s)", match.track.path, exc)
        return match
    return dataclasses.replace(match, start=max(0.0, where), own_audio=True) if best >= ALIGNED else match


@functools.cache
def _mel_bank() -> np.ndarray:
    """Triangular filters (ALIGN_BANDS, ALIGN_FFT/2+1), evenly spaced on the mel scale."""
    mel = np.linspace(*(2595 * np.log10(1 + np.array([ALIGN_FMIN, ALIGN_FMAX]) / 700)), ALIGN_BANDS + 2)
    edges = 700 * (10 ** (mel / 2595) - 1)  # Hz
    bins = np.fft.rfftfreq(ALIGN_FFT, 1 / ALIGN_RATE)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((bins - low) / (centre - low), (high - bins) / (high - centre))).astype(np.float32)


def align_frames(y: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Log-mel spectrogram (ALIGN_BANDS, frames) in dB of a signal at ALIGN_RATE, frames
    ALIGN_HOP apart, floored ALIGN_FLOOR_DB below its peak (computed ``chunk`` frames at a time)."""
    count = max(0, (len(y) - ALIGN_FFT) // ALIGN_HOP + 1)
    window = np.hanning(ALIGN_FFT).astype(np.float32)
    bank = _mel_bank().T
    parts = [np.zeros((0, ALIGN_BANDS), np.float32)]
    for first in range(0, count, chunk):
        rows = np.arange(first, min(count, first + chunk))[:, None] * ALIGN_HOP + np.arange(ALIGN_FFT)
        parts.append((np.abs(np.fft.rfft(y[rows] * window, axis=1)) ** 2).astype(np.float32) @ bank)
    db = 10 * np.log10(np.maximum(np.concatenate(parts).T, 1e-10))
    return np.maximum(db, db.max() - ALIGN_FLOOR_DB) if db.size else db


def alignment(query: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Normalised correlation (..., lags) of spectrograms ``query`` (..., F, T) with each
    span of ``track`` (F, N) they fit on (lag 0 to N - T frames), each band's mean
    removed: 1 for the same sound at another level, near 0 for unrelated sound, within
    [-1, 1]; 0 where the span or the query is flat (its rms about the band means under
    ``ALIGN_FLAT_DB``: silence, whose correlation is rounding noise); no lags when N < T."""
    length, frames = query.shape[-1], track.shape[1]
    if frames < length or not length:
        return np.zeros((*query.shape[:-2], 0))
    flat = ALIGN_FLAT_DB**2 * track.shape[0] * length  # squares about the band means of a flat span
    centred = query - query.mean(axis=-1, keepdims=True, dtype=np.float64)
    track = track - track.mean(axis=1, keepdims=True, dtype=np.float64)  # the same correlation, smaller sums
    size = 1 << int(frames + length - 1).bit_length()  # FFT length: no circular wrap
    spectra = np.fft.rfft(track, size, axis=1) * np.conj(np.fft.rfft(centred, size, axis=-1))
    products = np.fft.irfft(spectra.sum(axis=-2), size)[..., : frames - length + 1]  # summed over bands
    zero = np.zeros((track.shape[0], 1))
    sums = np.concatenate([zero, np.cumsum(track, axis=1)], axis=1)
    squares = np.concatenate([zero, np.cumsum(np.square(track), axis=1)], axis=1)
    total, total_sq = sums[:, length:] - sums[:, :-length], squares[:, length:] - squares[:, :-length]
    spread = (total_sq - total**2 / length).sum(axis=0)  # (lags,) each span's squares about its band means
    norms = (centred**2).sum(axis=(-2, -1))[..., None]  # (..., 1)
    valid = (spread > flat) & (norms > flat)
    correlation = products / np.sqrt(np.where(valid, spread * norms, 1.0))
    return np.where(valid, np.clip(correlation, -1.0, 1.0), 0.0)


def _distinct(library: Library, query: Passage, found: list[PassageMatch], k: int) -> list[PassageMatch]:
    """``found`` without copies of the query's track and later copies of one recording, ``k`` at most."""
    ids = [m.track.id for m in found]
    if query.track is not None:
        ids.append(query.track.id)
    unit = dict(zip(ids, library.vectors(ids))) if ids else {}
    kept: list[PassageMatch] = []
    for match in found:
        if query.track is not None and is_duplicate(float(unit[match.track.id] @ unit[query.track.id]),
                                                    match.track.duration, query.track.duration):
            continue
        if any(is_duplicate(float(unit[match.track.id] @ unit[other.track.id]), match.track.duration,
                            other.track.duration) for other in kept):
            continue
        kept.append(match)
        if len(kept) == k:
            break
    return kept
