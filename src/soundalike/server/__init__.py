"""``soundalike serve``: the HTTP API and the web page, one FastAPI app over one library.

Every action of the page is an API call documented in the OpenAPI schema (``/docs``,
which needs no network: its assets are served here). Audio and covers are served only
for library tracks, by id: no path from a request reaches the file system.

**Signing in.** A server started with ``--token T`` answers only requests that carry
it. A browser signs in once, by opening ``/?token=T`` or with the form that ``/`` shows
(``POST /signin``, field ``token``), and then carries the session cookie
``soundalike_session`` (HttpOnly, SameSite=Strict, Secure over HTTPS; its value is not
the token); ``POST /signout`` clears it. API clients send ``Authorization: Bearer T``
(``?token=T`` is still taken too).

**Browsing.** ``/api/tracks`` pages through the library (``offset``, ``limit``) by
artist, album and file name, narrowed by words (``q``), exact ``artist`` and ``album``
names (an empty one: the tracks without), and a predicted ``tag`` (tracks whose
probability of it is at least ``min_prob``, most probable first). ``/api/artists`` and
``/api/albums`` list what there is (``""``: no artist or album tag), each with the id of
a track whose ``/cover`` to show.

**Audio.** ``/api/tracks/{id}/audio`` is always something a browser plays, and
seekable (HTTP range requests): the file itself when it is MP3, AAC in MP4, Vorbis or
Opus in Ogg or WebM, FLAC, or 8/16-bit or float WAV; otherwise an Ogg Opus transcode
(header ``X-Soundalike-Transcoded: 1``), made once with PyAV and kept in
``<library>.cache/audio/`` (at most 2 GiB, the least recently played evicted first;
a changed file is transcoded anew). **Covers**: ``/api/tracks/{id}/cover`` is the
picture embedded in the file, else ``cover``, ``folder`` or ``front`` ``.jpg``/``.png``
beside it.

Requests are answered in parallel, each from one state of the library: tracks that
``soundalike index`` adds or removes while the server runs are seen by the next
request. An upload is analysed outside the library, at most ``max_analyses`` at a time
(503 with ``Retry-After`` beyond), and abandoned when its client goes away.

Every error is ``{"detail": "a sentence"}``: 400 a malformed body, 401 no valid
token or session, 404 no such track (or its file is gone, or it has no cover), 413 a
body over its limit, 422 a parameter out of its bounds ("k must be at most 200") or
refused by the library (an unknown tag, a file that is not audio or cannot be
played), 503 every upload slot busy or the library unusable (empty, damaged). Track
ids are 0 to 2^63 - 1, ``random_seed`` 0 to 2^32 - 1, a search at most 200
characters, an ``offset`` at most 10^9; a radio remembers the last 1,000 tracks of its
history.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated

import anyio.from_thread
import faiss
import numpy as np
from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.datastructures import Headers

from .. import analysis, audio, feedback, musical, playlists, recommend
from ..errors import MediaError, ParameterError, SoundalikeError
from ..library import Catalogue, Library, QueryError, Seed, events
from ..library.catalogue import MAX_TRACK_ID, LibraryError, Track
from ..library.vectors import VectorIndex
from ..passages import format_time
from ..playlist_files import Entry, m3u_text
from . import families, listening, media, passages, projection
from .auth import Sessions, signed_out

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_MAX_UPLOAD = 100 * 1024 * 1024  # bytes
FORM_OVERHEAD = 64 * 1024  # bytes of multipart framing allowed beyond max_upload
UPLOADS = ("/api/upload", "/api/passages/upload")  # paths whose bodies are audio files
MAX_JSON = 4 * 1024 * 1024  # bytes of any other request body (a radio history of 100,000 ids is 0.7 to 2 MB)
DEFAULT_ANALYSES = 2  # uploads analysed at once
RETRY_AFTER = 10  # seconds a client is asked to wait when every upload slot is busy
DISCONNECT_POLL = 0.5  # seconds between checks that an upload's client is still there
SPECTROGRAM_SECONDS = 30.0
PASSAGES = 3  # most similar 3-second passage pairs shown per recommendation
MAX_RANDOM_SEED = 2**32 - 1
MAX_QUERY = 200  # characters of a search (so at most 100 words)
MAX_TAG = 100  # characters of a tag name
MAX_NAME = 1000  # characters of an artist or album name
MAX_OFFSET = 10**9  # tracks, artists or albums skipped by a page
MAX_PAGE = 1000  # items of a page
COVER_CACHE = "private, max-age=86400"  # a day in the browser's cache
RADIO_HISTORY = 1000  # the last tracks of a radio's history it avoids and steers by; older ones may come back

TrackId = Annotated[int, Field(ge=0, le=MAX_TRACK_ID)]
TrackIdPath = Annotated[int, PathParam(ge=0, le=MAX_TRACK_ID, description="a track id")]
RandomSeed = Annotated[int | None, Field(ge=0, le=MAX_RANDOM_SEED, description="makes a drunk choice reproducible")]
TagQuery = Annotated[str | None, Query(max_length=MAX_TAG, description="keep tracks with this predicted or genre tag")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="how many to skip (paging)")]
TextQuery = Annotated[str, Query(max_length=MAX_QUERY, description="words to look for")]
NameQuery = Annotated[str | None, Query(max_length=MAX_NAME,
                                        description="an exact name; empty: tracks without one; omitted: any")]
MAX_MEASURE = 100  # characters of a --bpm, --key or --energy text
BPM_HELP = "keep tracks of this tempo: a range of BPM (120-128) or a value (124, within 4 %)"
KEY_HELP = "keep tracks in this key: 'A minor', 'Am', 'F#', 'Bb major' or Camelot '8A'; several separated by commas"
ENERGY_HELP = "keep tracks of this energy, 0 (calm) to 1 (loud and busy): a range (0.6-1) or a value (within 0.1)"
BpmQuery = Annotated[str | None, Query(max_length=MAX_MEASURE, description=BPM_HELP)]
KeyQuery = Annotated[str | None, Query(max_length=MAX_MEASURE, description=KEY_HELP)]
EnergyQuery = Annotated[str | None, Query(max_length=MAX_MEASURE, description=ENERGY_HELP)]


def similar_filters(tag: TagQuery = None,
                    min_prob: float = Query(0.5, ge=0, le=1, description="with a tag: the least probability of it kept"),
                    exclude_artist: bool = Query(False, description="skip the seed's artist"),
                    bpm: BpmQuery = None, key: KeyQuery = None,
                    energy: EnergyQuery = None) -> dict:
    """The filters of the similar endpoints (tracks, passages), as keyword arguments of
    :func:`soundalike.recommend.similar` and :func:`soundalike.passages.similar_passages`."""
    return {"tag": tag, "min_prob": min_prob, "exclude_artist": exclude_artist,
            "measures": musical.Filter(bpm=bpm, key=key, energy=energy)}


SimilarFilters = Annotated[dict, Depends(similar_filters)]


class Error(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="what went wrong, in a sentence")


ERRORS = {
    400: "the body is malformed (not JSON, not a form), or the upload is empty",
    401: "a valid token is required (the server was started with --token)",
    404: "no such track in the library, or its file is no longer on disk",
    413: "the request body is larger than the server's limit",
    422: "a parameter is outside its bounds, or the library refused it (an unknown tag, a file that is not audio)",
    503: ("every upload slot is busy analysing (retry after the Retry-After header's seconds), or the library "
          "cannot answer (empty, or damaged: the detail says what to do)"),
}


def errors(*codes: int) -> dict:
    """OpenAPI responses for these error statuses, all of the shape :class:`Error`."""
    return {code: {"model": Error, "description": ERRORS[code]} for code in codes}


# pydantic's error types -> the sentence a person reads, formatted with the parameter's
# name and the error's context (its bounds)
SENTENCES = {
    "missing": "{name} is required",
    "less_than_equal": "{name} must be at most {le}",
    "greater_than_equal": "{name} must be at least {ge}",
    "less_than": "{name} must be less than {lt}",
    "greater_than": "{name} must be more than {gt}",
    "int_parsing": "{name} must be a whole number",
    "int_type": "{name} must be a whole number",
    "int_from_float": "{name} must be a whole number",
    "int_parsing_size": "{name} is too large a number",
    "float_parsing": "{name} must be a number",
    "float_type": "{name} must be a number",
    "finite_number": "{name} must be a finite number",
    "bool_parsing": "{name} must be true or false",
    "bool_type": "{name} must be true or false",
    "string_type": "{name} must be text",
    "string_too_short": "{name} must be at least {min_length} characters long",
    "string_too_long": "{name} must be at most {max_length} characters long",
    "too_short": "{name} must have at least {min_length} {items}",
    "too_long": "{name} must have at most {max_length} {items}",
    "list_type": "{name} must be a list",
    "model_attributes_type": "{name} must be a JSON object",
    "dict_type": "{name} must be a JSON object",
    "json_invalid": "the body is not valid JSON",
    "string_pattern_mismatch": "{name} must be " + events.PROFILE_RULE,  # the profile is the one pattern
}


def _sentence(error: dict) -> str:
    """One validation error of pydantic as a sentence naming the parameter ("k must be at most 200")."""
    where, *parts = error["loc"] or ("body",)
    name = ""
    for part in parts if where in ("query", "path", "body", "header", "cookie") else (where, *parts):
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    context = error.get("ctx") or {}
    bound = context.get("min_length", context.get("max_length"))
    template = SENTENCES.get(error["type"])
    with contextlib.suppress(TypeError, ValueError):
        if math.isnan(float(error.get("input"))):  # NaN passes no bound: say what is wrong with it
            template = "{name} must be a number, not NaN"
    if template is None:
        return f"{name or 'the body'} is not valid: {error['msg'][:1].lower()}{error['msg'][1:]}"
    bounds = {key: int(value) if isinstance(value, float) and value.is_integer() else value
              for key, value in context.items()}  # "at most 1", not "at most 1.0"
    return template.format(name=name or "the body", items="item" if bound == 1 else "items", **bounds)


class MusicalOptions(BaseModel):
    """Tempo, key and energy filters, and a DJ's rules between consecutive tracks."""

    bpm: str | None = Field(None, max_length=MAX_MEASURE, description=BPM_HELP)
    key: str | None = Field(None, max_length=MAX_MEASURE, description=KEY_HELP)
    energy: str | None = Field(None, max_length=MAX_MEASURE, description=ENERGY_HELP)
    harmonic: bool = Field(False, description="each track's key compatible with the one before (Camelot wheel)")
    bpm_step: float | None = Field(None, ge=0, le=1000, description=(
        "largest tempo change between consecutive tracks, BPM (half or double time counts as the same tempo)"))

    def measures(self) -> musical.Filter:
        return musical.Filter(bpm=self.bpm, key=self.key, energy=self.energy)

    def transitions(self) -> musical.Transitions:
        return musical.Transitions(harmonic=self.harmonic, bpm_step=self.bpm_step)


