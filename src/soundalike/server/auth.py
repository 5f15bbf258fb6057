"""Signing in to a server started with ``--token``.

A browser signs in once (``/?token=T``, or the sign-in form that ``/`` shows) and then
carries a session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS. Its value is an
HMAC of a fixed label keyed by the token, so it is not the token, stays valid while the
server restarts with the same token, and is refused by a server with another one. API
clients send ``Authorization: Bearer T`` instead (``?token=T`` is still taken too).
"""

from __future__ import annotations

import hashlib
import hmac
from starlette.datastructures import Headers, QueryParams
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

COOKIE = "soundalike_session"
SESSION_LABEL = b"soundalike session 1"
SESSION_SECONDS = 400 * 24 * 3600  # how long a browser keeps the cookie (the most browsers allow)
WRONG_TOKEN = "That token is not the one this server was started with."
OPEN_PATHS = ("/signin", "/signout")  # answered whether signed in or not

SIGNIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · soundalike</title>
<style>
  :root {{ color-scheme: light dark; --accent: light-dark(#c2410c, #fb8c4a); }}
  body {{ margin: 0; min-height: 100vh; display: grid; place-items: center;
         font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; background: Canvas; color: CanvasText; }}
  main {{ width: min(22rem, 90vw); padding: 2rem; border-radius: 12px; border: 1px solid #8884; }}
  h1 {{ margin: 0 0 .5rem; font-size: 1.4rem; }}
  p {{ margin: 0 0 1rem; opacity: .85; }}
  .error {{ color: #d32f2f; opacity: 1; }}
  input, button {{ box-sizing: border-box; width: 100%; font: inherit; padding: .6rem .8rem; border-radius: 8px; }}
  input {{ border: 1px solid #8888; margin-bottom: .8rem; }}
  button {{ border: 0; background: var(--accent); color: light-dark(#fff, #1f0f04); font-weight: 600; cursor: pointer; }}
</style></head>
<body><main>
<h1>soundalike</h1>
<p>This soundalike server asks for the token it was started with (<code>--token</code>).</p>
{message}
<form method="post" action="/signin">
  <input type="password" name="token" placeholder="Token" aria-label="Token" autocomplete="current-password"
         required autofocus>
  <button type="submit">Sign in</button>
</form>
</main></body></html>
"""


class Sessions:
    """The sign-in of a server started with ``token`` (see the module)."""

    def __init__(self, token: str):
        self.token = token
        self.session = hmac.new(token.encode(), SESSION_LABEL, hashlib.sha256).hexdigest()

    def is_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def allowed(self, scope) -> bool:
        """Whether an HTTP request carries the session cookie, the bearer token or ``?token=``."""
        headers = Headers(scope=scope)
        session = cookie_parser(headers.get("cookie", "")).get(COOKIE)
        if session is not None and hmac.compare_digest(session.encode(), self.session.encode()):
            return True
        authorization = headers.get("authorization", "")
        given = authorization[7:] if authorization.lower().startswith("bearer ") else None
        given = given if given is not None else QueryParams(scope["query_string"]).get("token")
        return given is not None and self.is_token(given)

    def gate(self, scope) -> Response | None:
        """The answer to a request before the app sees it, or None to let it through:
        the page with ``?token=T`` signs in (303 with the cookie); the page without a
        session is the sign-in page; anything else without one is 401."""
        page = scope["path"] == "/" and scope["method"] in ("GET", "HEAD")
        if self.allowed(scope):
            if page and "token" in QueryParams(scope["query_string"]):
                return self.signed_in(scope["scheme"])
            return None
        if scope["path"] in OPEN_PATHS:
            return None
        if page:
            wrong = "token" in QueryParams(scope["query_string"])
            return signin_page(WRONG_TOKEN if wrong else None)
        return JSONResponse({"detail": "a valid token is required: sign in on the page, or send "
                                       "'Authorization: Bearer TOKEN'"}, status_code=401)

    def sign_in(self, given: str, scheme: str) -> Response:
        """The answer to the sign-in form: to the page with the cookie, or the form again."""
        return self.signed_in(scheme) if self.is_token(given) else signin_page(WRONG_TOKEN)

    def signed_in(self, scheme: str) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, self.session, max_age=SESSION_SECONDS, path="/", httponly=True,
                            samesite="strict", secure=scheme in ("https", "wss"))
        return response


def signed_out(scheme: str) -> Response:
    """To the page, with the session cookie cleared."""
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=scheme in ("https", "wss"))
    return response


def signin_page(message: str | None = None) -> HTMLResponse:
    """The sign-in page; with ``message`` (a wrong token), 401."""
    shown = f'<p class="error" role="alert">{message}</p>' if message else ""
    return HTMLResponse(SIGNIN_PAGE.format(message=shown), status_code=401 if message else 200,
                        headers={"Cache-Control": "no-store"})
