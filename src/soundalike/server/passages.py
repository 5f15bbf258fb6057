"""Search by passage over HTTP (see :mod:`soundalike.passages`).

``GET /api/tracks/{id}/passages?start=&end=`` finds the tracks with passages like a
span of a library track (seconds; by default all of it); ``POST /api/passages/upload``
the same for an uploaded clip or a microphone recording (analysed, not added; it
shares the upload slots and size limit of ``/api/upload``). Each match is a track with
its tags, ``score``, ``start`` (where its passage begins, seconds: play from there) and
``query_start``. A span that ends before it starts, or starts after the end, is a 422.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from .. import passages
from ..errors import MediaError
from ..library.catalogue import MAX_TRACK_ID

Seconds = Annotated[float | None, Query(ge=0, le=1e7, description="seconds into the track or file")]
TrackIdPath = Annotated[int, PathParam(ge=0, le=MAX_TRACK_ID, description="a track id")]
MAX_K = 200


def add_routes(app: FastAPI, library, *, with_tags: Callable[[list], list[dict]], errors: Callable[..., dict],
               slots, max_upload: int) -> None:
    """The passage endpoints over a :class:`soundalike.server.ServedLibrary`."""

    def answer(query: passages.Passage, k: int) -> dict:
        """Matches of an analysed passage, read from the library as it is now."""
        with library.reading():
            found = passages.similar_passages(library, query, k=k)
            tagged = with_tags([m.track for m in found])
        return {"name": query.name, "start": round(query.start, 2), "end": round(query.end, 2),
                "matches": [{**t, **m.as_dict()} for t, m in zip(tagged, found)]}

    def analysed(path: Path, start: float | None, end: float | None, name: str, k: int) -> dict:
        with library.reading():
            return answer(passages.outside_passage(library, path, start, end, name=name), k)

    @app.get("/api/tracks/{track_id}/passages", summary="tracks with passages like a span of this track",
             responses=errors(404))
    def track_passages(track_id: TrackIdPath, start: Seconds = None, end: Seconds = None,
                       k: int = Query(10, ge=1, le=MAX_K)):
        with library.reading():
            track = library.catalogue.track(track_id)
            if track is None:
                raise HTTPException(404, f"no track {track_id} in the library")
            try:
                return answer(passages.passage(library, library.seed(track), start, end), k)
            except MediaError as exc:
                raise HTTPException(404, f"track {track_id}'s file cannot be read: {exc.reason}") from None

    @app.post("/api/passages/upload", summary="tracks with passages like an uploaded clip (analysed, not added)",
              responses=errors(400, 413, 503))
    async def upload_passages(request: Request, file: UploadFile = File(...), start: Seconds = None,
                              end: Seconds = None, k: int = Query(10, ge=1, le=MAX_K)):
        from . import ClientGone, _disconnected, _save, busy

        if not slots.acquire(blocking=False):
            raise busy()
        name = file.filename or "upload"
        try:
            with tempfile.TemporaryDirectory(prefix="soundalike-upload-") as folder:
                temp = Path(folder) / f"upload{Path(name).suffix.lower()[:10]}"
                await run_in_threadpool(_save, file.file, temp, max_upload)
                if await run_in_threadpool(functools.partial(_disconnected, request)):
                    raise ClientGone
                return await run_in_threadpool(analysed, temp, start, end, name, k)
        except MediaError as exc:
            raise HTTPException(422, f"{name}: {exc.reason}") from None
        except ClientGone:
            return Response(status_code=499)
        finally:
            slots.release()