class RadioRequest(MusicalOptions):
    seeds: list[TrackId] = Field(min_length=1, max_length=100, description="track ids the radio started from")
    history: list[TrackId] = Field(default_factory=list, description=(
        f"track ids played so far, in order; only the last {RADIO_HISTORY} count (they are not played again), "
        "and tracks no longer in the library are skipped"))
    keep_on: int = Field(3, ge=1, le=RADIO_HISTORY, description="steer by the last K tracks")
    drunk: float = Field(0.0, ge=0, le=1, description="randomness, 0 (none) to 1 (adventurous)")
    artist_gap: int = Field(3, ge=0, le=RADIO_HISTORY)
    random_seed: RandomSeed = None
    profile: listening.Profile | None = Field(None, description=(
        "learn from this profile's listening: move toward what it liked and away from what it skipped lately, "
        "never play what it disliked; each pick then says why"))


class PathRequest(MusicalOptions):
    songs: list[TrackId] = Field(min_length=2, max_length=500, description="start, waypoints and end: track ids")
    length: int = Field(12, ge=2, le=500)
    drunk: float = Field(0.0, ge=0, le=1)
    max_per_artist: int | None = Field(None, ge=1, le=500)
    random_seed: RandomSeed = None


class PlaylistRequest(BaseModel):
    ids: list[TrackId] = Field(min_length=1, max_length=10_000)


