"""Handcrafted descriptors of a waveform: the seed projects' feature table, no network.

Per window: chroma (12), RMS, spectral centroid, bandwidth, roll-off, flatness and
zero-crossing rate, and 20 MFCCs, each as mean and standard deviation over frames,
plus a tempo estimate (BPM): 77 numbers. Computed with librosa.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 1024
HOP = 256
N_MFCC = 20
NAMES = tuple(
    [f"chroma{i}_{s}" for s in ("mean", "std") for i in range(12)]
    + [f"{f}_{s}" for f in ("rms", "centroid", "bandwidth", "rolloff", "flatness", "zcr") for s in ("mean", "std")]
    + [f"mfcc{i}_{s}" for s in ("mean", "std") for i in range(N_MFCC)]
    + ["tempo"]
)
NUMBA_LOCK = Path(tempfile.gettempdir()) / "soundalike-numba.lock"

_warm = False


def _librosa():
    """librosa, with its numba kernels compiled once per process under a lock shared by all
    processes: numba writes its on-disk cache non-atomically, and processes compiling at the
    same time can crash the ones that load the mixed files (numba issue 10128)."""
    global _warm
    if not _warm:
        from filelock import FileLock

        with FileLock(NUMBA_LOCK):
            import librosa

            _warm = True
            noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
            _compute(librosa, 0.1 * noise, SAMPLE_RATE)
    import librosa

    return librosa


def descriptors(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The descriptor vector of one mono window, shape (77,), float32.

    Parameters
    ----------
    y : np.ndarray [shape=(n,), dtype=float32], samples in [-1, 1]
    sr : sample rate in Hz
    """
    return _compute(_librosa(), np.asarray(y, dtype=np.float32), sr)


def _compute(librosa, y: np.ndarray, sr: int) -> np.ndarray:
    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    with warnings.catch_warnings():  # silence has no tuning to estimate; librosa then assumes 0
        warnings.filterwarnings("ignore", "Trying to estimate tuning from empty frequency set")
        chroma = librosa.feature.chroma_stft(S=power, sr=sr)
    spectral = [
        librosa.feature.rms(S=np.sqrt(power), frame_length=N_FFT),
        librosa.feature.spectral_centroid(S=np.sqrt(power), sr=sr) / 1000,  # kHz
        librosa.feature.spectral_bandwidth(S=np.sqrt(power), sr=sr) / 1000,
        librosa.feature.spectral_rolloff(S=np.sqrt(power), sr=sr) / 1000,
        np.log10(librosa.feature.spectral_flatness(S=np.sqrt(power)) + 1e-10),
        librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP),
    ]
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=64)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)
    onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=sr, hop_length=HOP)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=HOP))[0])
    parts = [chroma.mean(1), chroma.std(1)]
    parts += [np.array([f.mean(), f.std()]) for f in spectral]
    parts += [mfcc.mean(1), mfcc.std(1), np.array([tempo])]
    return np.concatenate(parts).astype(np.float32)
