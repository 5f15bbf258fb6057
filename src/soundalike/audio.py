"""Decoding and metadata: the only module that opens media files.

Decoding uses PyAV (FFmpeg's libraries inside the wheel; no system ffmpeg); a file
FFmpeg cannot open is tried with libsndfile (python-soundfile) before giving up, since
some valid Ogg Vorbis files defeat FFmpeg's Ogg demuxer. Channels are downmixed by
their mean, and resampling uses the SoX resampler (python-soxr) at its "HQ" quality:
the same resampler and setting librosa >= 0.10 uses by default, i.e. what the original
MusiCNN pipeline (``librosa.load(sr=16000)``) applied.

The decoders say nothing on the terminal: FFmpeg's log is off, and what libsndfile's
decoders (libmpg123: "Note: Illegal Audio-MPEG-Header...") write to the process's
standard error is captured and logged at INFO (shown with ``soundalike -v``). PyAV,
libsndfile and soxr are imported when a file is first decoded, so that commands which
only read the library start quickly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import io
import logging
import math
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import mutagen
import mutagen.aiff
import mutagen.flac
import mutagen.mp3
import mutagen.mp4
import mutagen.wave
import numpy as np

from .errors import MediaError, ParameterError

log = logging.getLogger(__name__)

RESAMPLER_QUALITY = "HQ"  # soxr's "high quality" preset; pinned, see module docstring
MIN_RATE, MAX_RATE = 8_000, 192_000  # supported output sample rates (Hz)
BLOCK_SECONDS = 1.0  # native-rate audio gathered before each resampler call
TRUNCATION_TOLERANCE = 0.5  # seconds a file may fall short of its declared length
GAP_TOLERANCE = 0.2  # seconds timestamps may jump ahead before the data counts as corrupt

# FFmpeg sample format (packed or planar) -> (numpy dtype, scale to [-1, 1], offset)
_SAMPLE_FORMATS = {
    "u8": (np.uint8, 1 / 128, -128.0),
    "s16": (np.int16, 1 / 2**15, 0.0),
    "s32": (np.int32, 1 / 2**31, 0.0),
    "s64": (np.int64, 1 / 2**63, 0.0),
    "flt": (np.float32, 1.0, 0.0),
    "dbl": (np.float64, 1.0, 0.0),
}


@dataclasses.dataclass(frozen=True)
class TrackMetadata:
    """Tags of a file; a field the file does not have is None. duration in seconds."""

    artist: str | None = None
    title: str | None = None
    album: str | None = None
    genre: str | None = None
    duration: float | None = None
    channels: int | None = None  # of the audio stream


@functools.cache
def _pyav():
    """PyAV, imported on first use, with FFmpeg's own log lines off."""
    import av

    av.logging.set_level(None)
    return av