class Artist(BaseModel):
    artist: str = Field(description='the name; "" for tracks without an artist')
    tracks: int
    albums: int = Field(description="albums with a name")
    cover: int | None = Field(description="a track of theirs whose cover to show (it may have none: 404)")


class Album(BaseModel):
    album: str = Field(description='the name; "" for the artist\'s tracks without an album')
    artist: str
    tracks: int
    duration: float = Field(description="seconds")
    cover: int | None = Field(description="a track of the album whose cover to show (it may have none: 404)")


class ClientGone(Exception):
    """The client of an upload disconnected during its analysis."""


class ServedLibrary(Library):
    """The library as concurrent requests share it.

    A request reads inside :meth:`reading`: on a SQLite connection of its own (taken
    from a pool), in one read transaction, with the vector index of that very state of
    the catalogue, so that tracks another process adds or removes meanwhile never mix
    into an answer. Requests read in parallel; only the start of a read is serialised,
    and with it bringing the index up to date when the catalogue has changed.
    """

    def __init__(self, path: str | os.PathLike | None):
        self._local = threading.local()
        self._idle: list[Catalogue] = []  # connections no request is using
        self._starting = threading.RLock()
        super().__init__(path, create=False)

    @property
    def catalogue(self) -> Catalogue:
        """The request's connection inside :meth:`reading`, the library's own outside."""
        mine = getattr(self._local, "catalogue", None)
        return self._own if mine is None else mine

    @catalogue.setter
    def catalogue(self, catalogue: Catalogue) -> None:
        self._own = catalogue

    @property
    def index(self) -> VectorIndex:
        """Inside :meth:`reading`, the index of the request's state of the catalogue."""
        pinned = getattr(self._local, "index", None)
        if pinned is not None:
            return pinned
        with self._starting:
            return super().index

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Read one state of the library in this thread (see the class); nested: the same."""
        if getattr(self._local, "catalogue", None) is not None:
            yield
            return
        with self._connection() as catalogue, catalogue.snapshot():
            # the snapshot starts with its first read, in here: states are taken in
            # order, so the index shared by later requests only moves forward
            with self._starting:
                self._local.index = super().index
            yield

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Write (listening events) in this thread, on a connection outside any read snapshot."""
        with self._connection():
            yield

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Catalogue]:
        """A pooled connection, as this thread's :attr:`catalogue` until the block ends."""
        catalogue = self._idle.pop() if self._idle else Catalogue(self.location, create=False)
        self._local.catalogue = catalogue
        try:
            yield catalogue
        finally:
            self._local.index = self._local.catalogue = None
            self._idle.append(catalogue)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
        super().close()


