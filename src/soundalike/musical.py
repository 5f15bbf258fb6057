"""Tempo, key, loudness and energy of a track, from the audio its analysis decoded.

Everything is measured on the clips the network heard (at indexing, the excerpt's
spread 3 s patches, at 16 kHz), so it costs no decoding of its own:

* **tempo** (BPM) and its **confidence**: the onset-strength envelope of each clip is
  autocorrelated (unbiased, normalised to 1 at lag 0), the clips' autocorrelations are
  averaged, weighted by a log-normal prior around ``TEMPO_PRIOR_BPM`` (one octave wide,
  as librosa's), and the best lag between ``MIN_BPM`` and ``MAX_BPM`` is refined by
  parabolic interpolation. The confidence is the averaged autocorrelation at that lag,
  in [0, 1]: near 1 for a steady pulse, near 0 for none. Like every tempo estimator it
  may answer half or double the tempo a listener taps.
* **key** (pitch class 0 = C ... 11 = B) and **mode** (major or minor): the clips'
  summed chroma correlated with the 24 rotations of Temperley's key profiles
  (Krumhansl-Schmuckler's method); the confidence is the best correlation.
* **loudness** (LUFS): EBU R128 / ITU-R BS.1770-4 gated integrated loudness
  (FFmpeg's ``ebur128`` filter) of the clips joined end to end: an estimate from the excerpt, not the
  whole file. None below 400 ms of audio or for silence. The clips are the decoder's mono
  mix (the mean of the channels), while BS.1770 sums the channels' powers: for a stereo
  file the mix is measured as dual mono (+3.01 dB), exact when the channels are identical
  and up to 3 dB low when they are uncorrelated (on 132 stereo game soundtracks,
  bench/bench_musical.py ``loudness``: median 0.6 dB low, at most 2.6 dB). A file of more
  channels (5.1) is measured on its plain mix, LFE included: BS.1770 weights its
  surrounds and leaves out the LFE, which the mix cannot tell apart.
* **energy** in [0, 1]: how calm (0) or loud and busy (1) the music is, the mean of an
  *activity* part, the onset envelope's mean (spectral flux, dB per frame) mapped from
  ``ENERGY_FLUX_DB``, and a *density* part, the spectral flatness of the mel spectrum
  (log scale, from ``ENERGY_FLATNESS``: tonal, sparse sound low; dense, noisy, distorted
  sound high), damped below ``ENERGY_FULL_LUFS`` (quiet music is not energetic). Both
  parts ignore the level, so mastering louder or softer does not change it. On gtzan-dev
  it tells metal, rock, hip-hop and disco from classical, jazz, blues and country with
  an AUC of 0.92 (bench/bench_musical.py ``energy``).

Keys are written "A minor", "Am", "A" (major) or on the Camelot wheel ("8A" is A minor,
"8B" C major); two keys are *harmonically compatible* (:func:`compatible`) when they
are the same, one hour apart on the wheel with the same letter, or relative major and
minor (same hour). Filters (:class:`Filter`) parse the command line's and the API's
``--bpm``, ``--key`` and ``--energy``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re

import numpy as np

from .errors import ParameterError

SAMPLE_RATE = 16_000  # of the clips (the networks' rate)
HOP = 128  # samples between onset-envelope frames: 125 per second at 16 kHz
MIN_BPM, MAX_BPM = 40.0, 240.0
TEMPO_PRIOR_BPM = 120.0
LOUDNESS_BLOCK_SECONDS = 0.4  # BS.1770's gating block: less audio than this has no loudness
ABSOLUTE_GATE_LUFS = -70.0  # BS.1770's absolute gate: quieter blocks do not count
# energy's scales, [0, 1] between the two ends, about the 1st and 99th percentiles of gtzan-dev
# and the game soundtracks together (bench/bench_musical.py energy)
ENERGY_FLUX_DB = (0.6, 1.4)  # mean rise of the log mel power, dB per frame
ENERGY_FLATNESS = (0.003, 0.3)  # mel spectrum's geometric over arithmetic mean (log scale between)
ENERGY_FULL_LUFS = (-40.0, -20.0)  # energy is scaled from 0 at -40 LUFS to in full at -20 LUFS and louder
BPM_TOLERANCE = 0.04  # a single --bpm value matches within 4 %
ENERGY_TOLERANCE = 0.1  # a single --energy value matches within 0.1
PITCHES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("minor", "major")  # stored as 0 and 1
# Temperley's (1999) key profiles, tonic first: on the synthesized songs of bench/bench_musical.py
# they found the exact key more often than Krumhansl and Kessler's (see its "accuracy")
MAJOR_PROFILE = np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0])
MINOR_PROFILE = np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0])
ENABLED_VARIABLE = "SOUNDALIKE_MUSICAL"  # "0": index without these measures (for speed comparisons)


def enabled() -> bool:
    """Whether indexing measures tempo, key and loudness (not when $SOUNDALIKE_MUSICAL is "0")."""
    return os.environ.get(ENABLED_VARIABLE, "1") != "0"


@dataclasses.dataclass(frozen=True)
class Musical:
    """A track's measures; None where the audio gave none (too short, silent)."""

    bpm: float | None
    bpm_confidence: float | None
    key: int | None  # pitch class of the tonic, 0 = C
    mode: int | None  # 1 major, 0 minor
    key_confidence: float | None
    loudness: float | None  # LUFS
    energy: float | None  # 0 to 1

    @property
    def key_name(self) -> str | None:
        return key_name(self.key, self.mode)

    @property
    def camelot(self) -> str | None:
        return camelot(self.key, self.mode)

    def as_dict(self) -> dict:
        """JSON fields: bpm, bpm_confidence, key ("A minor"), camelot ("8A"), key_confidence,
        loudness (LUFS), energy; rounded, None where unknown."""
        def rounded(x, digits):
            return None if x is None else round(float(x), digits)

        return {"bpm": rounded(self.bpm, 1), "bpm_confidence": rounded(self.bpm_confidence, 3),
                "key": self.key_name, "camelot": self.camelot, "key_confidence": rounded(self.key_confidence, 3),
                "loudness": rounded(self.loudness, 1), "energy": rounded(self.energy, 3)}


