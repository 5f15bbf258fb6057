"""``radio/path ... --to-subsonic NAME``: a playlist written into the Subsonic server,
so that every app of the server shows it."""

from __future__ import annotations

import os
import sys

from ..library import Library
from ..library.catalogue import Track
from .client import Client, SubsonicError, credentials
from .link import songs_for_tracks, the_server


def write_playlist(client: Client, name: str, song_ids: list[str]) -> str:
    """Create the playlist ``name`` of ``song_ids``, or replace the songs of the user's
    playlist of that name (the user of an API key as the server names it); returns its id."""
    user = client.username()

    def named() -> list[dict]:
        found = (client.call("getPlaylists").get("playlists") or {}).get("playlist") or []
        return [p for p in found if p.get("name") == name and p.get("owner") in (None, user)]

    mine = named()
    target = {"playlistId": mine[0]["id"]} if mine else {"name": name}
    body = client.call("createPlaylist", **target, songId=song_ids)
    if mine:
        return mine[0]["id"]
    if body.get("playlist"):  # API 1.14 and later answer the playlist
        return body["playlist"]["id"]
    made = named()
    if not made:
        raise SubsonicError(f"{client.url}: the playlist {name!r} was created, but getPlaylists does not list it")
    return made[-1]["id"]


def to_server(library_path: str | os.PathLike | None, tracks: list[Track], name: str, url: str | None) -> str:
    """Write ``tracks`` as the playlist ``name`` on the library's server (see
    :func:`link.the_server`), saying on stderr how many it holds and which had no song
    there. Returns the playlist's id."""
    with Library(library_path, create=False) as library:
        server, user = the_server(library.catalogue, url)
        song_ids = songs_for_tracks(library.catalogue, server, tracks)
    with Client(server, credentials(user)) as client:
        playlist = write_playlist(client.connect(), name, [s for s in song_ids if s is not None])
    missing = [t for t, s in zip(tracks, song_ids) if s is None]
    print(f"wrote {len(tracks) - len(missing)} tracks to the playlist {name!r} on {server}", file=sys.stderr)
    if missing:
        print(f"note: {len(missing)} tracks are not songs of {server} and were left out (e.g. {missing[0].path}); "
              f"'soundalike subsonic link {server}' matches the library to the server's songs", file=sys.stderr)
    return playlist
