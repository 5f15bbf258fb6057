"""Signing in to a server started with --token, and /docs without network (issue 13)."""

import re
from http.cookies import SimpleCookie

import pytest
from fastapi.testclient import TestClient

from test_server import ids_by_title, library  # noqa: F401  (the same library fixture)
from soundalike.server import create_app
from soundalike.server.auth import COOKIE, WRONG_TOKEN

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def app(library):  # noqa: F811
    return create_app(library, token=TOKEN)


@pytest.fixture
def browser(app):
    """A client that keeps cookies and does not follow redirects, as a test needs to see them."""
    with TestClient(app, follow_redirects=False) as client:
        yield client


def set_cookie(response) -> dict:
    """The session cookie a response sets: {"value", and its attributes, lower-case}."""
    assert response.status_code == 303 and response.headers["location"] == "/"
    header = response.headers["set-cookie"]
    morsel = SimpleCookie(header)[COOKIE]
    flags = {part.strip().lower() for part in header.split(";")}
    return {"value": morsel.value, "httponly": "httponly" in flags, "secure": "secure" in flags,
            "samesite": morsel["samesite"].lower(), "path": morsel["path"]}


def signed_in_cookie(app, token: str = TOKEN) -> str:
    with TestClient(app, follow_redirects=False) as client:
        return set_cookie(client.get("/", params={"token": token}))["value"]


def test_without_a_session_the_page_asks_for_the_token_and_the_rest_is_401(browser):
    page = browser.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "This soundalike server asks for the token it was started with (<code>--token</code>)." in page.text
    assert re.search(r'<form method="post" action="/signin">', page.text)
    assert re.search(r'<input type="password" name="token"', page.text)
    assert "<script" not in page.text and "http" not in page.text  # self-contained
    for url in ("/api/library", "/static/app.js", "/static/style.css", "/api/tracks/1/audio",
                "/api/tracks/1/cover", "/docs", "/openapi.json"):
        refused = browser.get(url)
        assert refused.status_code == 401, url
        assert "sign in" in refused.json()["detail"]


def test_the_token_in_the_address_signs_in_with_a_strict_http_only_cookie(browser, library):  # noqa: F811
    cookie = set_cookie(browser.get("/", params={"token": TOKEN}))
    assert cookie == {"value": cookie["value"], "httponly": True, "secure": False, "samesite": "strict", "path": "/"}
    assert TOKEN not in cookie["value"]
    page = browser.get("/")
    assert page.status_code == 200 and '<audio id="player"' in page.text
    ids = ids_by_title(browser)  # /api/tracks, with the cookie alone
    track = ids["Mid Chord"]
    for url in ("/static/app.js", "/static/style.css", "/api/library", f"/api/tracks/{track}/audio",
                f"/api/tracks/{track}/spectrogram.png", "/openapi.json", "/docs"):
        assert browser.get(url).status_code == 200, url
    cover = browser.get(f"/api/tracks/{track}/cover")
    assert cover.status_code == 404 and cover.json() == {"detail": f"track {track} has no cover art"}


def test_over_https_the_cookie_is_secure(app):
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        assert set_cookie(client.get("/", params={"token": TOKEN}))["secure"]
        assert set_cookie(client.post("/signin", data={"token": TOKEN}))["secure"]
        assert client.get("/api/library").status_code == 200


def test_the_sign_in_form(browser):
    wrong = browser.post("/signin", data={"token": "guess"})
    assert wrong.status_code == 401 and WRONG_TOKEN in wrong.text and "set-cookie" not in wrong.headers
    assert browser.get("/api/library").status_code == 401
    empty = browser.post("/signin", data={})
    assert empty.status_code == 401 and WRONG_TOKEN in empty.text
    wrong_link = browser.get("/", params={"token": "guess"})
    assert wrong_link.status_code == 401 and WRONG_TOKEN in wrong_link.text
    set_cookie(browser.post("/signin", data={"token": TOKEN}))
    assert browser.get("/api/library").status_code == 200


def test_signing_out_clears_the_cookie(browser):
    set_cookie(browser.get("/", params={"token": TOKEN}))
    assert browser.get("/api/library").status_code == 200
    out = browser.post("/signout")
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert re.search(r"Max-Age=0", out.headers["set-cookie"], re.IGNORECASE)
    assert browser.get("/api/library").status_code == 401


def test_api_clients_still_send_the_token(browser):
    assert browser.get("/api/library", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert browser.get("/api/library", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert browser.get("/api/library", params={"token": TOKEN}).status_code == 200  # old links
    assert browser.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_session_outlives_a_restart_with_the_same_token_only(app, library):  # noqa: F811
    session = signed_in_cookie(app)
    again = create_app(library, token=TOKEN)
    other = create_app(library, token="another token")
    assert signed_in_cookie(other, "another token") != session
    for server, status in ((again, 200), (other, 401)):
        with TestClient(server, cookies={COOKIE: session}) as client:
            assert client.get("/api/library").status_code == status
    with TestClient(app, cookies={COOKIE: TOKEN}) as client:  # the token itself is no session
        assert client.get("/api/library").status_code == 401
    with TestClient(app, cookies={COOKIE: session[:-1]}) as client:
        assert client.get("/api/library").status_code == 401


def test_docs_need_no_network(app):
    with TestClient(app, cookies={COOKIE: signed_in_cookie(app)}) as client:
        for docs in ("/docs", "/redoc"):
            html = client.get(docs).text
            addresses = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
            assert any(a.endswith(".js") for a in addresses), html
            assert not re.findall(r"https?://", html), docs  # nothing from another host
            for address in addresses:
                assert client.get(address).status_code == 200, address