UNKNOWN = Musical(None, None, None, None, None, None, None)


# --- measuring -------------------------------------------------------------------
MAX_CLIPS = 10  # clips of a track analysed whole that are kept to measure (evenly spread)
CLIP_SECONDS = 3.0


class ClipKeeper:
    """Gathers a streamed mono signal into clips of ``CLIP_SECONDS`` and keeps at most
    ``2 * MAX_CLIPS`` of them, evenly spread however long the stream (when full, every
    other one is dropped); a signal shorter than one clip is kept whole."""

    def __init__(self, sr: int):
        self.size = int(CLIP_SECONDS * sr)
        self.kept: list[np.ndarray] = []
        self.stride, self.count = 1, 0
        self.pending: list[np.ndarray] = []
        self.pending_length = 0

    def feed(self, block: np.ndarray) -> None:
        self.pending.append(block)
        self.pending_length += len(block)
        while self.pending_length >= self.size:
            joined = np.concatenate(self.pending)
            self._complete(joined[: self.size])
            self.pending, self.pending_length = [joined[self.size :]], len(joined) - self.size

    def _complete(self, clip: np.ndarray) -> None:
        if self.count % self.stride == 0:
            self.kept.append(clip)
            if len(self.kept) > 2 * MAX_CLIPS:
                self.kept, self.stride = self.kept[::2], 2 * self.stride
        self.count += 1

    def clips(self) -> list[np.ndarray]:
        """At most ``MAX_CLIPS`` clips, evenly spread over the stream fed so far."""
        if not self.kept:
            return [np.concatenate(self.pending)] if self.pending_length else []
        chosen = np.unique(np.linspace(0, len(self.kept) - 1, MAX_CLIPS).round().astype(int))
        return [self.kept[i] for i in chosen]


