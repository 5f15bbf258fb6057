"""Track in, patch tags and embeddings out: the one place a track is cut into windows."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from . import audio, musical
from .errors import ParameterError
from .models import DEFAULT_MODEL, load_model

if TYPE_CHECKING:  # PyTorch is imported when a network runs, not with this module
    from .models import AudioModel, WindowSpec

DEFAULT_BATCH = 2  # windows per network call: small batches keep feature maps in cache (bench/)


def iter_windows(blocks: Iterable[np.ndarray], window: WindowSpec) -> Iterator[np.ndarray]:
    """Cut a streamed signal into the network's windows (see :class:`WindowSpec`).

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,), dtype=float32]
        Consecutive pieces of one signal, of any lengths.
    window : WindowSpec

    Yields
    ------
    np.ndarray [shape=(window.length,), dtype=float32]
        Window ``k`` covers samples ``[k * hop - pad, k * hop - pad + length)`` of the
        signal, zeros outside it. Identical however the signal is split into blocks.
        A signal too short for one window gives one window in which it repeats (after
        the leading ``pad`` zeros), as MusiCNN's training padded short clips: on
        gtzan-dev's 2.5 s excerpts this finds genre better than zero padding.
    """
    buffer = np.zeros(window.pad, dtype=np.float32)  # leading zero padding
    start = 0  # index in `buffer` of the next window's first sample
    emitted = 0
    for block in blocks:
        buffer = np.concatenate([buffer[start:], np.asarray(block, dtype=np.float32)])
        start = 0
        while start + window.length <= len(buffer):
            yield buffer[start : start + window.length].copy()
            emitted += 1
            start += window.hop
    tail = np.concatenate([buffer[start:], np.zeros(window.pad, dtype=np.float32)])
    if len(tail) >= window.length:
        yield tail[: window.length]
    elif emitted == 0:
        signal = buffer[window.pad :]
        if not len(signal):
            signal = np.zeros(1, np.float32)
        yield np.concatenate([buffer[: window.pad], np.resize(signal, window.length - window.pad)])


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What a network says about one track, per window ("patch").

    taggram : np.ndarray [shape=(P, n_tags)] tag probabilities in [0, 1]
    embeddings : np.ndarray [shape=(P, n_dims)] penultimate-layer vectors
    starts : np.ndarray [shape=(P,)] start time of each patch, seconds
    padded : True when the audio was shorter than one patch (repeated to fill it)
    excerpt : the number of evenly spread patches analysed, 0 when every patch was
    clips : with ``keep_audio``, the audio the network heard, mono at the model's rate:
        the excerpt's patches, or up to ``musical.MAX_CLIPS`` spread 3 s clips of a whole track
    """

    model: str
    tags: tuple[str, ...]
    taggram: np.ndarray
    embeddings: np.ndarray
    starts: np.ndarray
    padded: bool
    excerpt: int = 0
    clips: tuple[np.ndarray, ...] = ()

    @property
    def tag_probabilities(self) -> np.ndarray:
        """Mean over patches, shape (n_tags,)."""
        return self.taggram.mean(axis=0)

    def top_tags(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` most probable tags (mean over patches), most probable first."""
        probs = self.tag_probabilities
        order = np.argsort(-probs, kind="stable")[:n]
        return [(self.tags[i], float(probs[i])) for i in order]


def _resolve(model: AudioModel | str) -> AudioModel:
    return load_model(model) if isinstance(model, str) else model


def _infer(model: AudioModel, windows: Iterable[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Run windows through the network in batches: (taggram (P, n_tags), embeddings (P, d))."""
    import torch

    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
    taggram, embeddings, batch = [], [], []

    def run():
        with torch.inference_mode():
            out = model.features(torch.from_numpy(np.stack(batch)).to(model.device))
            taggram.append(model.probabilities(out.logits).cpu().numpy())
            embeddings.append(out.embedding.cpu().numpy())
        batch.clear()

    for window in windows:
        batch.append(window)
        if len(batch) == batch_size:
            run()
    if batch:
        run()
    return np.concatenate(taggram), np.concatenate(embeddings)


def _result(model: AudioModel, taggram, embeddings, starts, padded: bool, excerpt: int = 0, clips=()) -> Analysis:
    return Analysis(model=getattr(model, "name", type(model).__name__), tags=model.labels,
                    taggram=taggram, embeddings=embeddings, starts=np.asarray(starts, dtype=np.float64),
                    padded=padded, excerpt=excerpt, clips=tuple(clips))


class _Streamed:
    """The windows of a streamed signal (:func:`iter_windows`), counting its samples and,
    with ``keep_audio``, keeping spread clips of it (:class:`musical.ClipKeeper`)."""

    def __init__(self, blocks: Iterable[np.ndarray], window: WindowSpec, keep_audio: bool):
        self.window, self.total = window, 0
        self.keeper = musical.ClipKeeper(window.sample_rate) if keep_audio else None
        self.windows = iter_windows(self._counted(blocks), window)

    def _counted(self, blocks):
        for block in blocks:
            self.total += len(block)
            if self.keeper:
                self.keeper.feed(block)
            yield block

    @property
    def padded(self) -> bool:
        """Whether the signal (read to its end) was shorter than one window."""
        return self.total + 2 * self.window.pad < self.window.length

    @property
    def clips(self) -> tuple[np.ndarray, ...]:
        return tuple(self.keeper.clips()) if self.keeper else ()


def analyze_blocks(blocks: Iterable[np.ndarray], model: AudioModel | str = DEFAULT_MODEL, *,
                   batch_size: int = DEFAULT_BATCH, offset: float = 0.0, hop: int | None = None,
                   keep_audio: bool = False) -> Analysis:
    """Analyse a streamed signal at ``model.window.sample_rate``; see :func:`analyze`.

    ``offset`` (seconds) is added to the patch start times, for excerpts; ``hop``
    (samples) overrides the model's patch hop (overlapping patches when smaller);
    ``keep_audio``: keep spread clips of it in :attr:`Analysis.clips`.
    """
    model = _resolve(model)
    window = model.window if hop is None else dataclasses.replace(model.window, hop=hop)
    if window.hop < 1:
        raise ParameterError(f"hop must be >= 1 sample, got {window.hop}")
    streamed = _Streamed(blocks, window, keep_audio)
    taggram, embeddings = _infer(model, streamed.windows, batch_size)
    starts = offset + np.arange(len(taggram)) * window.hop_seconds
    return _result(model, taggram, embeddings, starts, padded=streamed.padded, clips=streamed.clips)


def excerpt_starts(duration: float, n: int, window: WindowSpec) -> np.ndarray | None:
    """Start times (s) of ``n`` windows centred in ``n`` equal parts of a track.

    None when the track is too short to hold ``n`` patches without overlap: analyse
    it whole instead.
    """
    if n < 1:
        raise ParameterError(f"excerpt must be >= 1 patches, got {n}")
    sr = window.sample_rate
    if duration * sr < n * window.hop + window.length:
        return None
    centres = (np.arange(n) + 0.5) * duration / n
    return np.clip(centres - window.length / sr / 2, 0.0, duration - window.length / sr)


def _excerpt_windows(path: str | os.PathLike, window: WindowSpec, starts: np.ndarray
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(clips, windows) of a file's excerpt: the audio decoded from each start (seeking),
    and each made one window long (zeros after a clip the file's end cut short)."""
    clips = audio.load_excerpts(path, starts=list(starts), duration=window.length / window.sample_rate,
                                sr=window.sample_rate)
    return clips, [np.pad(c[: window.length], (0, window.length - len(c[: window.length]))) for c in clips]


def _analyse_excerpt(path: str | os.PathLike, model: AudioModel, starts: np.ndarray, *, batch_size: int,
                     keep_audio: bool) -> Analysis:
    """The analysis of the patches of a file that begin at ``starts`` (seconds)."""
    window = model.window
    clips, windows = _excerpt_windows(path, window, starts)
    taggram, embeddings = _infer(model, windows, batch_size)
    return _result(model, taggram, embeddings, starts + window.pad / window.sample_rate, padded=False,
                   excerpt=len(starts), clips=clips if keep_audio else ())


def _track_excerpt(path: str | os.PathLike, window: WindowSpec, excerpt: int, duration: float | None) -> np.ndarray | None:
    """The starts (seconds) of a library track's ``excerpt`` patches; None when it is analysed
    whole (``excerpt`` 0, a track too short for them, or of unknown length)."""
    if not excerpt:
        return None
    duration = duration if duration is not None else audio.read_metadata(path).duration
    return excerpt_starts(duration, excerpt, window) if duration else None


def analyse_track(path: str | os.PathLike, model: AudioModel | str = DEFAULT_MODEL, *, excerpt: int = 0,
                  hop: int | None = None, duration: float | None = None,
                  batch_size: int = DEFAULT_BATCH, keep_audio: bool = False) -> Analysis:
    """A library track's analysis: ``excerpt`` evenly spread patches (0: every patch).

    The one function indexing and evaluation share, so that both give the same
    vectors for the same file and settings. A track too short for ``excerpt``
    separate patches, or of unknown length, is analysed whole (every patch, side by
    side, or every ``hop`` samples). ``duration`` (seconds) saves reading it from
    the file's metadata. ``keep_audio``: see :class:`Analysis`.
    """
    model = _resolve(model)
    starts = _track_excerpt(path, model.window, excerpt, duration)
    if starts is not None:
        return _analyse_excerpt(path, model, starts, batch_size=batch_size, keep_audio=keep_audio)
    return analyze(path, model, batch_size=batch_size, hop=hop, keep_audio=keep_audio)


@dataclasses.dataclass(frozen=True)
class Cut:
    """A library track decoded and cut into the network's windows, not yet analysed:
    what :func:`analyse_track` feeds the network, held in memory (a 4-minute song
    analysed whole is 15 MB), so that decoding and the network can run apart.

    windows : np.ndarray [shape=(P, window.length), dtype=float32]
    starts : np.ndarray [shape=(P,)] seconds; padded, excerpt, clips: as in :class:`Analysis`
    """

    windows: np.ndarray
    starts: np.ndarray
    padded: bool
    excerpt: int
    clips: tuple[np.ndarray, ...]


def cut_track(path: str | os.PathLike, window: WindowSpec, *, excerpt: int = 0, duration: float | None = None,
              keep_audio: bool = False) -> Cut:
    """The windows :func:`analyse_track` would analyse (same arguments, the model's ``window``)."""
    starts = _track_excerpt(path, window, excerpt, duration)
    if starts is not None:
        clips, windows = _excerpt_windows(path, window, starts)
        return Cut(np.stack(windows), starts + window.pad / window.sample_rate, False, len(starts),
                   tuple(clips) if keep_audio else ())
    streamed = _Streamed(audio.stream(path, sr=window.sample_rate), window, keep_audio)
    windows = np.stack(list(streamed.windows))
    return Cut(windows, np.arange(len(windows)) * window.hop_seconds, streamed.padded, 0, streamed.clips)


def analyse_cut(cut: Cut, model: AudioModel | str, *, batch_size: int = DEFAULT_BATCH) -> Analysis:
    """The analysis of a :class:`Cut`: equal to :func:`analyse_track` of its track."""
    model = _resolve(model)
    taggram, embeddings = _infer(model, cut.windows, batch_size)
    return _result(model, taggram, embeddings, cut.starts, cut.padded, cut.excerpt, cut.clips)


AGGREGATIONS = ("mean", "tfidf")
TFIDF_REFERENCE_PATCHES = 50_000  # idf is counted against at most this many patches
TFIDF_EPSILON_QUANTILE = 0.01  # "close" = nearer than 1 % of patch pairs from different tracks


def aggregate(embeddings: np.ndarray) -> np.ndarray:
    """The track vector: mean of the patch embeddings (P, d) -> (d,) float32."""
    return np.asarray(embeddings, dtype=np.float32).mean(axis=0)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero). Shape (n, d) or (d,), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


@dataclasses.dataclass(frozen=True, eq=False)
class Space:
    """Where similarity is measured: raw track (or patch) vectors in, unit vectors out.

    The vector is cut into ``blocks`` (one per network of a fused model); ``centre``
    (the library's mean, see :func:`library_centre`, or None) is subtracted, each block is scaled
    to unit length and by its weight, and the whole is scaled to unit length again.
    Centring on the library's own mean removes what all of its music shares, so
    cosines measure what sets tracks apart; normalising each block on its own lets
    every network count as its weight says, whatever the scale of its vectors.

    blocks : tuple of int, summing to the vector size d
    weights : tuple of float > 0, one per block
    centre : np.ndarray [shape=(d,)] or None
    """

    blocks: tuple[int, ...]
    weights: tuple[float, ...]
    centre: np.ndarray | None = None

    def __post_init__(self):
        if len(self.blocks) != len(self.weights) or not self.blocks:
            raise ParameterError(f"{len(self.blocks)} blocks and {len(self.weights)} weights: "
                                 "need one weight per block")
        if self.centre is not None and len(self.centre) != sum(self.blocks):
            raise ParameterError(f"centre has {len(self.centre)} values for vectors of {sum(self.blocks)}")

    @property
    def dim(self) -> int:
        return sum(self.blocks)

    def with_centre(self, centre: np.ndarray | None) -> "Space":
        return dataclasses.replace(self, centre=centre)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Unit vectors in this space: shape (n, d) -> (n, d), or (d,) -> (d,), float32."""
        x = np.asarray(vectors, dtype=np.float64)
        if x.shape[-1] != self.dim:
            raise ParameterError(f"vectors have {x.shape[-1]} values, this space {self.dim}")
        if self.centre is not None:
            x = x - self.centre
        edges = np.cumsum((0, *self.blocks))
        parts = [w * normalize(x[..., a:b]) for w, a, b in zip(self.weights, edges[:-1], edges[1:])]
        return normalize(np.concatenate(parts, axis=-1))


# The centre is the library's mean shrunk toward the origin, as if this many more tracks
# sat there: the mean itself for a real library, nearly no centring for a handful of
# tracks (centred on their own mean, two tracks would point in opposite directions).
CENTRE_PRIOR_TRACKS = 10


def library_centre(total: np.ndarray | None, count: int) -> np.ndarray | None:
    """The centre of a library's space from the sum (d,) of its ``count`` raw track
    vectors: ``total / (count + CENTRE_PRIOR_TRACKS)``, float64; None when empty."""
    if total is None or not count:
        return None
    return np.asarray(total, dtype=np.float64) / (count + CENTRE_PRIOR_TRACKS)


def model_space(model: AudioModel, centre: np.ndarray | None = None) -> Space:
    """The space of a model's embedding (its blocks and their weights)."""
    return Space(tuple(model.embedding_blocks), tuple(model.block_weights), centre)


def tfidf_vectors(tracks: list[np.ndarray], *, epsilon: float | None = None, seed: int = 0) -> list[np.ndarray]:
    """Track vectors weighting each patch by TF-IDF, as Deej-A.I. does.

    Patches are unit vectors; two are *close* when their cosine distance is below
    ``epsilon``. A patch's term frequency is the number of close patches in its own
    track (itself included), its inverse document frequency ``-log(m / n)`` where
    ``m`` of the ``n`` tracks hold a close patch: patches typical of one track but
    rare elsewhere weigh most. The track vector is the weighted sum of its patches.

    Parameters
    ----------
    tracks : list of np.ndarray [shape=(P_t, d)]
        Patch embeddings of every track of the library.
    epsilon : float > 0 or None
        Cosine distance threshold; None takes the 1 % quantile of distances between
        patches of different tracks.
    seed : int
        For the sample of reference tracks used when the library has more than
        ``TFIDF_REFERENCE_PATCHES`` patches (idf is then estimated on the sample).

    Returns
    -------
    list of np.ndarray [shape=(d,), dtype=float32]
    """
    if not tracks:
        return []
    units = [normalize(t) for t in tracks]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(units))
    reference, total = [], 0
    for i in order:  # whole tracks, until the reference budget is spent
        if total and total + len(units[i]) > TFIDF_REFERENCE_PATCHES:
            break
        reference.append(i)
        total += len(units[i])
    ref = np.concatenate([units[i] for i in reference])
    owner = np.concatenate([np.full(len(units[i]), k) for k, i in enumerate(reference)])
    first = np.concatenate([[0], np.cumsum([len(units[i]) for i in reference])[:-1]])
    if epsilon is None:
        a, b = rng.integers(0, len(ref), (2, 20_000))
        other = owner[a] != owner[b]
        distances = 1 - np.einsum("ij,ij->i", ref[a[other]], ref[b[other]])
        epsilon = float(np.quantile(distances, TFIDF_EPSILON_QUANTILE)) if len(distances) else 0.1
    if not epsilon > 0:
        raise ParameterError(f"epsilon must be > 0, got {epsilon}")
    vectors = []
    for u in units:
        close = (u @ ref.T) > 1 - epsilon  # (P_t, reference patches)
        holders = np.logical_or.reduceat(close, first, axis=1)  # (P_t, reference tracks)
        idf = -np.log(np.maximum(holders.sum(axis=1), 1) / len(reference))
        tf = ((u @ u.T) > 1 - epsilon).sum(axis=1)
        weights = tf * idf
        # a track made only of patches found everywhere has no weight: fall back to the mean
        vectors.append(((u * weights[:, None]).sum(axis=0) if weights.sum() > 0 else u.mean(axis=0)).astype(np.float32))
    return vectors


def analyze(source: str | os.PathLike | np.ndarray, model: AudioModel | str = DEFAULT_MODEL, *,
            start: float = 0.0, duration: float | None = None,
            batch_size: int = DEFAULT_BATCH, hop: int | None = None, keep_audio: bool = False) -> Analysis:
    """Tags and embeddings of every non-overlapping patch of a file or waveform.

    Parameters
    ----------
    source : path or np.ndarray [shape=(n,), dtype=float32]
        An audio file, or a mono waveform already at ``model.window.sample_rate``.
    model : AudioModel or str
        A loaded model or a registered name (default ``msd-musicnn``).
    start, duration : float, seconds
        Analyse an excerpt of a file (seeking, not decoding what comes before).
    batch_size : int >= 1
        Patches per network call; changes speed and memory, not results.
    hop : int or None
        Samples between patch starts; None is the model's (patches side by side).
    keep_audio : bool
        Keep spread clips of the audio in ``Analysis.clips`` (to measure tempo and key).

    Returns
    -------
    Analysis
        Patches start at ``start`` and follow each other without overlap; the tail
        shorter than a patch is dropped; a signal shorter than one patch gives one
        patch in which it repeats (``padded`` is then True).
    """
    model = _resolve(model)
    if isinstance(source, np.ndarray):
        if source.ndim != 1:
            raise ParameterError(f"waveform must be 1-D (mono), got shape {source.shape}")
        if not len(source):
            raise ParameterError("waveform is empty")
        return analyze_blocks([source.astype(np.float32, copy=False)], model, batch_size=batch_size, hop=hop,
                              keep_audio=keep_audio)
    blocks = audio.stream(source, sr=model.window.sample_rate, start=start, duration=duration)
    return analyze_blocks(blocks, model, batch_size=batch_size, offset=start, hop=hop, keep_audio=keep_audio)
