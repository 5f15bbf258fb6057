"""Listening feedback over HTTP: events in, "for you" mixes out (see :mod:`soundalike.feedback`).

``POST /api/feedback`` stores a play, skip, like or dislike; ``POST /api/listened``
says where a listener left a track and lets the server tell a skip from a play (the
one definition, :func:`soundalike.library.events.is_skip`); ``GET /api/feedback``
lists a profile's events; ``POST /api/foryou/next`` is the next track of a "for you"
mix. Events are written on a connection of their own, outside any read snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, Query
from pydantic import BaseModel, Field

from .. import feedback, playlists
from ..library import events
from ..library.catalogue import MAX_TRACK_ID

Profile = Annotated[str, Field(pattern=events.PROFILE_PATTERN.pattern, description=(
    f"whose listening ({events.PROFILE_RULE}); each profile learns on its own"))]
TrackId = Annotated[int, Field(ge=0, le=MAX_TRACK_ID)]
Seconds = Annotated[float | None, Field(ge=0, le=1e7)]
Source = Literal["page", "api"]
MAX_EVENTS_LISTED = 10_000


class FeedbackRequest(BaseModel):
    track: TrackId
    kind: Literal[events.KINDS] = Field(description="play, skip, like or dislike")  # type: ignore[valid-type]
    seconds: Seconds = Field(None, description="play: how long it played; skip: where it was skipped (seconds)")
    profile: Profile = events.DEFAULT_PROFILE
    source: Source = "api"


class ListenedRequest(BaseModel):
    track: TrackId
    seconds: float = Field(ge=0, le=1e7, description="where the listener left the track (seconds)")
    ended: bool = Field(False, description="it played to its end (then it is a play, never a skip)")
    profile: Profile = events.DEFAULT_PROFILE
    source: Source = "api"


class ForYouRequest(BaseModel):
    profile: Profile = events.DEFAULT_PROFILE
    history: list[TrackId] = Field(default_factory=list, max_length=100_000,
                                   description="track ids the mix played so far (not played again)")
    drunk: float = Field(0.0, ge=0, le=1, description="randomness, 0 (none) to 1 (adventurous)")
    artist_gap: int = Field(3, ge=0, le=1000)
    random_seed: Annotated[int | None, Field(ge=0, le=2**32 - 1)] = None


class EventOut(BaseModel):
    profile: str
    track_id: int | None = Field(description="the track's id now; null when it left the library")
    path: str
    kind: str
    seconds: float | None
    source: str
    at: float = Field(description="Unix time, seconds")


def add_routes(app: FastAPI, library, *, with_tags: Callable[[list], list[dict]], errors: Callable[..., dict]) -> None:
    """The feedback endpoints over a :class:`soundalike.server.ServedLibrary`."""

    def store(track: int, kind: str, seconds: float | None, profile: str, source: str) -> dict:
        with library.writing():
            return events.record(library.catalogue, track, kind, profile=profile, seconds=seconds,
                                 source=source).as_dict()

    @app.post("/api/feedback", status_code=201, response_model=EventOut, responses=errors(400, 413),
              summary="store that a profile played, skipped, liked or disliked a track")
    def feedback_event(body: FeedbackRequest):
        return store(body.track, body.kind, body.seconds, body.profile, body.source)

    @app.post("/api/listened", status_code=201, response_model=EventOut, responses=errors(400, 413),
              summary="where a listener left a track: stored as a skip (by hand, before 30 s or a third of it) "
                      "or a play")
    def listened(body: ListenedRequest):
        with library.reading():
            track = library.catalogue.track(body.track)
        duration = track.duration if track else None
        skipped = not body.ended and events.is_skip(body.seconds, duration)
        return store(body.track, "skip" if skipped else "play", body.seconds, body.profile, body.source)

    @app.get("/api/feedback", response_model=list[EventOut], summary="a profile's events, latest first")
    def feedback_events(profile: Annotated[str, Query(pattern=events.PROFILE_PATTERN.pattern)] = events.DEFAULT_PROFILE,
                        limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_LISTED)] = 100):
        with library.reading():
            return [e.as_dict() for e in reversed(events.events(library.catalogue, profile, latest=limit))]

    @app.post("/api/foryou/next", responses=errors(400, 413),
              summary="the next track of a \"for you\" mix: near what the profile loves, away from what it skips")
    def for_you_next(body: ForYouRequest):
        settings = playlists.RadioSettings(drunk=body.drunk, artist_gap=body.artist_gap, random_seed=body.random_seed)
        with library.reading():
            taste = feedback.taste(library, body.profile, half_life=feedback.PROFILE_HALF_LIFE)
            history = body.history[-1000:]
            chosen = playlists.next_for_you(library, taste, history, settings, np.random.default_rng(body.random_seed))
            return chosen and {**with_tags([chosen])[0], "why": playlists.why_for_you(library, taste, history, chosen)}
