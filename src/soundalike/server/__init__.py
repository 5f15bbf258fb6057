"""``soundalike serve``: the HTTP API and the web page, one FastAPI app over one library.

Every action of the page is an API call documented in the OpenAPI schema (``/docs``).
Audio is served only for library tracks, by id: no path from a request reaches the
file system. With a token, every request must carry it (``Authorization: Bearer T``,
or ``?token=T`` for links the browser follows itself, such as an audio source).
"""

from __future__ import annotations

import functools
import hmac
import io
import mimetypes
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from .. import audio, playlists, recommend
from ..errors import MediaError, ParameterError, SoundalikeError
from ..library import Library, QueryError, Seed
from ..library.catalogue import Track
from ..playlist_files import Entry, m3u_text

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_MAX_UPLOAD = 100 * 1024 * 1024  # bytes
SPECTROGRAM_SECONDS = 30.0
PASSAGES = 3  # most similar 3-second passage pairs shown per recommendation
MAP_MAX_POINTS = 200_000


class RadioRequest(BaseModel):
    seeds: list[int] = Field(min_length=1, description="track ids the radio started from")
    history: list[int] = Field(default_factory=list, description="track ids played so far, in order")
    keep_on: int = Field(3, ge=1, description="steer by the last K tracks")
    drunk: float = Field(0.0, ge=0, le=1, description="randomness, 0 (none) to 1 (adventurous)")
    artist_gap: int = Field(3, ge=0)
    random_seed: int | None = None


class PathRequest(BaseModel):
    songs: list[int] = Field(min_length=2, description="start, waypoints and end: track ids")
    length: int = Field(12, ge=2, le=500)
    drunk: float = Field(0.0, ge=0, le=1)
    max_per_artist: int | None = Field(None, ge=1)
    random_seed: int | None = None


class PlaylistRequest(BaseModel):
    ids: list[int] = Field(min_length=1)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if host not in LOOPBACK and not token:
        raise ParameterError(f"binding {host} exposes your library to the network; give --token to do so")


