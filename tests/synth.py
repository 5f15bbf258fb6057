"""Synthesized test audio, encoded to real formats with PyAV's encoders."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# extension -> (container format, codec, sample format, options)
FORMATS = {
    "wav": ("wav", "pcm_s16le", "s16", {}),
    "aiff": ("aiff", "pcm_s16be", "s16", {}),
    "au": ("au", "pcm_s16be", "s16", {}),
    "flac": ("flac", "flac", "s16", {}),
    "mp3": ("mp3", "libmp3lame", "fltp", {}),
    "m4a": ("ipod", "aac", "fltp", {}),
    "ogg": ("ogg", "vorbis", "fltp", {"strict": "experimental"}),
    "opus": ("ogg", "libopus", "flt", {}),
}
CODEC_RATES = {"opus": 48_000}  # sample rates a codec insists on


def tone(freq: float = 440.0, seconds: float = 2.0, rate: int = 44_100, amp: float = 0.5,
         channels: int = 1) -> np.ndarray:
    """A sine, shape (channels, n) float32; every channel identical."""
    t = np.arange(int(round(seconds * rate))) / rate
    y = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.tile(y, (channels, 1))


def chord(seconds: float = 4.0, rate: int = 22_050, seed: int = 0, root: float = 220.0) -> np.ndarray:
    """A major chord on ``root`` Hz with an envelope, clicks and a little noise, shape (1, n)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    ratios = (1.0, 1.26, 1.498, 2.0)
    y = sum(np.sin(2 * np.pi * root * r * t) / (i + 1) for i, r in enumerate(ratios))
    y *= 0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t) ** 2
    y[:: rate // 2] += 1.0
    y += 0.05 * rng.standard_normal(len(t))
    return (0.25 * y / np.abs(y).max()).astype(np.float32)[None, :]


def write(path: Path, signal: np.ndarray, rate: int, *, codec: str | None = None,
          sample_format: str | None = None) -> Path:
    """Encode ``signal`` (channels, n) float in [-1, 1] to ``path``; format from its suffix."""
    ext = path.suffix.lstrip(".").lower()
    container_format, default_codec, default_fmt, options = FORMATS[ext]
    codec = codec or default_codec
    fmt = sample_format or default_fmt
    channels = signal.shape[0]
    layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, f"{channels}c")
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, options=dict(options))
        stream.layout = layout
        stream.format = fmt
        if options.get("strict"):
            stream.codec_context.options = {"strict": "experimental"}
        frame_len = stream.codec_context.frame_size or 1024
        dtype, scale = {"s16": (np.int16, 32767), "s32": (np.int32, 2**31 - 1),
                        "u8": (np.uint8, None), "flt": (np.float32, 1), "fltp": (np.float32, 1),
                        "s16p": (np.int16, 32767), "s32p": (np.int32, 2**31 - 1),
                        "dbl": (np.float64, 1)}[fmt]
        for start in range(0, signal.shape[1], frame_len):
            chunk = signal[:, start : start + frame_len]
            if dtype is np.uint8:
                data = np.round(chunk * 127 + 128).astype(np.uint8)
            else:
                data = (np.round(chunk * scale) if scale != 1 else chunk).astype(dtype)
            if not fmt.endswith("p"):
                data = data.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