def measure(clips: list[np.ndarray], sr: int = SAMPLE_RATE, channels: int | None = None) -> Musical:
    """Tempo, key, loudness and energy of mono float32 ``clips`` (each (n,), at ``sr`` Hz),
    the mix of a file of ``channels`` channels (a stereo file's loudness is measured as dual
    mono; None, not known, as mono)."""
    clips = [np.asarray(c, np.float32) for c in clips if len(c) >= CHROMA_FFT]
    if not clips:
        return UNKNOWN
    mels = [mel_power(c, sr) for c in clips]
    envelopes = [spectral_flux(m) for m in mels]
    bpm, bpm_confidence = tempo(envelopes, sr / HOP)
    key, mode, key_confidence = estimate_key(sum(chroma(c, sr) for c in clips))
    loudness = integrated_loudness(np.concatenate(clips), sr, dual_mono=channels == 2)
    flux = float(np.concatenate(envelopes).mean())
    return Musical(bpm, bpm_confidence, key, mode, key_confidence, loudness,
                   energy(loudness, flux, flatness(np.concatenate(mels, axis=1))))


# Spectra are computed here rather than with librosa: loading librosa's spectral modules
# (numba) took 2.7 s in each index worker, more than measuring gtzan-dev's 409 excerpts.
ONSET_FFT, ONSET_MELS = 512, 40
CHROMA_FFT, CHROMA_HOP = 4096, 2048
CHROMA_FMIN, CHROMA_FMAX = 80.0, 5000.0  # Hz; below 80 Hz a semitone spans less than 1.2 bins of 3.9 Hz


