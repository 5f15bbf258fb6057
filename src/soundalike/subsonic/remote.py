"""``soundalike index --subsonic URL``: a server's songs analysed through its API.

A remote song is a library track whose path is its key, ``subsonic+URL/rest/stream?id=ID``
(the server's address and its own song id), with the song's size and date added as
its size and mtime: so the indexer's machinery serves as it is, incremental runs,
failures, crash safety and the worker processes included (:func:`plan` makes the
indexer's plan; :func:`analyse_song` is what a worker runs for a key).

The audio is the original file (``download``, else ``stream?format=raw``: no
transcoding). Where the server honours HTTP ranges, the decoder reads the song as a
seekable file whose bytes are fetched when it reads them, in blocks of
``RANGE_BLOCK``: only the headers and the excerpt's patches come over the network,
and nothing is written to disk. Otherwise the song is downloaded to a temporary file,
removed as soon as it is analysed, whatever happens.

The credentials reach the worker processes as arguments of their initializer
(:data:`indexer.WORKER_SETUP`), through the pipe that starts them: never in the
environment, nor written anywhere.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import io
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from urllib.parse import quote, unquote

import httpx2

from ..audio import TrackMetadata
from ..errors import MediaError
from ..library.catalogue import Catalogue, TrackRecord
from ..library.indexer import FileState, Plan, analyse_source
from .client import Client, Credentials, SubsonicError, envelope, server_url

SCHEME = "subsonic+"
KEY_MIDDLE = "/rest/stream?id="
RANGE_BLOCK = 128 * 1024  # bytes fetched per range request (at least)
CACHED_BLOCKS = 64  # blocks a song keeps while it is decoded (8 MiB)
MEDIA_TYPES = ("application/json", "text/xml", "application/xml")  # an error, not audio
MEDIA_ENDPOINTS = (("download", {}), ("stream", {"format": "raw"}))  # original files, download first
_MEDIA_WORKS: dict[str, str] = {}  # server -> the endpoint that last gave audio
_CREDENTIALS: dict[str, Credentials] = {}  # server -> the credentials its songs are read with


def song_key(server: str, song_id: str) -> str:
    """The library path of a server's song."""
    return f"{SCHEME}{server_url(server)}{KEY_MIDDLE}{quote(song_id, safe='')}"


def parse_key(path: str) -> tuple[str, str] | None:
    """(server, song id) of a remote song's library path, None for a file's."""
    if not path.startswith(SCHEME) or KEY_MIDDLE not in path:
        return None
    server, song_id = path[len(SCHEME):].rsplit(KEY_MIDDLE, 1)
    return server, unquote(song_id)


def is_remote(path: str) -> bool:
    return path.startswith(SCHEME)


def song_state(server: str, song: dict) -> FileState:
    """A song as the indexer sees a file: its key, size and the date the server added
    it (nanoseconds; 0 when the server does not say)."""
    return FileState(song_key(server, song["id"]), int(song.get("size") or 0), _created_ns(song.get("created")))


