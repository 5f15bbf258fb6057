"""``soundalike serve --subsonic-upstream URL``: a Subsonic server with sonic features.

Every ``/rest/ENDPOINT`` request (``ENDPOINT`` a name, maybe with ``.view``; any
other path gets error 0 with HTTP 404 and never reaches the upstream) is passed to the
upstream server unchanged (method, query, body; the headers a Subsonic request needs,
``FORWARDED_HEADERS``: never the caller's cookies, nor ``X-Forwarded-*``, ``Remote-User``
and the like that an upstream behind a proxy may trust; the answer streamed back as it
comes, status and headers included, cookies excepted), except:

- ``getSonicSimilarTracks`` (``id``, ``count`` = 10) and ``findSonicPath``
  (``startSongId``, ``endSongId``, ``count`` = 25): the OpenSubsonic ``sonicSimilarity``
  extension, version 1, answered from the library: a top-level ``sonicMatch`` list of
  ``{entry: Child, similarity}``, ``similarity = (1 + cosine) / 2`` to the seed (to the
  start song for a path). The seed is never among its matches; a path starts with the
  start song and ends with the end song.
- ``getSimilarSongs`` / ``getSimilarSongs2`` (``id`` of a song, album or artist,
  ``count`` = 50): Instant Mix, a sonic radio from the song, or from up to
  ``MIX_SEEDS`` songs of the album or artist. When none of them is in the library the
  request goes to the upstream, as any other.
- ``getOpenSubsonicExtensions``: the upstream's list (none when it has no such
  endpoint) with ``sonicSimilarity`` added.
- ``scrobble`` (``submission`` true, the default): passed on, and when the upstream
  accepts the caller's credentials, each song that is a library track is stored as a
  ``play`` event of the profile named as the Subsonic user (source ``subsonic``).

Every ``Child`` is the upstream's own (``getSong``, asked with the caller's
credentials, in the caller's format), so ids, covers and stars are the server's. Our
own answers go only to callers whose credentials the upstream accepts (a ``ping`` with
them, remembered ``AUTH_SECONDS``); otherwise the upstream's error (40 wrong
credentials...). Errors follow the specification: 10 a required parameter missing,
70 a song soundalike has not analysed, 0 anything else (a bad ``count``, the upstream
unreachable). Answers are XML unless ``f=json`` (or ``jsonp`` with a ``callback`` that
is a JavaScript name, ``CALLBACK``), HTTP 200 as Subsonic does (404 for a path that is
no endpoint).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable

import httpx2
import numpy as np
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .. import __version__, playlists, recommend
from ..errors import SoundalikeError
from ..library import events
from .client import AUTH_PARAMS, CLIENT_NAME, PROTOCOL_VERSION, TIMEOUT, SubsonicError, envelope, server_url
from .link import songs_for_tracks, track_for_song

NS = "http://subsonic.org/restapi"
SONIC_EXTENSION = {"name": "sonicSimilarity", "versions": [1]}
DEFAULT_VERSION = "1.16.1"  # the API version claimed until the upstream has said its own
AUTH_SECONDS = 60.0  # how long an accepted set of credentials is remembered
MAX_ACCEPTED = 4096  # sets of credentials remembered at most (token clients send a fresh salt each time)
MAX_COUNT = 500  # tracks an answer holds at most
MIX_SEEDS = 5  # songs of an album or artist an Instant Mix starts from
CHILD_FETCHES = 8  # getSong requests to the upstream at once, per answer
ENDPOINT = re.compile(r"[A-Za-z0-9]+(\.view)?")  # what may follow /rest/ (nothing else is passed on)
CALLBACK = re.compile(r"[A-Za-z_$][\w.$]*", re.ASCII)  # a JSONP callback: a JavaScript name
# the caller's headers passed to the upstream: what a Subsonic request needs, never
# cookies or the forwarding and identity headers (X-Forwarded-*, Remote-User...) it may trust
FORWARDED_HEADERS = {"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
                     "content-length", "content-type", "if-match", "if-modified-since", "if-none-match", "if-range",
                     "if-unmodified-since", "range", "user-agent"}
# the upstream's headers not passed back
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
              "transfer-encoding", "upgrade", "host", "set-cookie"}
ET.register_namespace("", NS)


class Failure(Exception):
    """A Subsonic error to answer: ``code`` and ``message`` as the specification has them."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Unreachable(Failure):
    """The upstream did not answer at all."""

    def __init__(self, upstream: str, exc: Exception):
        super().__init__(0, f"the Subsonic server {upstream} cannot be reached ({exc or type(exc).__name__})")


