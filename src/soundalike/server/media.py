"""What the page plays and shows of a track: audio a browser can play, and cover art.

A file whose container and codec every common browser plays (Chromium, Firefox,
Safari) is served as it is. Any other (AIFF, WMA, ALAC, APE, WavPack, 24-bit WAV, a
file only libsndfile reads...) is transcoded once with PyAV to Ogg Opus (48 kHz,
128 kbit/s stereo or 64 kbit/s mono, as the source) into a cache folder beside the
library, ``<library>.cache/audio/``, keyed by track id, file size and modification time
(a changed file is transcoded anew), bounded to ``MAX_CACHE`` bytes (the least
recently played transcodes are evicted first).

Cover art is the file's embedded picture (ID3 APIC, MP4 covr, FLAC pictures, Vorbis
comment METADATA_BLOCK_PICTURE), else a ``cover``/``folder``/``front`` ``.jpg``/``.png``
beside the file.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import mutagen
import mutagen.flac
import numpy as np
import platformdirs

from .. import audio
from ..errors import MediaError

# FFmpeg demuxer name -> (codecs the common browsers play in it, media type to serve)
PLAYABLE = {
    "mp3": ({"mp3"}, "audio/mpeg"),
    "mov,mp4,m4a,3gp,3g2,mj2": ({"aac"}, "audio/mp4"),
    "ogg": ({"vorbis", "opus", "flac"}, "audio/ogg"),
    "matroska,webm": ({"vorbis", "opus"}, "audio/webm"),  # only as .webm: browsers differ on Matroska
    "flac": ({"flac"}, "audio/flac"),
    "wav": ({"pcm_s16le", "pcm_u8", "pcm_f32le"}, "audio/wav"),
}
OPUS_RATE = 48_000  # Hz, the only rate Opus encodes natively
OPUS_BITRATE = {1: 64_000, 2: 128_000}  # bit/s by channel count
MAX_CACHE = 2 * 1024**3  # bytes of transcodes kept
STALE_PART = 24 * 3600  # seconds after which a half-written transcode (of a killed server) is removed
LOCK_STRIPES = 64  # transcodes of different tracks in parallel; of one track, one at a time
COVER_FILES = tuple(f"{stem}.{ext}" for stem in ("cover", "folder", "front") for ext in ("jpg", "png"))
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png", b"GIF8": "image/gif"}
FRONT_COVER = 3  # the ID3 / FLAC picture type of a front cover


def browser_media_type(path: Path) -> str | None:
    """The media type to serve ``path`` as when browsers play it as it is, else None."""
    stat = path.stat()
    return _probe(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe(path: str, size: int, mtime_ns: int) -> str | None:
    """:func:`browser_media_type` of a file in one state (size and mtime key the cache)."""
    try:
        with av.open(path, metadata_errors="ignore") as container:
            codecs, media_type = PLAYABLE.get(container.format.name, ((), None))
            if not container.streams.audio or (container.format.name == "matroska,webm"
                                               and not path.lower().endswith(".webm")):
                return None
            stream = container.streams.audio[0]
            if stream.codec_context.codec.canonical_name not in codecs:
                return None
            next(container.decode(stream))  # a file that does not decode is no use to a browser either
            return media_type
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, StopIteration):
        return None


def transcode(source: Path, target: Path) -> None:
    """Encode ``source`` into ``target`` as Ogg Opus (see the module); MediaError when it
    cannot be decoded."""
    channels, blocks = _decoded(source)
    layout = "mono" if channels == 1 else "stereo"
    written = 0
    with av.open(str(target), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=OPUS_RATE)
        stream.layout, stream.format, stream.bit_rate = layout, "flt", OPUS_BITRATE[channels]
        for block in blocks:  # (channels, n) float32
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T.reshape(1, -1)), format="flt",
                                               layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = OPUS_RATE, written, Fraction(1, OPUS_RATE)
            written += block.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    if not written:
        raise MediaError(source, "no audio could be decoded")


def _decoded(source: Path) -> tuple[int, Iterator[np.ndarray]]:
    """(channels: 1 or 2, blocks (channels, n) float32 at ``OPUS_RATE``) of a file:
    FFmpeg's decoding keeps stereo (more channels are mixed down to two); a file only
    libsndfile reads comes through :func:`audio.stream`, mono."""
    try:
        container = av.open(str(source), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return 1, (block[None] for block in audio.stream(source, sr=OPUS_RATE))  # raises MediaError if unreadable
    if not container.streams.audio:
        container.close()
        raise MediaError(source, "no audio stream")
    stream = container.streams.audio[0]
    channels = 1 if stream.codec_context.channels == 1 else 2
    return channels, _resampled(source, container, stream, channels)


def _resampled(source: Path, container, stream, channels: int) -> Iterator[np.ndarray]:
    resampler = av.AudioResampler(format="fltp", layout="mono" if channels == 1 else "stereo", rate=OPUS_RATE)
    decoded = 0.0  # seconds
    with container:
        try:
            for frame in container.decode(stream):
                decoded += frame.samples / frame.sample_rate
                for out in resampler.resample(frame):
                    yield out.to_ndarray()
            for out in resampler.resample(None):
                yield out.to_ndarray()
        except av.error.FFmpegError as exc:
            raise MediaError(source, f"corrupt audio data at {decoded:.1f} s ({exc})") from None


class AudioCache:
    """Transcodes of the tracks of the library at ``library_path`` that browsers cannot
    play, bounded to ``max_bytes`` (see the module)."""

    def __init__(self, library_path: Path, max_bytes: int = MAX_CACHE):
        self.library_path, self.max_bytes = library_path, max_bytes
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    @functools.cached_property
    def folder(self) -> Path:
        """``<library>.cache/audio``, or a folder of the user's cache where that cannot be written."""
        beside = Path(f"{self.library_path}.cache") / "audio"
        digest = hashlib.sha256(str(self.library_path.resolve()).encode()).hexdigest()[:16]
        elsewhere = Path(platformdirs.user_cache_dir("soundalike")) / "audio" / digest
        for folder in (beside, elsewhere):
            with contextlib.suppress(OSError):
                folder.mkdir(parents=True, exist_ok=True)
                if os.access(folder, os.W_OK):
                    return folder
        raise MediaError(beside, "the transcode cache folder cannot be written")

    def get(self, track_id: int, source: Path) -> Path:
        """The transcode of track ``track_id`` (file ``source``), made now if not cached."""
        stat = source.stat()
        key = f"{track_id}-{stat.st_size}-{stat.st_mtime_ns}"
        target = self.folder / f"{key}.opus"
        with self._locks[hash(key) % LOCK_STRIPES]:
            if target.exists():
                os.utime(target, ns=(time.time_ns(), target.stat().st_mtime_ns))  # recency in atime
                return target
            part = self.folder / f".{key}.{os.getpid()}-{threading.get_ident()}.part"
            try:
                transcode(source, part)
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
        self.evict(keep=target)
        return target

    def evict(self, keep: Path) -> None:
        """Remove the least recently used transcodes (not ``keep``) beyond ``max_bytes``,
        and half-written ones older than ``STALE_PART``."""
        entries = []
        for path in self.folder.iterdir():
            with contextlib.suppress(FileNotFoundError):  # another request evicting at once
                stat = path.stat()
                if path.suffix == ".part":
                    if time.time() - stat.st_mtime > STALE_PART:
                        path.unlink(missing_ok=True)
                elif path.suffix == ".opus":
                    entries.append((stat.st_atime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size


def cover(path: Path) -> tuple[bytes, str] | Path | None:
    """A track's cover art: (image bytes, media type) embedded in the file, else the path
    of a cover image beside it, else None."""
    embedded = _embedded_picture(path)
    if embedded is not None:
        return embedded
    with contextlib.suppress(OSError):
        beside = {p.name.lower(): p for p in path.parent.iterdir() if p.is_file()}
        for name in COVER_FILES:
            if name in beside:
                return beside[name]
    return None


def _embedded_picture(path: Path) -> tuple[bytes, str] | None:
    """The front cover (else the first picture) embedded in a file's tags, if any."""
    try:
        tagged = mutagen.File(path)
    except (mutagen.MutagenError, OSError):
        return None
    if tagged is None:
        return None
    tags = tagged.tags
    pictures: list[tuple[int, bytes]] = []  # (picture type, data)
    if hasattr(tags, "getall"):  # ID3 (MP3, AIFF, WAV)
        pictures += [(frame.type, frame.data) for frame in tags.getall("APIC")]
    if isinstance(tagged, mutagen.flac.FLAC):
        pictures += [(p.type, p.data) for p in tagged.pictures]
    with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
        pictures += [(FRONT_COVER, bytes(c)) for c in tags["covr"]]  # MP4
    with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError, mutagen.MutagenError):
        for encoded in tags["metadata_block_picture"]:  # Ogg Vorbis / Opus comments
            picture = mutagen.flac.Picture(base64.b64decode(encoded))
            pictures.append((picture.type, picture.data))
    for _, data in sorted(pictures, key=lambda p: p[0] != FRONT_COVER):
        media_type = image_type(data)
        if media_type:
            return data, media_type
    return None


def image_type(data: bytes) -> str | None:
    """The media type of an image by its first bytes (JPEG, PNG, GIF, WebP), else None."""
    for signature, media_type in IMAGE_SIGNATURES.items():
        if data.startswith(signature):
            return media_type
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None