def _created_ns(created: str | None) -> int:
    if not created:
        return 0
    try:
        return int(datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return 0


def plan(catalogue: Catalogue, client: Client, *, retry_failed: bool = False, excerpt: int,
         reanalyze: bool = False) -> Plan:
    """What an index run of the server's songs does, as :func:`indexer.plan` for folders:
    new, changed (another size or date) and formerly failed (``retry_failed``) songs
    are analysed, the server's songs that are gone are removed. The credentials are
    handed on to the worker processes (see the module)."""
    from ..library import indexer

    from .link import remember_server

    remember(client)
    remember_server(catalogue, client.url, client.creds.user)
    prefix = SCHEME + client.url + KEY_MIDDLE
    known = {p: s for p, s in catalogue.file_states().items() if p.startswith(prefix)}
    staged = catalogue.staged_states() if reanalyze else {}
    found = {state.path: state for state in map(functools.partial(song_state, client.url), client.songs())}
    removed = sorted(p for p in {*known, *(p for p in staged if p.startswith(prefix))} if p not in found)
    result = Plan([], 0, 0, removed, removed_tracks=sum(1 for p in removed if p in known and not known[p][2]))
    for f in found.values():
        size, mtime_ns, failed, stored = known.get(f.path, (None, None, False, None))
        same = (size, mtime_ns) == (f.size, f.mtime_ns)
        if failed and same and not retry_failed:
            result.failed_before += 1
        elif reanalyze and staged.get(f.path) == (f.size, f.mtime_ns):
            result.unchanged += 1
        elif reanalyze:
            result.todo.append(f)
        elif size is None or not same or failed or indexer._too_few_patches(stored, excerpt):
            result.todo.append(f)
        else:
            result.unchanged += 1
    return result


def remember(client: Client) -> None:
    """Use ``client``'s credentials for its server's songs, here and in the worker
    processes started from now on."""
    from ..library import indexer

    _CREDENTIALS[client.url] = client.creds
    indexer.WORKER_SETUP[receive_credentials] = (dict(_CREDENTIALS),)


def receive_credentials(known: dict[str, Credentials]) -> None:
    """In a worker, as it starts: the credentials :func:`remember` handed on."""
    _CREDENTIALS.update(known)


@functools.cache
def _worker_client(server: str) -> Client:
    """The client of ``server``, with the credentials :func:`remember` handed on."""
    creds = _CREDENTIALS.get(server)
    if creds is None:
        raise SubsonicError(f"{server}: no credentials were handed to this process")
    return Client(server, creds)


def analyse_song(f: FileState, model, excerpt: int) -> TrackRecord:
    """Analyse a remote song (``f.path`` a key) into a catalogue record: its tags and
    duration from the server, its audio from :func:`open_song`. MediaError names the
    key and the cause."""
    server, song_id = parse_key(f.path)
    client = _worker_client(server)
    try:
        song = client.call("getSong", id=song_id)["song"]
        meta = TrackMetadata(artist=song.get("artist"), title=song.get("title"), album=song.get("album"),
                             genre=song.get("genre"), duration=float(song["duration"]) if song.get("duration") else None)
        with open_song(client, song_id, f.path) as source:
            return analyse_source(f, meta, source, model, excerpt)
    except SubsonicError as exc:
        raise MediaError(f.path, str(exc)) from None


@contextlib.contextmanager
def open_song(client: Client, song_id: str, label: str) -> Iterator["RangeFile | str"]:
    """The original file of a song, to decode: a :class:`RangeFile` where the server
    honours ranges, else the path of a temporary copy (removed on leaving)."""
    response = _media(client, song_id, {"Range": f"bytes=0-{RANGE_BLOCK - 1}"})
    try:
        total = _range_total(response)
        if total is not None:
            first = response.read()
            reader = RangeFile(functools.partial(_fetch, client, song_id), total, label)
            reader.keep(0, first)
            yield reader
            return
        with tempfile.NamedTemporaryFile(prefix="soundalike-", suffix=_suffix(response)) as copy:
            for chunk in response.iter_bytes():
                copy.write(chunk)
            copy.flush()
            response.close()
            yield copy.name
    finally:
        response.close()


def _media(client: Client, song_id: str, headers: dict) -> httpx2.Response:
    """The streamed answer of ``download`` (no play counted), else of ``stream`` in the
    original format, for ``song_id``; SubsonicError when neither gives audio."""
    error = None
    for endpoint, extra in sorted(MEDIA_ENDPOINTS, key=lambda e: e[0] != _MEDIA_WORKS.get(client.url)):
        response = client.request(endpoint, headers=headers, stream=True, id=song_id, **extra)
        kind = response.headers.get("content-type", "")
        if response.status_code in (200, 206) and not kind.startswith(MEDIA_TYPES):
            _MEDIA_WORKS[client.url] = endpoint
            return response
        response.read()
        response.close()
        try:
            envelope(response, f"{client.url} {endpoint}")
            error = SubsonicError(f"{client.url} {endpoint}: HTTP {response.status_code}")
        except SubsonicError as exc:
            error = exc
    raise error


def _range_total(response: httpx2.Response) -> int | None:
    """The file's size from a 206 answer's Content-Range, None when ranges are not honoured."""
    if response.status_code != 206:
        return None
    total = response.headers.get("content-range", "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _suffix(response: httpx2.Response) -> str:
    name = response.headers.get("content-disposition", "").rpartition("filename=")[2].strip('"; ')
    return os.path.splitext(name)[1]


def _fetch(client: Client, song_id: str, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (inclusive) of a song's original file."""
    response = _media(client, song_id, {"Range": f"bytes={start}-{end}"})
    try:
        if response.status_code != 206:
            raise SubsonicError(f"{client.url}: stopped honouring ranges")
        return response.read()
    finally:
        response.close()


class RangeFile(io.RawIOBase):
    """A read-only seekable file of ``size`` bytes whose blocks ``fetch(start, end)``
    brings when first read (contiguous missing blocks in one request), keeping the
    ``CACHED_BLOCKS`` most recently used; ``fetched`` counts the bytes brought and
    ``requests`` the calls. ``os.fspath`` gives ``label``."""

    def __init__(self, fetch, size: int, label: str, block: int = RANGE_BLOCK):
        self.fetch, self.size, self.label, self.block = fetch, size, label, block
        self.position, self.fetched, self.requests = 0, 0, 0
        self.blocks: OrderedDict[int, bytes] = OrderedDict()  # block number -> bytes, least recently used first

    def __fspath__(self) -> str:
        return self.label

    def __str__(self) -> str:
        return self.label

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def keep(self, start: int, data: bytes) -> None:
        """Keep ``data``, read from ``start`` (a block boundary), as the most recently
        used blocks (only the file's last one may be short), forgetting the least
        recently used beyond ``CACHED_BLOCKS``."""
        for i in range(0, len(data), self.block):
            number = (start + i) // self.block
            self.blocks[number] = data[i:i + self.block]
            self.blocks.move_to_end(number)
        while len(self.blocks) > CACHED_BLOCKS:
            self.blocks.popitem(last=False)

    def readinto(self, buffer) -> int:
        end = min(self.size, self.position + len(buffer))
        if end <= self.position:
            return 0
        first, last = self.position // self.block, (end - 1) // self.block
        missing = [b for b in range(first, last + 1) if b not in self.blocks]
        fresh = b""  # blocks missing[0] to missing[-1], fetched in one request
        if missing:
            start, stop = missing[0] * self.block, min(self.size, (missing[-1] + 1) * self.block) - 1
            fresh = self.fetch(start, stop)
            self.fetched += len(fresh)
            self.requests += 1
            if len(fresh) != stop - start + 1:
                raise OSError(f"{self.label}: the server sent {len(fresh)} bytes for {stop - start + 1} asked")
        # the read's bytes are gathered before anything is kept: keeping may forget its
        # own first blocks when the read is longer than the cache
        pieces = []
        for b in range(first, last + 1):
            if missing and missing[0] <= b <= missing[-1]:
                pieces.append(fresh[(b - missing[0]) * self.block:(b - missing[0] + 1) * self.block])
            else:
                self.blocks.move_to_end(b)
                pieces.append(self.blocks[b])
        if missing:
            self.keep(missing[0] * self.block, fresh)
        data = b"".join(pieces)
        chunk = data[self.position - first * self.block: end - first * self.block]
        buffer[:len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)