class SubsonicProxy:
    """ASGI app: ``/rest/*`` as the module says, every other path to ``app``."""

    def __init__(self, app, library, upstream: str, *, timeout: float = TIMEOUT):
        self.app, self.library, self.upstream = app, library, server_url(upstream)
        self.state = app.state
        self.timeout = timeout
        self.http: httpx2.AsyncClient | None = None
        self.accepted: dict[tuple, float] = {}  # credentials -> until when (monotonic s), soonest first
        self.version = DEFAULT_VERSION
        self.rest = Starlette(routes=[Route("/rest/{endpoint:path}", self.handle, methods=["GET", "POST", "HEAD"])])
        self.own = {"getSonicSimilarTracks": self.sonic_similar, "findSonicPath": self.sonic_path,
                    "getSimilarSongs": self.instant_mix, "getSimilarSongs2": self.instant_mix,
                    "getOpenSubsonicExtensions": self.extensions, "scrobble": self.scrobble}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/rest/"):
            if self.http is None:
                self.http = httpx2.AsyncClient(timeout=self.timeout, limits=httpx2.Limits(max_connections=100))
            return await self.rest(scope, receive, send)
        return await self.app(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        if not ENDPOINT.fullmatch(endpoint):
            return self.answer(dict(request.query_params), _error(Failure(0, f"{endpoint!r} is not a Subsonic "
                                                                             "endpoint")), ok=False, status=404)
        own = self.own.get(endpoint.removesuffix(".view"))
        if own is None:
            return await self.forward(request)
        params = dict(request.query_params)
        if request.method == "POST":
            await request.body()  # kept, for a request passed on after its form is read
            params.update((k, v) for k, v in (await request.form()).items() if isinstance(v, str))
        try:
            if params.get("f") == "jsonp":
                _callback(params)
            return await own(request, params, endpoint.removesuffix(".view"))
        except Failure as failure:
            return self.answer(params, _error(failure), ok=False)

    # --- passing through -------------------------------------------------------------
    async def forward(self, request: Request, params: dict | None = None) -> Response:
        """``request`` sent to the upstream as it is (``params``: as a GET with these
        instead), its answer streamed back."""
        url = f"{self.upstream}/rest/{request.path_params['endpoint']}"
        headers = [(k, v) for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS]
        if "accept-encoding" not in request.headers:  # else httpx would ask for gzip the caller cannot read
            headers.append(("accept-encoding", "identity"))
        if params is not None:
            outgoing = self.http.build_request("GET", url, params=params, headers=[
                h for h in headers if h[0].lower() not in ("content-length", "content-type")])
        else:
            query = request.url.query
            has_body = request.method == "POST"
            outgoing = self.http.build_request(request.method, url + (f"?{query}" if query else ""), headers=headers,
                                               content=request.stream() if has_body else None)
        try:
            answer = await self.http.send(outgoing, stream=True)
        except httpx2.HTTPError as exc:
            return self.answer(dict(request.query_params) if params is None else params,
                               _error(Unreachable(self.upstream, exc)), ok=False)
        response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code,
                                     background=BackgroundTask(answer.aclose))
        response.raw_headers = [(k, v) for k, v in answer.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
        return response

    # --- our own answers ---------------------------------------------------------------
    async def authorize(self, params: dict) -> None:
        """Failure (the upstream's code) unless the upstream accepts the caller's credentials."""
        key = tuple(params.get(k) for k in AUTH_PARAMS)
        if self.accepted.get(key, 0.0) > time.monotonic():
            return
        body = await self.upstream_call("ping", _auth(params))
        self.version = body.get("version") or self.version
        self._accept(key)

    def _accept(self, key: tuple) -> None:
        """Remember ``key`` as accepted for ``AUTH_SECONDS``, forgetting the expired
        and, beyond ``MAX_ACCEPTED``, the soonest to expire."""
        now = time.monotonic()
        self.accepted.pop(key, None)
        while self.accepted and (len(self.accepted) >= MAX_ACCEPTED or next(iter(self.accepted.values())) <= now):
            del self.accepted[next(iter(self.accepted))]
        self.accepted[key] = now + AUTH_SECONDS

    async def upstream_call(self, endpoint: str, params: dict) -> dict:
        """The upstream's ``subsonic-response``; Failure with its error when it failed
        (Unreachable when it did not answer)."""
        try:
            response = await self.http.get(f"{self.upstream}/rest/{endpoint}", params=params)
            return envelope(response, f"{self.upstream} {endpoint}")
        except httpx2.HTTPError as exc:
            raise Unreachable(self.upstream, exc) from None
        except SubsonicError as exc:
            if exc.code is None:
                raise Failure(0, str(exc)) from None
            raise Failure(exc.code, _error_message(response)) from None

    async def sonic_similar(self, request, params, endpoint) -> Response:
        song_id, count = _required(params, "id"), _count(params, 10)
        await self.authorize(params)
        matches = await run_in_threadpool(self.similar_songs, song_id, count)
        return await self.matches(params, matches)

    async def sonic_path(self, request, params, endpoint) -> Response:
        start, end, count = _required(params, "startSongId"), _required(params, "endSongId"), _count(params, 25)
        if count < 2:
            raise Failure(0, f"count must be at least 2 for a path from one song to another, got {count}")
        await self.authorize(params)
        matches = await run_in_threadpool(self.path_songs, start, end, count)
        return await self.matches(params, matches)

    async def instant_mix(self, request, params, endpoint) -> Response:
        item, count = _required(params, "id"), _count(params, 50)
        await self.authorize(params)
        seeds = await self.seed_songs(item, params, id3=endpoint.endswith("2"))
        if not seeds:  # nothing of it analysed: the server's own answer
            return await self.forward(request, params)
        song_ids = await run_in_threadpool(self.mix_songs, seeds, count)
        children = await self.children(song_ids, params, "song")
        key = "similarSongs2" if endpoint.endswith("2") else "similarSongs"
        return self.answer(params, {key: {"song": [c for c in children if c is not None]}})

    async def extensions(self, request, params, endpoint) -> Response:
        asked = {k: v for k, v in params.items() if k not in ("f", "callback")} | {"f": "json"}
        try:
            body = await self.upstream_call("getOpenSubsonicExtensions", asked)
            listed = [e for e in body.get("openSubsonicExtensions") or [] if e.get("name") != SONIC_EXTENSION["name"]]
        except Unreachable:
            raise
        except Failure:  # not an OpenSubsonic server
            listed = []
        return self.answer(params, {"openSubsonicExtensions": [*listed, SONIC_EXTENSION]})

    async def scrobble(self, request, params, endpoint) -> Response:
        """Passed on; its songs stored as plays too when the upstream accepts the caller."""
        submitted = params.get("submission", "true").lower() != "false"
        user = params.get("u")
        if submitted and user and events.PROFILE_PATTERN.match(user):
            try:
                await self.authorize(params)
            except Failure:
                pass  # the upstream answers the caller its error
            else:
                form = await request.form() if request.method == "POST" else None
                ids = request.query_params.getlist("id") + (form.getlist("id") if form else [])
                times = request.query_params.getlist("time") + (form.getlist("time") if form else [])
                try:
                    await run_in_threadpool(self.record_plays, user, ids, times)
                except SoundalikeError:
                    pass  # the listening events are a bonus: the scrobble itself still goes on
        return await self.forward(request)

    # --- the library (in a worker thread) ----------------------------------------------
    def _track(self, song_id: str):
        track = track_for_song(self.library.catalogue, self.upstream, song_id)
        if track is None:
            raise Failure(70, f"song {song_id} is not in soundalike's library (run 'soundalike subsonic link' "
                              f"or 'soundalike index --subsonic' on {self.upstream})")
        return track

    def similar_songs(self, song_id: str, count: int) -> list[tuple[str, float]]:
        """(song id, similarity) of the ``count`` songs most like ``song_id``, best first."""
        with self.library.reading():
            seed = self.library.seed(self._track(song_id))
            found = recommend.similar(self.library, seed, k=min(2 * count + 10, MAX_COUNT * 2))
            ids = songs_for_tracks(self.library.catalogue, self.upstream, [r.track for r in found])
            kept = [(s, _similarity(r.score)) for r, s in zip(found, ids) if s is not None and s != song_id]
        return kept[:count]

    def path_songs(self, start: str, end: str, count: int) -> list[tuple[str, float]]:
        """(song id, similarity to the start) of a path of at most ``count`` songs."""
        with self.library.reading():
            first, last = self._track(start), self._track(end)
            try:
                tracks = playlists.path(self.library, [self.library.seed(first), self.library.seed(last)],
                                        length=count)
            except SoundalikeError as exc:
                raise Failure(0, str(exc)) from None
            ids = songs_for_tracks(self.library.catalogue, self.upstream, tracks)
            ids[0], ids[-1] = start, end  # the songs asked for (another song of the same track: not them)
            scores = self.library.vectors([t.id for t in tracks]) @ self.library.vectors([first.id])[0]
        return [(s, _similarity(c)) for s, c in zip(ids, scores) if s is not None]

    def mix_songs(self, seeds: list[str], count: int) -> list[str]:
        with self.library.reading():
            tracks = [self.library.seed(self._track(s)) for s in seeds]
            played = list(playlists.radio(self.library, tracks, playlists.RadioSettings(), length=count))
            return [s for s in songs_for_tracks(self.library.catalogue, self.upstream, played) if s is not None]

    def record_plays(self, user: str, song_ids: list[str], times: list[str]) -> None:
        """Store a play of each song that is a library track, at its ``time`` (ms since
        1970) where given; a library that cannot be written stores nothing."""
        with self.library.writing():
            if self.library.catalogue.readonly:
                return
            for i, song_id in enumerate(song_ids):
                track = track_for_song(self.library.catalogue, self.upstream, song_id)
                at = int(times[i]) / 1000 if i < len(times) and times[i].isdigit() else None
                if track is not None:
                    events.record(self.library.catalogue, track.id, "play", profile=user, source="subsonic", at=at)

    def analysed(self, song_ids: Iterable[str]) -> list[str]:
        with self.library.reading():
            return [s for s in song_ids if track_for_song(self.library.catalogue, self.upstream, s) is not None]

    async def seed_songs(self, item: str, params: dict, *, id3: bool) -> list[str]:
        """Up to MIX_SEEDS analysed songs of ``item``: a song, else an album or an artist
        (ID3 with ``id3``, else also a folder)."""
        if await run_in_threadpool(self.analysed, [item]):
            return [item]
        asked = _auth(params)
        songs: list[str] = []
        for endpoint, key in (("getArtist", "artist"), ("getAlbum", "album"),
                              *((("getMusicDirectory", "directory"),) if not id3 else ())):
            try:
                found = (await self.upstream_call(endpoint, asked | {"id": item})).get(key) or {}
            except Failure:
                continue
            if endpoint == "getArtist":
                albums = await asyncio.gather(*(self.upstream_call("getAlbum", asked | {"id": a["id"]})
                                                for a in found.get("album") or []), return_exceptions=True)
                songs = [s["id"] for a in albums if isinstance(a, dict) for s in (a.get("album") or {}).get("song") or []]
            else:
                songs = [c["id"] for c in found.get("song") or found.get("child") or [] if not c.get("isDir")]
            break
        analysed = await run_in_threadpool(self.analysed, songs)
        if len(analysed) <= MIX_SEEDS:
            return analysed
        return [analysed[i] for i in np.linspace(0, len(analysed) - 1, MIX_SEEDS).round().astype(int)]

    # --- rendering -------------------------------------------------------------------
    async def children(self, song_ids: list[str], params: dict, tag: str) -> list:
        """The upstream's ``Child`` of each song (a dict, or an XML element tagged
        ``tag``), None where it has none, fetched ``CHILD_FETCHES`` at a time."""
        fmt = "json" if params.get("f") in ("json", "jsonp") else "xml"
        asked = _auth(params, fmt)
        limit = asyncio.Semaphore(CHILD_FETCHES)

        async def child(song_id: str):
            async with limit:
                try:
                    response = await self.http.get(f"{self.upstream}/rest/getSong", params=asked | {"id": song_id})
                except httpx2.HTTPError:
                    return None
            if fmt == "json":
                try:
                    return envelope(response, "getSong").get("song")
                except SubsonicError:
                    return None
            try:
                element = ET.fromstring(response.content).find(f"{{{NS}}}song")
            except ET.ParseError:
                return None
            if element is not None:
                element.tag = f"{{{NS}}}{tag}"
            return element

        return list(await asyncio.gather(*(child(s) for s in song_ids)))

    async def matches(self, params: dict, matches: list[tuple[str, float]]) -> Response:
        children = await self.children([s for s, _ in matches], params, "entry")
        return self.answer(params, {"sonicMatch": [{"entry": c, "similarity": round(sim, 4)}
                                                   for c, (_, sim) in zip(children, matches) if c is not None]})

    def answer(self, params: dict, payload: dict, *, ok: bool = True, status: int = 200) -> Response:
        """``payload`` in a ``subsonic-response`` envelope, in the format the caller asked
        (JSON for ``jsonp`` without a valid ``callback``: it is never echoed unchecked)."""
        head = {"status": "ok" if ok else "failed", "version": self.version, "type": "soundalike",
                "serverVersion": __version__, "openSubsonic": True}
        fmt = params.get("f")
        if fmt in ("json", "jsonp"):
            text = json.dumps({"subsonic-response": head | payload}, ensure_ascii=False)
            if fmt == "jsonp" and CALLBACK.fullmatch(params.get("callback") or ""):
                return Response(f"{params['callback']}({text});", status, media_type="application/javascript")
            return Response(text, status, media_type="application/json")
        root = ET.Element(f"{{{NS}}}subsonic-response", {k: _xml_value(v) for k, v in head.items()})
        for key, value in payload.items():
            _xml_add(root, key, value)
        return Response(ET.tostring(root, encoding="utf-8", xml_declaration=True), status, media_type="text/xml")


def upstream_problem(upstream: str, timeout: float = 5.0) -> str | None:
    """Why the Subsonic server at ``upstream`` does not answer a ``ping`` (without
    credentials: any Subsonic answer, an error too, will do), None when it does."""
    try:
        envelope(httpx2.get(f"{upstream}/rest/ping", params={"v": PROTOCOL_VERSION, "c": CLIENT_NAME, "f": "json"},
                            timeout=timeout), f"{upstream} ping")
    except httpx2.HTTPError as exc:
        return f"the Subsonic server {upstream} cannot be reached ({exc or type(exc).__name__})"
    except SubsonicError as exc:
        if exc.code is None:
            return str(exc)
    return None


def _auth(params: dict, fmt: str = "json") -> dict:
    """The caller's authentication, version and client parameters, to ask the upstream in ``fmt``."""
    return {k: params[k] for k in (*AUTH_PARAMS, "v", "c") if k in params} | {"f": fmt}


def _error(failure: Failure) -> dict:
    return {"error": {"code": failure.code, "message": failure.message}}


def _callback(params: dict) -> None:
    """Failure unless a ``jsonp`` request names a callback that is a JavaScript name."""
    callback = _required(params, "callback")
    if not CALLBACK.fullmatch(callback):
        raise Failure(0, "callback must be a JavaScript name (letters, digits, _ . $)")


def _xml_value(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _xml_add(parent: ET.Element, key: str, value) -> None:
    """``value`` under ``parent`` as the Subsonic XML writes it: a scalar as an attribute,
    an object as an element ``key``, a list as repeated elements (scalars as their
    text), an element as it is."""
    if isinstance(value, ET.Element):
        parent.append(value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list, ET.Element)):
                _xml_add(parent, key, item)
            else:
                ET.SubElement(parent, f"{{{NS}}}{key}").text = _xml_value(item)
    elif isinstance(value, dict):
        element = ET.SubElement(parent, f"{{{NS}}}{key}")
        for k, v in value.items():
            _xml_add(element, k, v)
    else:
        parent.set(key, _xml_value(value))


def _error_message(response: httpx2.Response) -> str:
    try:
        return response.json()["subsonic-response"]["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def _required(params: dict, name: str) -> str:
    value = params.get(name)
    if not value:
        raise Failure(10, f"Required parameter is missing: {name}")
    return value


def _count(params: dict, default: int) -> int:
    text = params.get("count")
    if text is None or text == "":
        return default
    try:
        count = int(text)
    except ValueError:
        raise Failure(0, f"count must be a whole number, got {text!r}") from None
    if not 1 <= count <= MAX_COUNT:
        raise Failure(0, f"count must be between 1 and {MAX_COUNT}, got {count}")
    return count


def _similarity(cosine: float) -> float:
    """A cosine (-1 to 1) as the specification's similarity, 0 (most different) to 1 (the same)."""
    return float(min(1.0, max(0.0, (1.0 + float(cosine)) / 2.0)))