@functools.cache
def _filters(kind: str, sr: int) -> np.ndarray:
    """The mel (ONSET_MELS, ONSET_FFT/2+1) or chroma (12, CHROMA_FFT/2+1) filter bank, float32.
    Chroma: each bin between CHROMA_FMIN and CHROMA_FMAX is shared between the two nearest
    equal-tempered semitones (A = 440 Hz) in proportion to its closeness to each."""
    from .features import mel_filterbank

    if kind == "mel":
        return mel_filterbank(sr=sr, n_fft=ONSET_FFT, n_mels=ONSET_MELS)
    freqs = np.linspace(0, sr / 2, CHROMA_FFT // 2 + 1)
    bins = np.flatnonzero((freqs >= CHROMA_FMIN) & (freqs <= CHROMA_FMAX))
    semitones = 69 + 12 * np.log2(freqs[bins] / 440)  # MIDI note numbers
    below = np.floor(semitones)
    bank = np.zeros((12, len(freqs)), np.float32)
    np.add.at(bank, ((below % 12).astype(int), bins), 1 - (semitones - below))
    np.add.at(bank, (((below + 1) % 12).astype(int), bins), semitones - below)
    return bank


@functools.cache
def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def _power(clip: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Power spectrogram (n_fft/2+1, frames) float32 of Hann windows centred every ``hop``
    samples (the clip padded with zeros by half a window at both ends)."""
    import scipy.fft

    frames = np.lib.stride_tricks.sliding_window_view(np.pad(clip, n_fft // 2), n_fft)[::hop] * _hann(n_fft)
    spectrum = scipy.fft.rfft(frames, axis=1)  # float32 in, complex64 out
    return (spectrum.real ** 2 + spectrum.imag ** 2).T


def _apply(bank: np.ndarray, power: np.ndarray) -> np.ndarray:
    """``bank @ power`` without BLAS: its threads, idle-spinning on a busy machine, made these
    small products 10 times slower (bench/bench_musical.py cost)."""
    return np.einsum("bf,ft->bt", bank, power)


def mel_power(clip: np.ndarray, sr: int) -> np.ndarray:
    """Mel power spectrogram (ONSET_MELS, frames) float32, a frame every ``HOP`` samples."""
    return _apply(_filters("mel", sr), _power(clip, ONSET_FFT, HOP))


def spectral_flux(mel: np.ndarray) -> np.ndarray:
    """Onset strength (frames,) of a clip's mel power (bands, frames), as librosa's: the mean
    over mel bands of the rise of the log mel power (dB, floored 80 dB below the clip's peak)."""
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80)
    return np.maximum(np.diff(db, axis=1), 0).mean(axis=0)


def chroma(clip: np.ndarray, sr: int) -> np.ndarray:
    """Energy of each pitch class (12,), C first, summed over the clip's frames (each
    frame normalised to its largest class)."""
    frames = _apply(_filters("chroma", sr), _power(clip, CHROMA_FFT, CHROMA_HOP))
    peaks = frames.max(axis=0)
    return (frames[:, peaks > 0] / peaks[peaks > 0]).sum(axis=1)


def flatness(mel: np.ndarray) -> float | None:
    """Spectral flatness of mel power (bands, frames): in each frame the geometric over the
    arithmetic mean of the bands' power, averaged over the frames weighted by their power;
    near 0 for a few pure tones, 1 for white noise. None for silence."""
    mel = np.maximum(mel.astype(np.float64), 1e-10)
    arithmetic = mel.mean(axis=0)
    if arithmetic.sum() <= 1e-10 * len(arithmetic):
        return None
    geometric = np.exp(np.log(mel).mean(axis=0))
    return float(geometric.sum() / arithmetic.sum())  # = mean of geometric/arithmetic weighted by arithmetic


def tempo(envelopes: list[np.ndarray], fps: float) -> tuple[float | None, float | None]:
    """(BPM, confidence in [0, 1]) from onset envelopes at ``fps`` frames per second; (None,
    None) when they are too short to hold two beats at ``MIN_BPM`` or have no onsets."""
    max_lag = int(np.ceil(60 * fps / MIN_BPM))
    min_lag = int(np.floor(60 * fps / MAX_BPM))
    curves, weights = [], []
    for env in envelopes:
        if len(env) < max_lag + 2:
            continue
        x = env - env.mean()
        full = np.correlate(x, x, mode="full")[len(x) - 1 : len(x) + max_lag + 1]
        if full[0] <= 0:
            continue
        unbiased = full / (len(x) - np.arange(len(full)))
        curves.append(unbiased / unbiased[0])
        weights.append(len(x))
    if not curves:
        return None, None
    curve = np.average(curves, axis=0, weights=weights)
    lags = np.arange(min_lag, max_lag + 1)
    prior = np.exp(-0.5 * np.log2(60 * fps / lags / TEMPO_PRIOR_BPM) ** 2)
    best = lags[np.argmax(np.maximum(curve[lags], 0) * prior)]
    a, b, c = curve[best - 1], curve[best], curve[min(best + 1, len(curve) - 1)]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
    return float(60 * fps / (best + np.clip(shift, -0.5, 0.5))), float(np.clip(b, 0, 1))


def _standardised(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=-1, keepdims=True)) / x.std(axis=-1, keepdims=True)


def key_templates(minor: np.ndarray, major: np.ndarray) -> np.ndarray:
    """Every key's profile, standardised: (mode 0 minor / 1 major, tonic, pitch class)."""
    return _standardised(np.array([[np.roll(profile, tonic) for tonic in range(12)] for profile in (minor, major)]))


_KEY_TEMPLATES = key_templates(MINOR_PROFILE, MAJOR_PROFILE)


def estimate_key(pitch_classes: np.ndarray, templates: np.ndarray = _KEY_TEMPLATES
                 ) -> tuple[int | None, int | None, float | None]:
    """(tonic pitch class, mode 1 major / 0 minor, correlation) of a chroma vector (12,), C first,
    against :func:`key_templates`."""
    if np.ptp(pitch_classes) == 0:
        return None, None, None
    scores = templates @ _standardised(pitch_classes) / 12  # (mode, tonic): Pearson correlations
    mode, tonic = np.unravel_index(np.argmax(scores), scores.shape)
    return int(tonic), int(mode), float(scores[mode, tonic])


def integrated_loudness(y: np.ndarray, sr: int, *, dual_mono: bool = False) -> float | None:
    """EBU R128 gated integrated loudness (LUFS) of mono (n,) or stereo (2, n) ``y``, by
    FFmpeg's ``ebur128`` filter (through PyAV, already loaded to decode); ``dual_mono``: mono
    ``y`` stands for two identical channels (BS.1770 sums the channels' powers: +3.01 dB).
    None when shorter than one 400 ms block or silent (below the absolute gate, -70 LUFS).
    The filter reports the loudness so far every 100 ms: the last report counts every complete block."""
    from .audio import av

    y = np.atleast_2d(np.asarray(y, np.float32))  # (channels, n)
    if y.shape[1] < LOUDNESS_BLOCK_SECONDS * sr:
        return None
    layout = {1: "mono", 2: "stereo"}[len(y)]
    graph = av.filter.Graph()
    source = graph.add_abuffer(sample_rate=sr, format="flt", layout=layout, channels=len(y))
    meter = graph.add("ebur128", f"metadata=1:dualmono={'true' if dual_mono else 'false'}")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y.T).reshape(1, -1), format="flt", layout=layout)
    frame.sample_rate, frame.pts = sr, 0
    graph.push(frame)
    graph.push(None)
    lufs = None
    while True:
        try:
            lufs = graph.pull().metadata.get("lavfi.r128.I", lufs)
        except (av.error.EOFError, av.error.BlockingIOError):
            break
    return float(lufs) if lufs is not None and float(lufs) > ABSOLUTE_GATE_LUFS else None


