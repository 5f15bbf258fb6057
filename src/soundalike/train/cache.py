"""Decoded audio for training: every track decoded once, 16 kHz mono float16, into one
memory-mapped file, from which training takes random crops.

The cache is built incrementally: each decoded track is appended and logged before the
next starts, so a killed build resumes where it stopped. A track that cannot be
decoded is recorded with its reason and left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..datasets import Track
from ..errors import MediaError

log = logging.getLogger(__name__)
DTYPE = np.float16


class WaveCache:
    """Tracks' waveforms: ``crop(key, start, length)`` gives float32 samples.

    Files in ``directory``: ``<digest>.f16`` (samples) and ``<digest>.json`` (spans and
    failures); the digest covers the tracks' paths, sizes and mtimes, the rate and the
    length limit, so a changed dataset gets a new cache.
    """

    def __init__(self, directory: Path, tracks: Sequence[Track], *, sample_rate: int,
                 max_seconds: float | None = None, progress: Callable[[int], object] | None = None):
        self.sample_rate = sample_rate
        directory.mkdir(parents=True, exist_ok=True)
        stem = directory / _digest(tracks, sample_rate, max_seconds)
        self.data_path, index_path = stem.with_suffix(".f16"), stem.with_suffix(".json")
        self.reused = index_path.exists()  # False: decoded by this call
        if not self.reused:
            _build(tracks, stem, sample_rate, max_seconds, progress)
        index = json.loads(index_path.read_text())
        self.spans: dict[str, tuple[int, int]] = {k: tuple(v) for k, v in index["spans"].items()}
        self.failures: dict[str, str] = index["failures"]
        size = sum(n for _, n in self.spans.values())
        self.data = np.memmap(self.data_path, dtype=DTYPE, mode="r", shape=(size,)) if size else np.zeros(0, DTYPE)

    @property
    def size_on_disk(self) -> int:
        """Bytes of the cache's data file."""
        return self.data_path.stat().st_size

    def __contains__(self, key: str) -> bool:
        return key in self.spans

    def samples(self, key: str) -> int:
        return self.spans[key][1]

    def crop(self, key: str, start: int, length: int) -> np.ndarray:
        """Samples ``[start, start + length)`` of a track, zero-padded past its end, float32."""
        offset, n = self.spans[key]
        out = np.zeros(length, np.float32)
        piece = self.data[offset + start: offset + min(n, start + length)]
        out[: len(piece)] = piece
        return out


def _digest(tracks: Sequence[Track], sample_rate: int, max_seconds: float | None) -> str:
    h = hashlib.sha1(json.dumps([sample_rate, max_seconds]).encode())
    for t in sorted(tracks, key=lambda t: t.key):
        try:
            st = t.path.stat()
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        h.update(json.dumps([t.key, str(t.path), stamp]).encode())
    return h.hexdigest()[:16]


def _build(tracks: Sequence[Track], stem: Path, sample_rate: int, max_seconds: float | None,
           progress: Callable[[int], object] | None) -> None:
    data_part, log_part = stem.with_suffix(".f16.part"), stem.with_suffix(".log.part")
    spans, failures = _resume(data_part, log_part)
    with open(data_part, "ab") as data, open(log_part, "a", encoding="utf-8") as journal:
        offset = data.tell() // np.dtype(DTYPE).itemsize
        for track in tracks:
            if track.key in spans or track.key in failures:
                if progress:
                    progress(1)
                continue
            try:
                y = track.load(sample_rate)
                if y.size == 0:
                    raise MediaError(track.path, "no audio samples")
            except MediaError as exc:
                log.warning("%s", exc)
                entry = {"key": track.key, "failure": str(exc)}
            else:
                if max_seconds is not None and len(y) > max_seconds * sample_rate:
                    keep = int(max_seconds * sample_rate)
                    y = y[(len(y) - keep) // 2:][:keep]  # the middle
                data.write(y.astype(DTYPE).tobytes())
                data.flush()
                entry = {"key": track.key, "span": [offset, len(y)]}
                offset += len(y)
            journal.write(json.dumps(entry) + "\n")
            journal.flush()
            if "span" in entry:
                spans[track.key] = entry["span"]
            else:
                failures[track.key] = entry["failure"]
            if progress:
                progress(1)
    data_part.replace(stem.with_suffix(".f16"))
    tmp = stem.with_suffix(".json.part")
    tmp.write_text(json.dumps({"spans": spans, "failures": failures}))
    tmp.replace(stem.with_suffix(".json"))
    log_part.unlink()


def _resume(data_part: Path, log_part: Path) -> tuple[dict, dict]:
    """Spans and failures journalled by an interrupted build; the data file is cut back to
    the last journalled track (a track half-written when the build died is redone)."""
    spans, failures, end = {}, {}, 0
    if log_part.exists() and data_part.exists():
        for line in log_part.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                break  # a line half-written when the build died
            if "span" in entry:
                spans[entry["key"]] = entry["span"]
                end = sum(entry["span"])
            else:
                failures[entry["key"]] = entry["failure"]
    with open(data_part, "ab") as data:
        data.truncate(end * np.dtype(DTYPE).itemsize)
    log_part.write_text("".join(json.dumps({"key": k, "span": v}) + "\n" for k, v in spans.items())
                        + "".join(json.dumps({"key": k, "failure": v}) + "\n" for k, v in failures.items()))
    return spans, failures
