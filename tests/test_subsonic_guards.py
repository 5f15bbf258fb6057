"""What the Subsonic proxy refuses to pass on, and how it answers when the upstream is
gone: a mock upstream (an httpx transport) records every request it gets, and the
proxy is called as an ASGI app with the raw path and headers an app could send."""

import asyncio
import gzip
import json
import time
from types import SimpleNamespace
from urllib.parse import urlencode

import httpx2
import pytest

from subsonic_server import free_port
from soundalike.subsonic import proxy as proxy_module
from soundalike.subsonic.commands import wrap_app
from soundalike.subsonic.proxy import SubsonicProxy

UPSTREAM = "http://upstream.invalid"
PING_OK = {"subsonic-response": {"status": "ok", "version": "1.16.1"}}
BODY = json.dumps(PING_OK | {"padding": "x" * 2000}).encode()  # long enough for gzip to shrink it


class Page:
    """The app behind the proxy (its own paths are not under test here)."""

    state = SimpleNamespace(library=None)

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})


class Streamed(httpx2.AsyncByteStream):
    """A body the proxy streams, as a real upstream's (httpx reads ``content=`` at once)."""

    def __init__(self, data: bytes):
        self.data = data

    async def __aiter__(self):
        yield self.data


def mock_proxy(seen: list, upstream: str = UPSTREAM) -> SubsonicProxy:
    """A proxy whose upstream answers every request with BODY (gzipped when the request
    accepts gzip, as Navidrome does), recording each request in ``seen``."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return httpx2.Response(200, stream=Streamed(gzip.compress(BODY)),
                                   headers={"content-type": "application/json", "content-encoding": "gzip"})
        return httpx2.Response(200, stream=Streamed(BODY), headers={"content-type": "application/json",
                                                                    "set-cookie": "session=upstream"})

    app = SubsonicProxy(Page(), None, upstream)
    app.http = httpx2.AsyncClient(transport=httpx2.MockTransport(handle))
    return app


def call(app, path: str, query: str = "", headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a GET of ``path`` exactly as given (no normalization)."""
    async def run():
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": query.encode(), "client": ("127.0.0.1", 5000), "server": ("proxy", 80),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
        sent, requested = [], []

        async def receive():  # the request, then nothing more until the answer is sent
            if requested:
                await asyncio.Event().wait()
            requested.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        return sent

    messages = asyncio.run(run())
    head = {k.decode(): v.decode() for k, v in messages[0]["headers"]}
    return messages[0]["status"], head, b"".join(m.get("body", b"") for m in messages[1:])


@pytest.mark.parametrize("path", ["/rest/../admin", "/rest/../rest/ping", "/rest/a/../../admin", "/rest/ping/x",
                                  "/rest/.view", "/rest/ping.json", "/rest/%2e%2e/admin", "/rest/"])
def test_only_endpoint_names_are_passed_on(path):
    seen = []
    status, _, body = call(mock_proxy(seen), path, "u=a&p=b&f=json")
    answer = json.loads(body)["subsonic-response"]
    assert status == 404 and answer["status"] == "failed" and answer["error"]["code"] == 0
    assert "is not a Subsonic endpoint" in answer["error"]["message"]
    assert seen == []
    status, _, _ = call(mock_proxy(seen), "/rest/ping.view", "u=a&p=b")
    assert status == 200 and [str(r.url) for r in seen] == [f"{UPSTREAM}/rest/ping.view?u=a&p=b"]


def test_forwarding_and_identity_headers_and_cookies_are_not_passed_on():
    seen = []
    sent = {"X-Forwarded-For": "10.0.0.1", "X-Forwarded-User": "admin", "Forwarded": "for=10.0.0.1",
            "X-Real-IP": "10.0.0.1", "Remote-User": "admin", "X-Remote-User": "admin", "Cookie": "session=page",
            "User-Agent": "app/1.0", "Range": "bytes=0-9", "Accept": "*/*", "Authorization": "Basic YTpi"}
    status, head, _ = call(mock_proxy(seen), "/rest/stream", "id=1", sent)
    (request,) = seen
    passed = {k.lower() for k in request.headers} - {"host", "connection"}  # httpx's own
    assert passed == {"user-agent", "range", "accept", "authorization", "accept-encoding"}
    assert "set-cookie" not in head  # nor the upstream's cookies back onto the page's address