def _scaled(x: float, ends: tuple[float, float]) -> float:
    """``x`` mapped linearly from ``ends`` to [0, 1], clipped."""
    return float(np.clip((x - ends[0]) / (ends[1] - ends[0]), 0, 1))


def energy(loudness: float | None, flux: float, flatness: float | None) -> float | None:
    """The energy in [0, 1] (see the module's docstring) of music of ``loudness`` (LUFS),
    mean spectral ``flux`` (dB per frame) and spectral ``flatness``; None without a loudness
    or a flatness (silence)."""
    if loudness is None or flatness is None:
        return None
    activity = _scaled(flux, ENERGY_FLUX_DB)
    density = _scaled(math.log(max(flatness, 1e-10)), tuple(math.log(x) for x in ENERGY_FLATNESS))
    return (activity + density) / 2 * _scaled(loudness, ENERGY_FULL_LUFS)


# --- keys ------------------------------------------------------------------------
_NOTE = re.compile(r"^([A-Ga-g])([#b♯♭]?)\s*(.*)$")
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_MINOR_WORDS = {"m", "min", "minor"}
_MAJOR_WORDS = {"", "maj", "major"}


def key_name(key: int | None, mode: int | None) -> str | None:
    """ "A minor", "Eb major"; None when unknown."""
    return None if key is None or mode is None else f"{PITCHES[key]} {MODES[mode]}"


def camelot(key: int | None, mode: int | None) -> str | None:
    """The key on the Camelot wheel: "8A" (A minor) ... "8B" (C major); None when unknown."""
    if key is None or mode is None:
        return None
    major_tonic = key if mode else (key + 3) % 12  # a minor key sits at its relative major's hour
    return f"{(7 * major_tonic + 7) % 12 + 1}{'B' if mode else 'A'}"