def __getattr__(name: str):
    """``audio.av``, ``audio.soundfile``, ``audio.soxr``: the decoders, imported on first use."""
    if name == "av":
        return _pyav()
    if name in ("soundfile", "soxr"):
        return importlib.import_module(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CapturedStderr:
    """File descriptor 2 sent to a temporary file while any thread is inside
    :meth:`capture` (counted: the first to enter redirects it, the last to leave
    restores it and logs what was written at INFO). C libraries write there directly,
    past Python's ``sys.stderr``; whatever another thread writes meanwhile is logged too."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved: int | None = None
        self._sink = None

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                try:
                    sys.stderr.flush()
                    sink = tempfile.TemporaryFile()
                    saved = os.dup(2)
                except (OSError, ValueError, AttributeError):  # no standard error to redirect
                    saved = sink = None
                if saved is not None:
                    os.dup2(sink.fileno(), 2)
                self._saved, self._sink = saved, sink
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._saved is not None:
                    os.dup2(self._saved, 2)
                    os.close(self._saved)
                    self._sink.seek(0)
                    said = self._sink.read().decode(errors="replace").strip()
                    self._sink.close()
                    self._saved = self._sink = None
                    if said:
                        log.info("libsndfile: %s", said.replace("\n", "; "))


_c_stderr = _CapturedStderr()


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.strip().rstrip(".")


def _source(path) -> Path | io.RawIOBase:
    """A path as a Path; a seekable binary file object (a song read over HTTP, see
    :mod:`soundalike.subsonic.remote`; its ``os.fspath`` names it) as it is."""
    return path if isinstance(path, io.RawIOBase) else Path(path)


def _open(path: Path) -> "_Source":
    """Open a file for decoding with FFmpeg, or libsndfile where FFmpeg gives up."""
    av = _pyav()
    try:
        if isinstance(path, Path) and path.is_dir():
            raise MediaError(path, "is a directory, not an audio file")
        if isinstance(path, Path) and path.exists() and path.stat().st_size == 0:
            raise MediaError(path, "empty file (0 bytes)")
        container = av.open(str(path) if isinstance(path, Path) else path, metadata_errors="ignore")
    except MediaError:
        raise
    except FileNotFoundError:
        raise MediaError(path, "file not found") from None
    except PermissionError:
        raise MediaError(path, "permission denied") from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        import soundfile

        try:
            with _c_stderr.capture():
                return _SndfileSource(path, soundfile.SoundFile(path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError):
            raise MediaError(path, f"not a readable audio file ({_describe(exc)})") from None
    if not container.streams.audio:
        container.close()
        raise MediaError(path, "no audio stream")
    return _FFmpegSource(path, container, container.streams.audio[0])


def _to_mono(frame) -> np.ndarray:
    """One decoded frame as mono float32 in [-1, 1], the mean of its channels.

    Reads the frame's planes in place (no intermediate stacked array): decoding
    a song is thousands of frames, so per-frame copies add up.
    """
    dtype, scale, offset = _SAMPLE_FORMATS[frame.format.name.rstrip("p")]
    n, channels = frame.samples, len(frame.layout.channels)
    if frame.format.is_planar:
        planes = [np.frombuffer(plane, dtype, count=n) for plane in frame.planes[:channels]]
    else:
        packed = np.frombuffer(frame.planes[0], dtype, count=n * channels)
        planes = [packed[c::channels] for c in range(channels)]
    mono = planes[0].astype(np.float32)
    for plane in planes[1:]:
        mono += plane
    if offset:
        mono += np.float32(offset * channels)
    mono *= np.float32(scale / channels)
    return mono


class _Source:
    """An opened file: yields (sample rate, mono block) at the file's own rate."""

    path: Path

    def blocks(self, start: float, duration: float | None, seek: bool) -> Iterator[tuple[int, np.ndarray]]:
        """Blocks of the excerpt [start, start + duration); ``seek`` when read before."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _FFmpegSource(_Source):
    def __init__(self, path: Path, container, audio):
        self.path, self.container, self.audio = path, container, audio

    def close(self) -> None:
        self.container.close()

    def blocks(self, start, duration, seek):
        av = _pyav()
        path, container, audio = self.path, self.container, self.audio
        # times count from the stream's first sample (after any encoder priming), as a
        # whole-file decode does
        origin_pts = audio.start_time or 0
        origin = float(origin_pts * audio.time_base)
        if start > 0 or seek:
            try:
                container.seek(origin_pts + int(start / audio.time_base), stream=audio)
            except av.error.FFmpegError as exc:
                raise MediaError(path, f"cannot seek to {start:g} s ({_describe(exc)})") from None
        remaining = math.inf if duration is None else duration  # seconds still wanted
        position = None  # time of the next sample, seconds
        try:
            for frame in container.decode(audio):
                rate = frame.sample_rate
                mono = _to_mono(frame)
                if frame.time is not None:
                    if position is not None and frame.time - origin > position + GAP_TOLERANCE:
                        raise MediaError(path, f"corrupt audio data: {frame.time - origin - position:.1f} s "
                                               f"missing at {position:.1f} s")
                    position = frame.time - origin
                elif position is None:
                    position = 0.0
                skip = max(0, round((start - position) * rate))
                position += len(mono) / rate
                mono = mono[skip:]
                if not len(mono):
                    continue
                if duration is not None:
                    mono = mono[: round(remaining * rate)]
                    remaining -= len(mono) / rate
                yield rate, mono
                if remaining * rate < 0.5:
                    return
        except av.error.FFmpegError as exc:
            declared = container.duration / av.time_base if container.duration else None
            if position is not None and declared and position >= declared - TRUNCATION_TOLERANCE:
                # all the audio the file declares was decoded: a bad trailing packet
                log.info("%s: ignoring a decoding error after the last sample (%s)", path, _describe(exc))
                return
            at = f" at {position:.1f} s" if position is not None else ""
            raise MediaError(path, f"corrupt audio data{at} ({_describe(exc)})") from None


class _SndfileSource(_Source):
    """A file opened with libsndfile: every call into it runs with its standard error captured."""

    def __init__(self, path: Path, handle):
        self.path, self.handle = path, handle

    def close(self) -> None:
        self.handle.close()

    def blocks(self, start, duration, seek):
        import soundfile

        f, rate = self.handle, self.handle.samplerate
        try:
            with _c_stderr.capture():
                f.seek(min(round(start * rate), f.frames))
            left = math.inf if duration is None else round(duration * rate)
            while left > 0:
                with _c_stderr.capture():
                    data = f.read(int(min(left, BLOCK_SECONDS * rate)), dtype="float32", always_2d=True)
                if not len(data):
                    return
                left -= len(data)
                yield rate, data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0].copy()
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise MediaError(self.path, f"corrupt audio data ({_describe(exc)})") from None


def _check_parameters(sr: int, start: float, duration: float | None) -> None:
    if not MIN_RATE <= sr <= MAX_RATE:
        raise ParameterError(f"sr must be between {MIN_RATE} and {MAX_RATE} Hz, got {sr}")
    if not start >= 0:
        raise ParameterError(f"start must be >= 0 seconds, got {start}")
    if duration is not None and not duration > 0:
        raise ParameterError(f"duration must be > 0 seconds or None, got {duration}")


def _resampled(native: Iterator[tuple[int, np.ndarray]], sr: int) -> Iterator[np.ndarray]:
    """Gather native blocks of about BLOCK_SECONDS and resample them to ``sr``."""
    resampler, rate, pending, pending_len = None, None, [], 0

    def flush(last: bool) -> np.ndarray:
        nonlocal pending, pending_len
        block = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        pending, pending_len = [], 0
        if rate == sr:
            return block
        return resampler.resample_chunk(block, last=last)

    for block_rate, block in native:
        if block_rate != rate:  # first block, or the stream changed its rate
            if rate is not None:
                yield flush(last=True)
            rate = block_rate
            import soxr

            resampler = soxr.ResampleStream(rate, sr, 1, dtype="float32", quality=RESAMPLER_QUALITY)
        pending.append(block)
        pending_len += len(block)
        if pending_len >= BLOCK_SECONDS * rate:
            out = flush(last=False)
            if len(out):
                yield out
    if rate is not None:
        out = flush(last=True)
        if len(out):
            yield out


def stream(
    path: str | os.PathLike,
    *,
    sr: int = 16_000,
    start: float = 0.0,
    duration: float | None = None,
) -> Iterator[np.ndarray]:
    """Decode a file to mono float32 at ``sr`` Hz, block by block.

    Parameters
    ----------
    path : str or os.PathLike
        Any file FFmpeg (or libsndfile) decodes: MP3, M4A/AAC, OGG Vorbis, Opus,
        FLAC, WAV, AIFF...
    sr : int > 0
        Output sample rate in Hz, 8000 to 192000.
    start : float >= 0
        Offset of the excerpt in seconds; reached by seeking, not by decoding.
    duration : float > 0 or None
        Length of the excerpt in seconds; None decodes to the end.

    Yields
    ------
    block : np.ndarray [shape=(n,), dtype=float32]
        Consecutive blocks of samples in [-1, 1]; concatenated they are the signal.

    Raises
    ------
    MediaError
        The file is missing, unreadable, empty, not audio, corrupt or truncated.
    """
    path = _source(path)
    _check_parameters(sr, start, duration)
    source = _open(path)
    try:
        produced = 0
        for block in _resampled(source.blocks(start, duration, seek=False), sr):
            produced += len(block)
            yield block
        if produced == 0:
            where = f" after {start:g} s" if start else ""
            raise MediaError(path, f"no audio could be decoded{where}")
        if duration is None:
            _check_complete(path, start + produced / sr)
    finally:
        source.close()


def _declared_length(path: Path) -> float | None:
    """Length in seconds that the file's header states exactly, or None.

    Only headers that count samples are trusted (WAV, AIFF, FLAC, MP4, MP3 with a
    Xing/Info/VBRI header): a length estimated from a bitrate would flag good VBR
    files. Ogg streams state no length, so their truncation is not detectable.
    """
    try:
        tagged = mutagen.File(path)
    except (mutagen.MutagenError, OSError):
        return None
    if isinstance(tagged, mutagen.mp3.MP3):
        exact = tagged.info.bitrate_mode != mutagen.mp3.BitrateMode.UNKNOWN
    else:
        exact = isinstance(tagged, (mutagen.wave.WAVE, mutagen.aiff.AIFF, mutagen.flac.FLAC,
                                    mutagen.mp4.MP4))
    return tagged.info.length or None if exact else None


def _check_complete(path: Path, decoded_end: float) -> None:
    """Raise if the file declares more audio than could be decoded (a truncated file)."""
    declared = _declared_length(path)
    if declared is not None and decoded_end < declared - TRUNCATION_TOLERANCE:
        raise MediaError(
            path, f"truncated: decoded {decoded_end:.1f} s of {declared:.1f} s declared"
        )


def load(
    path: str | os.PathLike,
    *,
    sr: int = 16_000,
    start: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode a file (or an excerpt) to one mono float32 array; see :func:`stream`.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]
        Samples in [-1, 1] at ``sr`` Hz.
    """
    return np.concatenate(list(stream(path, sr=sr, start=start, duration=duration)))


def load_excerpts(
    path: str | os.PathLike,
    *,
    starts: list[float],
    duration: float,
    sr: int = 16_000,
) -> list[np.ndarray]:
    """Decode several excerpts of one file, seeking to each (the file is opened once).

    Parameters
    ----------
    starts : list of float >= 0, seconds
    duration : float > 0, seconds, the length of every excerpt

    Returns
    -------
    list of np.ndarray [shape=(n,), dtype=float32]
        One array per start; shorter than ``duration`` where the file ends first.

    Raises
    ------
    MediaError
        As :func:`stream`, or when an excerpt yields no audio at all.
    """
    path = _source(path)
    _check_parameters(sr, min(starts, default=0.0), duration)
    source = _open(path)
    try:
        excerpts = []
        for i, start in enumerate(starts):
            blocks = list(_resampled(source.blocks(start, duration, seek=i > 0), sr))
            if not blocks:
                raise MediaError(path, f"no audio could be decoded after {start:g} s")
            excerpts.append(np.concatenate(blocks))
        return excerpts
    finally:
        source.close()


def _first(tags, key: str) -> str | None:
    try:
        values = tags.get(key) if tags is not None else None
    except (KeyError, ValueError):
        return None
    if not values:
        return None
    value = str(values[0]).strip() if isinstance(values, list) else str(values).strip()
    return value or None


def read_metadata(path: str | os.PathLike) -> TrackMetadata:
    """Artist, title, album, genre (mutagen), duration in seconds and channels of a file.

    Fields the file does not carry are None; the duration and channels fall back to the
    container's when mutagen does not know the format.

    Raises
    ------
    MediaError
        The file is missing, unreadable or not an audio file at all.
    """
    path = Path(path)
    try:
        tagged = mutagen.File(path, easy=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        tagged = None  # _open below raises the precise error
    except mutagen.MutagenError:
        tagged = None
    duration = channels = None
    if tagged is not None and getattr(tagged, "info", None) is not None:
        duration = getattr(tagged.info, "length", None) or None
        channels = getattr(tagged.info, "channels", None) or None
    tags = getattr(tagged, "tags", None) if tagged is not None else None
    if duration is None:
        source = _open(path)
        try:
            if isinstance(source, _SndfileSource):
                duration = source.handle.frames / source.handle.samplerate
                channels = channels or source.handle.channels
            else:
                if source.container.duration is not None:
                    duration = source.container.duration / _pyav().time_base
                channels = channels or source.audio.codec_context.channels or None
        finally:
            source.close()
    return TrackMetadata(
        artist=_first(tags, "artist"),
        title=_first(tags, "title"),
        album=_first(tags, "album"),
        genre=_first(tags, "genre"),
        duration=float(duration) if duration is not None else None,
        channels=channels,
    )
