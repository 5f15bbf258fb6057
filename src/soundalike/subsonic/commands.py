"""What the ``soundalike`` command does with a Subsonic server (imported only by those
commands: the others start without an HTTP client)."""

from __future__ import annotations

import argparse
import sys

from ..library import Library
from ..library.indexer import Plan
from .client import Client, credentials, server_url

UNMATCHED_SHOWN = 20  # unmatched songs listed by name; the rest are counted


def connect(url: str, user: str | None) -> Client:
    """A connected client of the server ``url`` (credentials from the environment or
    asked); closed again when connecting fails."""
    client = Client(server_url(url), credentials(user))  # a bad address is refused before a password is asked
    try:
        return client.connect()
    except BaseException:
        client.close()
        raise


def index_plan(args: argparse.Namespace, catalogue, reanalyze: bool) -> Plan:
    """``index --subsonic URL``: the plan of the server's songs (see :func:`remote.plan`)."""
    from . import remote

    with connect(args.subsonic, args.user) as client:
        return remote.plan(catalogue, client, retry_failed=args.retry_failed, excerpt=args.excerpt,
                           reanalyze=reanalyze)


def cmd_link(args: argparse.Namespace) -> int:
    """``subsonic link URL``: match the server's songs to the library's tracks; exit
    status 1 when some songs match no track."""
    from .link import link

    with Library(args.library, create=False) as library, connect(args.url, args.user) as client:
        report = link(library.catalogue, client)
    matched = report.songs - len(report.unmatched)
    how = ", ".join(f"{n} by {kind}" for kind, n in sorted(report.matched.items()))
    print(f"linked {client.url}: {report.songs} songs ({report.added} new, {report.changed} changed, "
          f"{report.removed} removed since the last link); {matched} are library tracks"
          + (f" ({how})" if how else "") + f", {len(report.unmatched)} are not")
    for song_id, label in report.unmatched[:UNMATCHED_SHOWN]:
        print(f"  not in the library: {label} (id {song_id})")
    if len(report.unmatched) > UNMATCHED_SHOWN:
        print(f"  and {len(report.unmatched) - UNMATCHED_SHOWN} more; 'soundalike index --subsonic {client.url}' "
              "analyses the server's songs through its API")
    return 1 if report.unmatched else 0


def emit(args: argparse.Namespace, tracks) -> None:
    """``radio/path --to-subsonic NAME``: the playlist written on the server."""
    from .playlists import to_server

    to_server(args.library, tracks, args.to_subsonic, args.subsonic)


def wrap_app(app, upstream: str):
    """``serve --subsonic-upstream URL``: the app with ``/rest`` answered by the proxy;
    a warning on stderr (not fatal: it may come up later) when the server does not answer."""
    from .proxy import SubsonicProxy, upstream_problem

    proxy = SubsonicProxy(app, app.state.library, upstream)
    problem = upstream_problem(proxy.upstream)
    if problem:
        print(f"warning: {problem}; apps will get errors until it answers", file=sys.stderr)
    return proxy