class Gate:
    """ASGI middleware: the sign-in (a session or the token on every request, see
    :mod:`.auth`); before an upload's body is read, a 503 while every analysis slot is
    busy; and body limits, from Content-Length at once (413) and counted as the body
    arrives (413 at the limit, the rest never read)."""

    def __init__(self, app, *, sessions: Sessions | None, slots: threading.BoundedSemaphore, max_upload: int):
        self.app, self.sessions, self.slots, self.max_upload = app, sessions, slots, max_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope)
        if refusal is not None:
            return await refusal(scope, receive, send)
        limit, received = self.limit(scope), 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, self.too_large(scope))
            return message

        await self.app(scope, counted, send)

    def limit(self, scope) -> int:
        return self.max_upload + FORM_OVERHEAD if scope["path"] in UPLOADS else MAX_JSON

    def too_large(self, scope) -> str:
        if scope["path"] in UPLOADS:
            return f"upload larger than the limit of {self.max_upload} bytes"
        return f"request body larger than the limit of {MAX_JSON} bytes"

    def refusal(self, scope) -> Response | None:
        answer = self.sessions.gate(scope) if self.sessions else None
        if answer is not None:
            return answer
        if scope["path"] in UPLOADS and scope["method"] == "POST":
            if not self.slots.acquire(blocking=False):
                error = busy()
                return JSONResponse({"detail": error.detail}, status_code=503, headers=error.headers)
            self.slots.release()
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit(scope):
            return JSONResponse({"detail": self.too_large(scope)}, status_code=413)
        return None


def busy() -> HTTPException:
    return HTTPException(503, f"the server is analysing as many uploads as it can; try again in {RETRY_AFTER} s",
                         headers={"Retry-After": str(RETRY_AFTER)})


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if host not in LOOPBACK and not token:
        raise ParameterError(f"binding {host} exposes your library to the network; give --token to do so")


SETTINGS_ENV = "SOUNDALIKE_SERVE_SETTINGS"  # serve --workers: the settings each worker process makes its app from


def app_from_environment() -> FastAPI:
    """The app of one worker process of ``serve --workers N``: :func:`create_app` with the
    arguments its parent left in ``SETTINGS_ENV`` (JSON; ``subsonic_upstream``: see
    :func:`soundalike.subsonic.commands.wrap_app`)."""
    import json

    settings = json.loads(os.environ[SETTINGS_ENV])
    upstream = settings.pop("subsonic_upstream", None)
    app = create_app(**settings)
    if upstream:
        from ..subsonic.commands import wrap_app

        app = wrap_app(app, upstream)
    return app


