"""Synthesized songs of known tempo and key: drums at a tempo, chords of a key, a bass and
a melody (tests/test_musical.py and bench/bench_musical.py share them)."""

from __future__ import annotations

import numpy as np

RATE = 22_050
# scale degrees (semitones above the tonic) of each chord's root, one chord per bar
PROGRESSIONS = {1: [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj"), (9, "min"), (5, "maj"), (7, "maj"), (0, "maj")],
                0: [(0, "min"), (5, "min"), (7, "maj"), (0, "min"), (8, "maj"), (3, "maj"), (7, "maj"), (0, "min")]}
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}
SCALES = {1: (0, 2, 4, 5, 7, 9, 11), 0: (0, 2, 3, 5, 7, 8, 11)}  # major, harmonic minor


def _note(freq: float, seconds: float, rate: int, harmonics: int, decay: float) -> np.ndarray:
    """A plucked note: ``harmonics`` partials falling as 1/k, an exponential decay per second."""
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1) if freq * k < rate / 2)
    return wave * np.exp(-decay * t) * np.minimum(1, t * 200)


def _drum(kind: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * rate)) / rate
    if kind == "kick":
        return np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    noise = rng.standard_normal(len(t))
    if kind == "snare":
        return 0.6 * noise * np.exp(-t * 25) + 0.3 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 20)
    return 0.25 * np.diff(noise, prepend=0) * np.exp(-t * 80)  # hat: bright, short


def render(bpm: float, tonic: int, mode: int, *, seconds: float = 40.0, rate: int = RATE, seed: int = 0,
           drums: bool = True) -> np.ndarray:
    """A song at ``bpm`` in the key of pitch class ``tonic`` (0 = C), ``mode`` 1 major / 0
    minor: 4/4 drums (kick on 1 and 3, snare on 2 and 4, hats on eighths), a chord per
    bar, a bass on the chord roots and a melody of the scale; shape (n,) float32 peaking at 0.5."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * rate) + rate)
    beat = 60.0 / bpm
    base = 110.0 * 2 ** ((tonic - 9) / 12)  # the tonic in the octave of A2
    progression = PROGRESSIONS[mode]

    def add(sound: np.ndarray, at: float, gain: float) -> None:
        i = int(at * rate)
        n = min(len(sound), len(y) - i)
        if n > 0:
            y[i : i + n] += gain * sound[:n]

    for b in range(int(seconds / beat)):
        at = b * beat
        if drums:
            add(_drum("kick" if b % 2 == 0 else "snare", rate, rng), at, 0.8)
            add(_drum("hat", rate, rng), at, 0.5)
            add(_drum("hat", rate, rng), at + beat / 2, 0.3)
        root, quality = progression[(b // 4) % len(progression)]
        if b % 4 == 0:
            for interval in TRIADS[quality]:
                add(_note(2 * base * 2 ** ((root + interval) / 12), 4 * beat, rate, 6, 1.2), at, 0.25)
        if b % 2 == 0:
            add(_note(base * 2 ** (root / 12) / 2, 2 * beat, rate, 4, 2.0), at, 0.35)
        degree = SCALES[mode][rng.integers(0, 7)]
        add(_note(4 * base * 2 ** (degree / 12), beat, rate, 3, 3.0), at, 0.15)
    y = y[: int(seconds * rate)]
    return (0.5 * y / np.abs(y).max()).astype(np.float32)
