"""Search by passage over HTTP (see :mod:`soundalike.passages`).

``GET /api/tracks/{id}/passages?start=&end=`` finds the tracks with passages like a
span of a library track (times as seconds, "83.5", or minutes:seconds, "1:23.5"; by
default all of it); ``POST /api/passages/upload`` the same for an uploaded clip or a
microphone recording (analysed, not added; it shares the upload slots and size limit
of ``/api/upload``). Both take the filters of ``/api/tracks/{id}/similar`` (``tag``,
``min_prob``, ``bpm``, ``key``, ``energy``, ``exclude_artist``): a track they drop is
never a match. The answer (``ANSWER``, the routes' OpenAPI description) lists each
match's ``start`` (play from there) and ``own_audio``. A span that ends before it
starts or starts after the end, or a time that is not one, is a 422.
"""

# no ``from __future__ import annotations``: the routes' annotations name the server's
# shared parameters, imported when the routes are added (the server imports this module)
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

Time = Annotated[str | None, Query(max_length=32, description=(
    'a time into the track or file: seconds ("83.5") or minutes:seconds ("1:23.5")'))]
TrackIdPath = Annotated[int, PathParam(ge=0, le=MAX_TRACK_ID, description="a track id")]
MAX_K = 200
ANSWER = ("{name, start, end (the span searched, seconds), matches}: each match a track with its tags, `score` "
          "(cosine of its best patch pair), `start` (where its passage begins, seconds: play from there), "
          "`query_start` (where the query's best-matching patch starts, seconds) and `own_audio` (true for the "
          "track where the query's own audio, or a repeat of it, was found: it comes first whatever its score). "
          "Times are seconds (83.5) or minutes:seconds (1:23.5); only tracks the filters keep are matches, "
          "as for /api/tracks/{track_id}/similar.")


def add_routes(app: FastAPI, library, *, with_tags: Callable[[list], list[dict]], errors: Callable[..., dict],
               slots, max_upload: int) -> None:
    """The passage endpoints over a :class:`soundalike.server.ServedLibrary`."""
    from . import ClientGone, SimilarFilters, _disconnected, _save, busy

    def answer(query: passages.Passage, k: int, filters: dict) -> dict:
        """Matches of an analysed passage among the tracks ``filters`` keep, read from the library as it is now."""
        with library.reading():
            found = passages.similar_passages(library, query, k=k, **filters)
            tagged = with_tags([m.track for m in found])
        return {"name": query.name, "start": round(query.start, 2), "end": round(query.end, 2),
                "matches": [{**t, **m.as_dict()} for t, m in zip(tagged, found)]}

    def analysed(path: Path, span: tuple[float | None, float | None], name: str, k: int, filters: dict) -> dict:
        with library.reading():
            return answer(passages.outside_passage(library, path, *span, name=name), k, filters)

    @app.get("/api/tracks/{track_id}/passages", summary="tracks with passages like a span of this track",
             responses=errors(404), description=ANSWER)
    def track_passages(track_id: TrackIdPath, filters: SimilarFilters, start: Time = None, end: Time = None,
                       k: int = Query(10, ge=1, le=MAX_K)):
        span = seconds(start), seconds(end)
        with library.reading():
            track = library.catalogue.track(track_id)
            if track is None:
                raise HTTPException(404, f"no track {track_id} in the library")
            try:
                return answer(passages.passage(library, library.seed(track), *span), k, filters)
            except MediaError as exc:
                raise HTTPException(404, f"track {track_id}'s file cannot be read: {exc.reason}") from None

    @app.post("/api/passages/upload", summary="tracks with passages like an uploaded clip (analysed, not added)",
              responses=errors(400, 413, 503), description=ANSWER)
    async def upload_passages(request: Request, filters: SimilarFilters, file: UploadFile = File(...),
                              start: Time = None, end: Time = None, k: int = Query(10, ge=1, le=MAX_K)):
        span = seconds(start), seconds(end)
        if not slots.acquire(blocking=False):
            raise busy()
        name = file.filename or "upload"
        try:
            with tempfile.TemporaryDirectory(prefix="soundalike-upload-") as folder:
                temp = Path(folder) / f"upload{Path(name).suffix.lower()[:10]}"
                await run_in_threadpool(_save, file.file, temp, max_upload)
                if await run_in_threadpool(functools.partial(_disconnected, request)):
                    raise ClientGone
                return await run_in_threadpool(analysed, temp, span, name, k, filters)
        except MediaError as exc:
            raise HTTPException(422, f"{name}: {exc.reason}") from None
        except ClientGone:
            return Response(status_code=499)
        finally:
            slots.release()


def seconds(time: str | None) -> float | None:
    """Seconds of a time parameter (:func:`soundalike.passages.parse_time`), None when not given."""
    return None if time is None else passages.parse_time(time)