def create_app(library_path: str | os.PathLike | None, *, token: str | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD) -> FastAPI:
    library = Library(library_path, create=False)
    lock = threading.Lock()  # one request at a time uses the library
    app = FastAPI(title="soundalike", version="1", description=__doc__)

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token:
            given = request.query_params.get("token") or ""
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                given = header[7:]
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "a valid token is required"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(SoundalikeError)
    async def soundalike_error(request: Request, exc: SoundalikeError):
        status = 404 if isinstance(exc, QueryError) else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def track_or_404(track_id: int) -> Track:
        track = library.catalogue.track(track_id)
        if track is None:
            raise HTTPException(404, f"no track {track_id} in the library")
        return track

    def with_tags(tracks: list[Track], n: int = 3) -> list[dict]:
        tags = library.top_tags([t.id for t in tracks], n)
        return [{**t.as_dict(), "tags": recommend.tag_dicts(tags.get(t.id, []))} for t in tracks]

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
        with lock:
            return {**library.stats(), "tags": library.catalogue.tag_names}

    @app.get("/api/tracks", summary="search by artist, title, album or path words, and/or by predicted tag")
    def search(q: str = "", tag: str | None = None, limit: int = Query(50, ge=1, le=1000)):
        with lock:
            if tag:
                matching = ([t.id for t in library.catalogue.search_text(q, limit=library.catalogue.count())]
                            if q else None)
                tracks = [r.track for r in recommend.rank_by_tag(library, tag, k=limit, allowed=matching)]
            elif q:
                tracks = library.catalogue.search_text(q, limit=limit)
            else:
                tracks = library.catalogue.tracks(library.catalogue.ids()[:limit])
            return with_tags(tracks)

    @app.get("/api/tracks/{track_id}", summary="a track's metadata and predicted tags")
    def track(track_id: int):
        with lock:
            return with_tags([track_or_404(track_id)], n=10)[0]

    @app.get("/api/tracks/{track_id}/audio", summary="the track's audio file (HTTP range requests supported)")
    def track_audio(track_id: int):
        with lock:
            path = Path(track_or_404(track_id).path)
        if not path.is_file():
            raise HTTPException(404, f"track {track_id}'s file is no longer on disk")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.get("/api/tracks/{track_id}/spectrogram.png", summary="mel spectrogram of the first 30 s, as a PNG",
             response_class=Response)
    def spectrogram(track_id: int):
        with lock:
            path = track_or_404(track_id).path
        return Response(_spectrogram_png(path), media_type="image/png")

    @app.get("/api/tracks/{track_id}/similar", summary="tracks that sound like this one, with why")
    def similar(track_id: int, k: int = Query(10, ge=1, le=200), tag: str | None = None,
                min_prob: float = Query(0.5, ge=0, le=1), exclude_artist: bool = False):
        with lock:
            seed = library.seed(track_or_404(track_id))
            recs = recommend.similar(library, seed, k=k, tag=tag, min_prob=min_prob, exclude_artist=exclude_artist)
            return [explain(seed, r) for r in recs]

    @app.post("/api/radio/next", summary="the next track of a radio, given its seeds, history and settings")
    def radio_next(body: RadioRequest):
        settings = playlists.RadioSettings(keep_on=body.keep_on, drunk=body.drunk, artist_gap=body.artist_gap,
                                           random_seed=body.random_seed)
        with lock:
            seeds = [library.seed(track_or_404(i)) for i in body.seeds]
            for i in body.history:
                track_or_404(i)
            rng = np.random.default_rng(body.random_seed if body.random_seed is not None else None)
            chosen = playlists.next_track(library, seeds, body.history, settings, rng)
            return with_tags([chosen])[0] if chosen else None

    @app.post("/api/path", summary="a journey through the given songs, in small even steps")
    def path(body: PathRequest):
        with lock:
            waypoints = [library.seed(track_or_404(i)) for i in body.songs]
            tracks = playlists.path(library, waypoints, length=body.length, drunk=body.drunk,
                                    max_per_artist=body.max_per_artist, random_seed=body.random_seed)
            return with_tags(tracks)

    @app.post("/api/playlist.m3u8", summary="an extended M3U playlist of the given tracks",
              response_class=PlainTextResponse)
    def playlist(body: PlaylistRequest):
        with lock:
            tracks = [track_or_404(i) for i in body.ids]
        entries = [Entry(t.path, t.artist, t.title, t.album, t.duration) for t in tracks]
        return PlainTextResponse(m3u_text(entries, "soundalike.m3u8"), media_type="audio/x-mpegurl",
                                 headers={"content-disposition": 'attachment; filename="soundalike.m3u8"'})

    @app.post("/api/upload", summary="songs like an uploaded file (analysed, not added to the library)")
    def upload(file: UploadFile = File(...), k: int = Query(10, ge=1, le=200), tag: str | None = None,
               min_prob: float = Query(0.5, ge=0, le=1)):
        suffix = Path(file.filename or "upload").suffix.lower()[:10]
        with tempfile.TemporaryDirectory(prefix="soundalike-upload-") as folder:
            temp = Path(folder) / f"upload{suffix}"
            size = 0
            with open(temp, "wb") as out:
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > max_upload:
                        raise HTTPException(413, f"upload larger than the limit of {max_upload} bytes")
                    out.write(chunk)
            if size == 0:
                raise HTTPException(400, "the upload is empty")
            try:
                with lock:
                    seed = library.analyse_outside(temp)
                    recs = recommend.similar(library, seed, k=k, tag=tag, min_prob=min_prob)
                    return {"name": file.filename, "duration": seed.duration,
                            "tags": recommend.tag_dicts(library.seed_tags(seed, 5)),
                            "similar": [explain(seed, r) for r in recs]}
            except MediaError as exc:
                raise HTTPException(422, f"{file.filename}: {exc.reason}") from None

    @app.get("/api/map", summary="every track as a point of a 2-D projection of the track vectors")
    def library_map():
        with lock:
            return _projection(library, library.catalogue.generation)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.library = library
    return app


def _spectrogram_png(path: str) -> bytes:
    """A log-mel image (96 bands x frames) of the first ``SPECTROGRAM_SECONDS`` of a file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ..features import LogMel, LogMelConfig

    config = LogMelConfig()
    y = audio.load(path, sr=config.sample_rate, duration=SPECTROGRAM_SECONDS)
    y = np.pad(y, (0, max(0, config.n_fft - len(y))))
    with torch.no_grad():
        logmel = LogMel(config)(torch.from_numpy(y)[None])[0].numpy()
    fig, axis = plt.subplots(figsize=(8, 2), dpi=100)
    seconds = len(y) / config.sample_rate
    axis.imshow(logmel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, config.n_mels))
    axis.set_xlabel("seconds")
    axis.set_ylabel("mel band")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


@functools.lru_cache(maxsize=2)
def _projection(library: Library, generation: int) -> dict:
    """The map's points, recomputed only when the library changed (its generation)."""
    from sklearn.decomposition import PCA

    ids, vectors = library.catalogue.arrays("vector")
    ids, vectors = ids[:MAP_MAX_POINTS], library.space.project(vectors[:MAP_MAX_POINTS])
    tracks = {t.id: t for t in library.catalogue.tracks(ids)}
    names = library.catalogue.tag_names
    _, tags = library.catalogue.arrays("tags", ids)
    if len(ids) >= 3:
        xy = PCA(n_components=2, random_state=0).fit_transform(vectors)
    else:
        xy = np.zeros((len(ids), 2))
    top = tags.argmax(axis=1) if tags.shape[1] else np.zeros(len(ids), int)
    return {"ids": ids.tolist(), "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
            "tag": top.tolist(), "tags": names or ["(no tags)"],
            "labels": [tracks[int(i)].label for i in ids]}