def create_app(library_path: str | os.PathLike | None, *, token: str | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD, max_analyses: int = DEFAULT_ANALYSES,
               map_at_start: bool = False) -> FastAPI:
    """The app over one library; ``map_at_start``: draw the map in the background at once,
    so that the first visit to it does not wait (up to 20 s on a fresh install, while
    umap-learn compiles)."""
    library = ServedLibrary(library_path)
    # one OpenMP thread per faiss search: requests run in parallel, and an OpenMP team
    # for a single query made it 10 times slower (22 ms against 2.3 ms at 50,000 tracks)
    faiss.omp_set_num_threads(1)
    slots = threading.BoundedSemaphore(max_analyses)  # uploads being analysed
    sessions = Sessions(token) if token else None
    transcodes = media.AudioCache(library.catalogue.files)
    # /docs with Swagger UI's assets served from here (no CDN), as fastapi-offline documents
    app = FastAPIOffline(title="soundalike", version="1", description=__doc__, responses=errors(401, 422, 503),
                         swagger_ui_parameters={"validatorUrl": None})
    app.add_middleware(Gate, sessions=sessions, slots=slots, max_upload=max_upload)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = list(dict.fromkeys(_sentence(e) for e in exc.errors()))
        malformed = any(e["type"] == "json_invalid" for e in exc.errors())  # not JSON at all: 400, as documented
        return JSONResponse({"detail": "; ".join(problems[:3]) or "the request is not valid"},
                            status_code=400 if malformed else 422)

    @app.exception_handler(SoundalikeError)
    async def soundalike_error(request: Request, exc: SoundalikeError):
        status = 404 if isinstance(exc, QueryError) else 503 if isinstance(exc, LibraryError) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def track_or_404(track_id: int) -> Track:
        track = library.catalogue.track(track_id)
        if track is None:
            raise HTTPException(404, f"no track {track_id} in the library")
        return track

    def tracks_or_404(ids: list[int]) -> list[Track]:
        tracks = library.catalogue.tracks(ids)
        missing = set(ids) - {t.id for t in tracks}
        if missing:
            raise HTTPException(404, f"no track {min(missing)} in the library")
        return tracks

    def file_or_404(track_id: int) -> Path:
        with library.reading():
            path = Path(track_or_404(track_id).path)
        if not path.is_file():
            raise HTTPException(404, f"track {track_id}'s file is no longer on disk")
        return path

    def with_tags(tracks: list[Track], n: int = 3) -> list[dict]:
        """Tracks as listed: each with its ``n`` likeliest tags and its ``musical`` measures."""
        ids = [t.id for t in tracks]
        tags, measured = library.top_tags(ids, n), library.catalogue.musical(ids)
        return [{**t.as_dict(), "tags": recommend.tag_dicts(tags.get(t.id, [])),
                 "musical": measured[t.id].as_dict() if t.id in measured else None} for t in tracks]

    def explain(seed: Seed, rec: recommend.Recommendation) -> dict:
        """Why a track was recommended: the tags both lean to, and the closest passages."""
        names = library.catalogue.tag_names
        _, theirs = library.catalogue.arrays("tags", [rec.track.id])
        shared = [names[i] for i in np.argsort(-np.minimum(seed.tags, theirs[0]))[:5]
                  if min(seed.tags[i], theirs[0][i]) >= 0.1] if len(names) else []
        patches, starts = library.catalogue.patches(rec.track.id)
        passages = []
        if len(seed.patches) and len(patches):
            cos = library.space.project(seed.patches) @ library.space.project(patches).T
            for flat in np.argsort(-cos, axis=None)[: PASSAGES * 4]:
                i, j = np.unravel_index(flat, cos.shape)
                if all(p["seed_start"] != round(float(seed.starts[i]), 2) for p in passages):
                    passages.append({"seed_start": round(float(seed.starts[i]), 2),
                                     "track_start": round(float(starts[j]), 2), "score": round(float(cos[i, j]), 4)})
                if len(passages) == PASSAGES:
                    break
        return {**rec.as_dict(), "shared_tags": shared, "passages": passages}

    @app.get("/api/library", summary="library statistics and its tag vocabulary")
    def library_info():
        with library.reading():
            return {**library.stats(), "tags": library.catalogue.tag_names}

    def find_tracks(q: str, tag: str | None, min_prob: float, artist: str | None, album: str | None,
                    offset: int, limit: int, measures: musical.Filter | None = None) -> list[Track]:
        """A page of the tracks that match every filter given (see :func:`search`)."""
        catalogue, names = library.catalogue, {"artist": artist, "album": album}
        if not tag and measures is not None and measures.active:
            kept = set(library.allowed(measures=measures).tolist())
            found = catalogue.search_text(q, limit=-1, **names) if q.strip() else catalogue.listing(limit=-1, **names)
            return [t for t in found if t.id in kept][offset : offset + limit]
        if not tag:
            if q.strip():
                return catalogue.search_text(q, limit=limit, offset=offset, **names)
            return catalogue.listing(offset=offset, limit=limit, **names)
        allowed = None
        if q.strip():
            allowed = [t.id for t in catalogue.search_text(q, limit=-1, **names)]
        elif artist is not None or album is not None:
            allowed = [t.id for t in catalogue.listing(limit=-1, **names)]
        if measures is not None and measures.active:
            by_measures = library.allowed(measures=measures)
            allowed = by_measures if allowed is None else np.intersect1d(allowed, by_measures)
        ranked = recommend.rank_by_tag(library, tag, k=limit, allowed=allowed, min_prob=min_prob, offset=offset)
        return [r.track for r in ranked]

    @app.get("/api/tracks", summary="page through the tracks, or search them by words, artist, album and tag")
    def search(q: TextQuery = "", tag: TagQuery = None,
               min_prob: float = Query(0.5, ge=0, le=1, description="with a tag: the least probability of it kept"),
               artist: NameQuery = None, album: NameQuery = None, offset: Offset = 0,
               limit: int = Query(50, ge=1, le=MAX_PAGE), bpm: BpmQuery = None, key: KeyQuery = None,
               energy: EnergyQuery = None):
        """Without ``q`` or ``tag``: by artist, album and file name. ``q``: tracks whose artist,
        title, album or file name contain every word. ``tag``: only tracks whose predicted
        probability of it is at least ``min_prob``, most probable first. ``bpm``, ``key``,
        ``energy``: only tracks of this tempo, key and energy."""
        measures = musical.Filter(bpm=bpm, key=key, energy=energy)
        with library.reading():
            return with_tags(find_tracks(q, tag, min_prob, artist, album, offset, limit, measures))

    @app.get("/api/artists", summary="the artists, by name, with their numbers of tracks and albums",
             response_model=list[Artist])
    def artists(q: TextQuery = "", offset: Offset = 0, limit: int = Query(100, ge=1, le=MAX_PAGE)):
        with library.reading():
            return library.catalogue.artists(q.strip(), offset=offset, limit=limit)

    @app.get("/api/albums", summary="the albums, by artist then title, with their numbers of tracks and lengths",
             response_model=list[Album])
    def albums(artist: NameQuery = None, q: TextQuery = "", offset: Offset = 0,
               limit: int = Query(100, ge=1, le=MAX_PAGE)):
        with library.reading():
            return library.catalogue.albums(q.strip(), artist=artist, offset=offset, limit=limit)

    @app.get("/api/tracks/{track_id}", summary="a track's metadata, predicted tags, tempo, key, loudness and energy",
             responses=errors(404))
    def track(track_id: TrackIdPath):
        """``musical``: {bpm, bpm_confidence, key ("A minor"), camelot ("8A"), key_confidence,
        loudness (LUFS, of the analysed excerpt), energy (0 to 1)}, null where not measured."""
        with library.reading():
            found = with_tags([track_or_404(track_id)], n=10)[0]
            measured = library.catalogue.musical([track_id]).get(track_id, musical.UNKNOWN)
            return {**found, "musical": measured.as_dict()}

    @app.get("/api/tracks/{track_id}/audio", summary="the track's audio, as browsers play it (seekable)",
             response_class=FileResponse,
             responses={200: {"content": {"audio/*": {}}, "description": (
                 "the file as it is in the library when browsers play it, else an Ogg Opus transcode "
                 "(header X-Soundalike-Transcoded: 1); HTTP range requests supported")}, **errors(404)})
    def track_audio(track_id: TrackIdPath):
        path = file_or_404(track_id)
        media_type = media.browser_media_type(path)
        if media_type:
            return FileResponse(path, media_type=media_type)
        try:
            transcoded = transcodes.get(track_id, path)
        except MediaError as exc:
            raise HTTPException(422, f"track {track_id} ({path.name}) cannot be played: {exc.reason}") from None
        return FileResponse(transcoded, media_type="audio/ogg", headers={"X-Soundalike-Transcoded": "1"})

    @app.get("/api/tracks/{track_id}/cover", summary="the track's cover art (embedded, or an image beside the file)",
             response_class=Response, responses={200: {"content": {"image/*": {}}}, **errors(404)})
    def track_cover(track_id: TrackIdPath):
        art = media.cover(file_or_404(track_id))
        if art is None:
            raise HTTPException(404, f"track {track_id} has no cover art")
        headers = {"Cache-Control": COVER_CACHE}
        if isinstance(art, Path):
            return FileResponse(art, headers=headers)
        data, media_type = art
        return Response(data, media_type=media_type, headers=headers)

    @app.get("/api/tracks/{track_id}/spectrogram.png", summary="mel spectrogram of 30 s from `start`, as a PNG",
             response_class=Response, responses={200: {"content": {"image/png": {}}}, **errors(404, 422)},
             description=("Header X-Soundalike-Time-Axis: \"x0,x1,seconds,start\": the plot spans x0 to x1 "
                          "(fractions of the image's width) and shows `seconds` of the track from `start`."))
    def spectrogram(track_id: TrackIdPath, start: float = Query(
            0.0, ge=0, allow_inf_nan=False, description="seconds into the track where the 30 s shown begin")):
        with library.reading():
            duration = track_or_404(track_id).duration
        if duration and start >= duration:
            raise HTTPException(422, f"track {track_id} is {format_time(duration)} long: "
                                     f"its spectrogram cannot start at {format_time(start)}")
        png, time_axis = _spectrogram_png(str(file_or_404(track_id)), start)
        return Response(png, media_type="image/png", headers={"X-Soundalike-Time-Axis": time_axis})

    @app.get("/api/tracks/{track_id}/similar", summary="tracks that sound like this one, with why",
             responses=errors(404))
    def similar(track_id: TrackIdPath, filters: SimilarFilters, k: int = Query(10, ge=1, le=200)):
        with library.reading():
            seed = library.seed(track_or_404(track_id))
            recs = recommend.similar(library, seed, k=k, **filters)
            return [explain(seed, r) for r in recs]

    @app.post("/api/radio/next", summary="the next track of a radio, given its seeds, history and settings",
              responses=errors(400, 404, 413))
    def radio_next(body: RadioRequest):
        settings = playlists.RadioSettings(keep_on=body.keep_on, drunk=body.drunk, artist_gap=body.artist_gap,
                                           random_seed=body.random_seed)
        measures, transitions = body.measures(), body.transitions()
        with library.reading():
            seeds = [library.seed(track_or_404(i)) for i in body.seeds]
            allowed = library.allowed(measures=measures)
            recent = body.history[-RADIO_HISTORY:]
            present = {t.id for t in library.catalogue.tracks(recent)}
            history = [i for i in recent if i in present]
            rng = np.random.default_rng(body.random_seed)
            if body.profile is None:
                chosen = playlists.next_track(library, seeds, history, settings, rng, allowed=allowed,
                                              transitions=transitions)
                return with_tags([chosen])[0] if chosen else None
            taste = feedback.taste(library, body.profile)
            chosen = playlists.next_track(library, seeds, history, settings, rng, taste, allowed=allowed,
                                          transitions=transitions)
            why = chosen and not taste.empty and playlists.why_next(library, taste, seeds, history, body.keep_on, chosen)
            return chosen and {**with_tags([chosen])[0], "why": why or None}

    listening.add_routes(app, library, with_tags=with_tags, errors=errors)
    passages.add_routes(app, library, with_tags=with_tags, errors=errors, slots=slots, max_upload=max_upload)
    families.add_routes(app, library, with_tags=with_tags, errors=errors)

    @app.post("/api/path", summary="a journey through the given songs, in small even steps",
              responses=errors(400, 404, 413))
    def path(body: PathRequest):
        measures, transitions = body.measures(), body.transitions()
        with library.reading():
            waypoints = [library.seed(track_or_404(i)) for i in body.songs]
            tracks = playlists.path(library, waypoints, length=body.length, drunk=body.drunk,
                                    max_per_artist=body.max_per_artist, random_seed=body.random_seed,
                                    allowed=library.allowed(measures=measures), transitions=transitions)
            return with_tags(tracks)

    @app.post("/api/playlist.m3u8", summary="an extended M3U playlist of the given tracks",
              response_class=Response, responses={200: {"content": {"audio/x-mpegurl": {}}}, **errors(400, 404, 413)})
    def playlist(body: PlaylistRequest):
        with library.reading():
            tracks = tracks_or_404(body.ids)
        entries = [Entry(t.path, t.artist, t.title, t.album, t.duration) for t in tracks]
        return PlainTextResponse(m3u_text(entries, "soundalike.m3u8"), media_type="audio/x-mpegurl",
                                 headers={"content-disposition": 'attachment; filename="soundalike.m3u8"'})

    def analyse(path: Path, gone: Callable[[], bool]):
        """The upload's metadata, analysis and model name (outside the library but for its model)."""
        with library.reading():
            model, name = library.model, library.catalogue.model
        meta = audio.read_metadata(path)
        blocks = _unless_gone(audio.stream(path, sr=model.window.sample_rate), gone)
        return meta, analysis.analyze_blocks(blocks, model), name

    def songs_like(path: Path, name: str | None, meta, result, model: str, k: int, tag: str | None,
                   min_prob: float) -> dict:
        """The answer to an analysed upload, read from the library as it is now."""
        with library.reading():
            if library.catalogue.model != model:
                raise busy()  # the library switched models during the analysis
            seed = library.outside_seed(path, meta, result)
            recs = recommend.similar(library, seed, k=k, tag=tag, min_prob=min_prob)
            return {"name": name, "duration": seed.duration, "tags": recommend.tag_dicts(library.seed_tags(seed, 5)),
                    "similar": [explain(seed, r) for r in recs]}

    @app.post("/api/upload", summary="songs like an uploaded file (analysed, not added to the library)",
              responses=errors(400, 413, 503))
    async def upload(request: Request, file: UploadFile = File(...), k: int = Query(10, ge=1, le=200),
                     tag: TagQuery = None, min_prob: float = Query(0.5, ge=0, le=1)):
        if not slots.acquire(blocking=False):
            raise busy()
        try:
            with tempfile.TemporaryDirectory(prefix="soundalike-upload-") as folder:
                temp = Path(folder) / f"upload{Path(file.filename or 'upload').suffix.lower()[:10]}"
                await run_in_threadpool(_save, file.file, temp, max_upload)
                gone = functools.partial(_disconnected, request)
                meta, result, model = await run_in_threadpool(analyse, temp, gone)
                return await run_in_threadpool(songs_like, temp, file.filename, meta, result, model, k, tag, min_prob)
        except MediaError as exc:
            raise HTTPException(422, f"{file.filename}: {exc.reason}") from None
        except ClientGone:
            return Response(status_code=499)  # nobody is listening
        finally:
            slots.release()

    @app.get("/api/map", summary="every track as a point of a 2-D projection of the track vectors")
    def library_map():
        with library.reading():
            return projection.library_map(library, library.catalogue.generation)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.post("/signin", include_in_schema=False)
    async def signin(request: Request):
        if sessions is None:
            return RedirectResponse("/", status_code=303)
        given = (await request.form()).get("token")
        return sessions.sign_in(given if isinstance(given, str) else "", request.url.scheme)

    @app.post("/signout", include_in_schema=False)
    def signout(request: Request):
        return signed_out(request.url.scheme)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.library = library
    if map_at_start:
        threading.Thread(target=_draw_map, args=(library,), name="soundalike-map", daemon=True).start()
    return app