def parse_key(text: str) -> tuple[int, int]:
    """(pitch class, mode) of a key written "A minor", "Am", "F#", "Bb major" or "8A" (Camelot);
    ParameterError otherwise."""
    wheel = re.fullmatch(r"(1[0-2]|[1-9])\s*([AaBb])", text.strip())
    if wheel:
        hour, letter = int(wheel.group(1)), wheel.group(2).upper()
        major_tonic = (7 * (hour - 8)) % 12  # hour 8 is C major; each hour a fifth up
        return ((major_tonic + 9) % 12, 0) if letter == "A" else (major_tonic, 1)
    note = _NOTE.match(text.strip())
    rest = note.group(3).strip().casefold() if note else ""
    if not note or rest not in _MINOR_WORDS | _MAJOR_WORDS:
        raise ParameterError(f"unknown key {text!r}: write it like 'A minor', 'Am', 'F#', 'Bb major' or, on the "
                             "Camelot wheel, '8A'")
    accidental = {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(note.group(2), 0)
    return (_LETTERS[note.group(1).upper()] + accidental) % 12, 0 if rest in _MINOR_WORDS else 1


def compatible(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether keys (pitch class, mode) ``a`` and ``b`` mix harmonically: the same hour of
    the Camelot wheel (the same key, or relative major and minor), or one hour apart in
    the same mode."""
    hour_a, hour_b = int(camelot(*a)[:-1]), int(camelot(*b)[:-1])
    apart = min((hour_a - hour_b) % 12, (hour_b - hour_a) % 12)
    return apart == 0 or (apart == 1 and a[1] == b[1])


def tempo_step(a: float, b: float) -> float:
    """The tempo change (BPM) between ``a`` and ``b`` either way, counting half and double time
    as the same tempo: the least of |b - a|, |b/2 - a| and |a/2 - b| (the faster tempo halved
    onto the slower's octave when that is nearer)."""
    return min(abs(b - a), abs(b / 2 - a), abs(a / 2 - b))


# --- filters ---------------------------------------------------------------------
def _range(text: str, what: str, tolerance, low: float, high: float) -> tuple[float, float]:
    """(lo, hi) of "A-B" or of "A" (A ± ``tolerance(A)``), each within [low, high]."""
    parts = text.strip().split("-")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(low <= x <= high for x in numbers) or numbers != sorted(numbers):
        raise ParameterError(f"{what} {text!r} is not valid: give a value or a range like "
                             f"{'120-128' if what == '--bpm' else '0.6-1'} (from {low:g} to {high:g}, low first)")
    if len(numbers) == 1:
        return numbers[0] - tolerance(numbers[0]), numbers[0] + tolerance(numbers[0])
    return numbers[0], numbers[1]


def parse_bpm(text: str) -> tuple[float, float]:
    """(lo, hi) BPM of "120-128" or "124" (within ``BPM_TOLERANCE``: 119-129)."""
    return _range(text, "--bpm", lambda x: BPM_TOLERANCE * x, 1, 1000)


def parse_energy(text: str) -> tuple[float, float]:
    """(lo, hi) of "0.6-1" or "0.7" (within ``ENERGY_TOLERANCE``)."""
    return _range(text, "--energy", lambda x: ENERGY_TOLERANCE, 0, 1)


def parse_keys(text: str) -> list[tuple[int, int]]:
    """Keys separated by commas: "Am, C, 9A"."""
    return [parse_key(part.strip()) for part in text.split(",")]


@dataclasses.dataclass(frozen=True)
class Filter:
    """Which tracks to keep by their measures, from the texts of ``--bpm``, ``--key`` and
    ``--energy`` (None: no condition); a track without the measure a condition needs
    is not kept. Bad texts raise ParameterError on construction."""

    bpm: str | None = None
    key: str | None = None
    energy: str | None = None

    def __post_init__(self):
        self.conditions()

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.bpm, self.key, self.energy))

    def conditions(self) -> tuple[str, list]:
        """A SQL WHERE condition over the tracks table and its parameters."""
        where, params = [], []
        if self.bpm is not None:
            where.append("bpm BETWEEN ? AND ?")
            params += parse_bpm(self.bpm)
        if self.energy is not None:
            where.append("energy BETWEEN ? AND ?")
            params += parse_energy(self.energy)
        if self.key is not None:
            keys = parse_keys(self.key)
            where.append("(" + " OR ".join("(key = ? AND mode = ?)" for _ in keys) + ")")
            params += [x for pair in keys for x in pair]
        return " AND ".join(where) or "1", params


@dataclasses.dataclass(frozen=True)
class Transitions:
    """What a DJ asks of consecutive tracks: ``harmonic`` keys (:func:`compatible`) and
    tempo steps of at most ``bpm_step`` BPM (:func:`tempo_step`, half and double time
    allowed). A track whose key or tempo is unknown never follows under that rule; any
    track may follow one whose key or tempo is unknown (nothing to match)."""

    harmonic: bool = False
    bpm_step: float | None = None

    def __post_init__(self):
        if self.bpm_step is not None and not self.bpm_step >= 0:
            raise ParameterError(f"--bpm-step must be a number of BPM >= 0, got {self.bpm_step}")

    @property
    def active(self) -> bool:
        return self.harmonic or self.bpm_step is not None

    def allows(self, before: Musical | None, after: Musical | None) -> bool:
        """Whether ``after`` may follow ``before`` (None: nothing measured)."""
        before, after = before or UNKNOWN, after or UNKNOWN
        if self.harmonic and before.key is not None:
            if after.key is None or not compatible((before.key, before.mode), (after.key, after.mode)):
                return False
        if self.bpm_step is not None and before.bpm is not None:
            if after.bpm is None or tempo_step(before.bpm, after.bpm) > self.bpm_step:
                return False
        return True