def test_no_accept_encoding_gets_the_body_uncompressed():
    seen = []
    status, head, body = call(mock_proxy(seen), "/rest/ping", "f=json")
    assert seen[0].headers["accept-encoding"] == "identity"
    assert (status, body) == (200, BODY) and "content-encoding" not in head
    status, head, body = call(mock_proxy(seen), "/rest/ping", "f=json", {"Accept-Encoding": "gzip"})
    assert head["content-encoding"] == "gzip" and gzip.decompress(body) == BODY  # asked for: passed as it is


def test_an_unreachable_upstream_is_a_subsonic_error_in_the_callers_format():
    app = SubsonicProxy(Page(), None, f"http://127.0.0.1:{free_port()}")
    status, head, body = call(app, "/rest/ping", "u=a&p=b&f=json")
    answer = json.loads(body)["subsonic-response"]
    assert status == 200 and head["content-type"] == "application/json"
    assert answer["status"] == "failed" and answer["error"]["code"] == 0
    assert "cannot be reached" in answer["error"]["message"]
    status, head, body = call(app, "/rest/getOpenSubsonicExtensions", "f=json")  # not "no extensions"
    assert status == 200 and "cannot be reached" in json.loads(body)["subsonic-response"]["error"]["message"]
    status, head, body = call(app, "/rest/ping", "u=a&p=b")
    assert status == 200 and head["content-type"].startswith("text/xml") and b'status="failed"' in body


def test_a_dead_upstream_is_a_warning_when_serving_starts(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert isinstance(wrap_app(Page(), url), SubsonicProxy)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: the Subsonic server {url} cannot be reached (") and err.count("\n") == 1
    assert err.endswith("; apps will get errors until it answers\n")


@pytest.mark.parametrize("callback, code", [(None, 10), ("alert(1)//", 0), ("x y", 0), ("1x", 0), ("é", 0)])
def test_a_jsonp_callback_must_be_a_name_before_anything_else(callback, code):
    seen = []
    query = urlencode({"u": "a", "p": "b", "f": "jsonp", "id": "1"} | ({"callback": callback} if callback else {}))
    status, head, body = call(mock_proxy(seen), "/rest/getSonicSimilarTracks", query)
    answer = json.loads(body)["subsonic-response"]  # plain JSON: the callback is not echoed
    assert head["content-type"] == "application/json" and answer["error"]["code"] == code
    assert seen == []  # refused before asking the upstream about the credentials


def test_a_valid_jsonp_callback_wraps_the_answer():
    seen = []
    status, head, body = call(mock_proxy(seen), "/rest/getOpenSubsonicExtensions", "f=jsonp&callback=app.on_$1")
    assert head["content-type"] == "application/javascript"
    assert body.startswith(b"app.on_$1({") and body.endswith(b"});")


def test_accepted_credentials_are_remembered_briefly_and_boundedly(monkeypatch):
    seen = []
    app = mock_proxy(seen)
    monkeypatch.setattr(proxy_module, "MAX_ACCEPTED", 5)
    for salt in range(12):  # a token client: a fresh salt each request
        asyncio.run(app.authorize({"u": "a", "t": f"t{salt}", "s": str(salt)}))
    assert len(app.accepted) == 5 and ("a", None, "t11", "11", None) in app.accepted
    now = [time.monotonic() + 1000]
    monkeypatch.setattr(proxy_module.time, "monotonic", lambda: now[0])
    asyncio.run(app.authorize({"u": "a", "p": "b"}))
    asyncio.run(app.authorize({"u": "a", "p": "b"}))  # remembered: not asked again
    assert len(seen) == 13 and list(app.accepted) == [("a", "b", None, None, None)]  # the expired forgotten
    now[0] += proxy_module.AUTH_SECONDS + 1
    asyncio.run(app.authorize({"u": "a", "p": "b"}))
    assert len(seen) == 14