def _draw_map(library: ServedLibrary) -> None:
    """The library's map, drawn once into the map's cache. A failure is one logged line:
    the page's request for the map draws it again and shows what went wrong."""
    try:
        with library.reading():
            projection.library_map(library, library.catalogue.generation)
    except Exception as exc:  # a background warm-up: never a traceback on the terminal
        logging.getLogger(__name__).warning("the map could not be drawn in advance: %s", exc)


def _save(source, target: Path, limit: int) -> None:
    """Copy an upload to ``target``: 413 past ``limit`` bytes, 400 when empty."""
    size = 0
    with open(target, "wb") as out:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"upload larger than the limit of {limit} bytes")
            out.write(chunk)
    if size == 0:
        raise HTTPException(400, "the upload is empty")


def _disconnected(request: Request) -> bool:
    """From a worker thread: whether the request's client has gone."""
    return anyio.from_thread.run(request.is_disconnected)


def _unless_gone(blocks: Iterable[np.ndarray], gone: Callable[[], bool]) -> Iterator[np.ndarray]:
    """``blocks``, checking every ``DISCONNECT_POLL`` seconds that the client is there (ClientGone if not)."""
    checked = time.monotonic()
    with contextlib.closing(iter(blocks)) as decoding:
        for block in decoding:
            if time.monotonic() - checked > DISCONNECT_POLL:
                if gone():
                    raise ClientGone
                checked = time.monotonic()
            yield block


