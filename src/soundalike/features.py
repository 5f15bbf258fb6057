"""Spectral features: pure functions and modules, arrays in and out."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

FLOAT16_MAX = float(np.finfo(np.float16).max)


def hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mel = freq / f_sp
    above = freq >= min_log_hz
    return np.where(above, min_log_mel + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / logstep, mel)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(*, sr: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters on the Slaney scale with Slaney ("area") normalisation.

    Returns
    -------
    weights : np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]
        Row m maps a power spectrum to mel band m.
    """
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LogMelConfig:
    """MusiCNN's front end. Rates in Hz, lengths in samples."""

    sample_rate: int = 16_000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    fmax: float = 8_000.0


class LogMel(nn.Module):
    """Waveform to MusiCNN's log-compressed mel spectrogram.

    Periodic Hann window, power spectrum, Slaney mel filters, the mel power rounded
    through float16 (as the original stored it; values beyond float16's range are
    clamped to its maximum instead of becoming inf), then ``log10(10000 x + 1)``.
    Frames are not centred here: the caller hands over each patch with its
    ``n_fft // 2`` samples of context on both sides, so frame ``i`` covers samples
    ``[i * hop, i * hop + n_fft)`` of the input.

    Input ``(batch, samples)`` float32; output ``(batch, frames, n_mels)`` with
    ``frames = 1 + (samples - n_fft) // hop_length``.
    """

    def __init__(self, config: LogMelConfig = LogMelConfig()):
        super().__init__()
        self.config = config
        self.register_buffer("window", torch.hann_window(config.n_fft, periodic=True), persistent=False)
        fb = mel_filterbank(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                            fmax=config.fmax)
        self.register_buffer("mel_basis", torch.from_numpy(fb).T.contiguous(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveform, n_fft=self.config.n_fft, hop_length=self.config.hop_length,
                          window=self.window, center=False, return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(-1)  # (batch, bins, frames)
        mel = power.transpose(1, 2) @ self.mel_basis  # (batch, frames, n_mels)
        mel = mel.clamp(max=FLOAT16_MAX).half().float()
        return torch.log10(10_000.0 * mel + 1.0)
