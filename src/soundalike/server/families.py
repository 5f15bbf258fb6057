"""Sonic families over HTTP (see :mod:`soundalike.families`): the list with examples,
each track's family for the map, a family's tracks, and its M3U8 playlist.

Every endpoint takes ``n``, the number of families (omitted: chosen by silhouette); the
families are computed once per state of the library and ``n``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response

from .. import families
from ..playlist_files import m3u_text

MAX_FAMILIES = 1000
Count = Annotated[int | None, Query(ge=1, le=MAX_FAMILIES, description="how many families (omitted: automatic)")]
Number = Annotated[int, PathParam(ge=1, le=MAX_FAMILIES, description="a family's number (1: the largest)")]


def add_routes(app: FastAPI, library, *, with_tags: Callable[[list], list[dict]], errors: Callable[..., dict]) -> None:
    """The families endpoints over a :class:`soundalike.server.ServedLibrary`."""

    def family_or_404(number: int, n: int | None) -> families.Family:
        found = families.library_families(library, n).families
        if number > len(found):
            raise HTTPException(404, f"no family {number}: the library has {len(found)}")
        return found[number - 1]

    @app.get("/api/families", summary="the library's families of tracks that sound alike, largest first")
    def family_list(n: Count = None,
                    examples: int = Query(families.EXAMPLES, ge=0, le=100, description="typical tracks per family")):
        with library.reading():
            found = families.library_families(library, n)
            return {"automatic": found.automatic, "silhouettes": found.silhouettes, "families": [
                {**f.as_dict(), "examples": with_tags(library.catalogue.tracks(f.ids[:examples].tolist()))}
                for f in found.families]}

    @app.get("/api/families/members", summary="each track's family (an index into names), for the map")
    def members(n: Count = None):
        with library.reading():
            found = families.library_families(library, n)
            ids = [int(i) for f in found.families for i in f.ids]
            return {"names": [f.name for f in found.families], "ids": ids,
                    "family": [index for index, f in enumerate(found.families) for _ in range(f.size)]}

    @app.get("/api/families/{number}/tracks", summary="a family's tracks, most typical first", responses=errors(404))
    def family_tracks(number: Number, n: Count = None, offset: int = Query(0, ge=0, le=10**9),
                      limit: int = Query(100, ge=1, le=1000)):
        with library.reading():
            ids = family_or_404(number, n).ids[offset:offset + limit]
            return with_tags(library.catalogue.tracks(ids.tolist()))

    @app.get("/api/families/{number}/playlist.m3u8", summary="a family as an extended M3U playlist",
             response_class=Response, responses={200: {"content": {"audio/x-mpegurl": {}}}, **errors(404)})
    def family_playlist(number: Number, n: Count = None):
        with library.reading():
            family = family_or_404(number, n)
            tracks = library.catalogue.tracks(family.ids.tolist())
        return PlainTextResponse(m3u_text(families.entries(tracks), family.file_name), media_type="audio/x-mpegurl",
                                 headers={"content-disposition": f'attachment; filename="{family.file_name}"'})