def _spectrogram_png(path: str, start: float = 0.0) -> tuple[bytes, str]:
    """A log-mel image (96 bands x frames) of ``SPECTROGRAM_SECONDS`` of a file from ``start``
    seconds, and where its time axis lies: "x0,x1,seconds,start" (fractions of the image's
    width, the seconds shown and where they begin in the file), for the page to turn a drag
    over it into a passage.

    Drawn on a figure of its own (matplotlib's object-oriented API, no pyplot): nothing
    is registered globally, so nothing outlives the request, whatever the thread.
    """
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..features import LogMel, LogMelConfig

    config = LogMelConfig()
    y = audio.load(path, sr=config.sample_rate, start=start, duration=SPECTROGRAM_SECONDS)
    y = np.pad(y, (0, max(0, config.n_fft - len(y))))
    with torch.no_grad():
        logmel = LogMel(config)(torch.from_numpy(y)[None])[0].numpy()
    figure = Figure(figsize=(8, 2), dpi=100, layout="tight")
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    seconds = len(y) / config.sample_rate
    axis.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma",
                extent=(start, start + seconds, 0, config.n_mels))
    axis.set_xlabel("seconds")
    axis.set_ylabel("mel band")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    box = axis.get_position()
    return out.getvalue(), f"{box.x0:.4f},{box.x1:.4f},{seconds:.3f},{start:.3f}"

