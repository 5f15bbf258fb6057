"""A client of the Subsonic API (https://opensubsonic.netlify.app/docs/api-reference/).

Authentication, in the order tried: an OpenSubsonic API key (``apiKey``); a token
``t = md5(password + salt)`` with a fresh random salt ``s`` on every request; and only
when the server says it takes no token (errors 41/42, e.g. LDAP users; or error 10 from
a server whose API predates tokens, before 1.13) the password itself, hex-encoded
(``p=enc:...``): never over plain http:// unless ``$SOUNDALIKE_SUBSONIC_ALLOW_PLAIN=1``,
and with a warning on stderr, once per server.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import os
import secrets
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx2

from ..errors import ParameterError, SoundalikeError

PASSWORD_ENV = "SOUNDALIKE_SUBSONIC_PASSWORD"
API_KEY_ENV = "SOUNDALIKE_SUBSONIC_API_KEY"
ALLOW_PLAIN_ENV = "SOUNDALIKE_SUBSONIC_ALLOW_PLAIN"  # "1": the password itself may go over plain http://
CLIENT_NAME = "soundalike"
PROTOCOL_VERSION = "1.13.0"  # the oldest that knows token authentication
PAGE = 500  # songs asked for per search3 page
MAX_GET_URL = 6000  # characters: a longer request is sent as a form (POST)
TIMEOUT = 30.0  # seconds
TOKEN_REFUSED = (41, 42)  # token authentication not supported, authentication mechanism not supported
AUTH_PARAMS = ("u", "p", "t", "s", "apiKey")
_warned_plain: set[str] = set()  # servers this process has warned about sending the password itself


class SubsonicError(SoundalikeError):
    """The server answered ``status="failed"`` (``code`` as the specification numbers
    them: 10 a missing parameter, 40 wrong credentials, 70 not found...), or could not
    be reached (``code`` None)."""

    def __init__(self, message: str, code: int | None = None, version: str | None = None):
        super().__init__(message)
        self.code, self.version = code, version  # version: the API version the server said it speaks


class Unreachable(SubsonicError):
    """The server could not be reached at all (no connection, a timeout...)."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A user and password, or an OpenSubsonic API key (then ``user`` may be None).
    ``plain``: the server takes only the password itself (found on connecting)."""

    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    api_key: str | None = dataclasses.field(default=None, repr=False)
    plain: bool = False

    def params(self) -> dict[str, str]:
        """The authentication parameters of one request (a fresh salt each time)."""
        if self.api_key:
            return {"apiKey": self.api_key}
        if self.plain:
            return {"u": self.user, "p": "enc:" + self.password.encode().hex()}
        salt = secrets.token_hex(8)
        return {"u": self.user, "t": hashlib.md5((self.password + salt).encode()).hexdigest(), "s": salt}


def credentials(user: str | None) -> Credentials:
    """The credentials a command uses: ``$SOUNDALIKE_SUBSONIC_API_KEY``, else ``user``
    with ``$SOUNDALIKE_SUBSONIC_PASSWORD`` or a password asked on the terminal."""
    if os.environ.get(API_KEY_ENV):
        return Credentials(user=user, api_key=os.environ[API_KEY_ENV])
    if not user:
        raise ParameterError(f"give --user NAME for the Subsonic server (the password is read from ${PASSWORD_ENV} "
                             f"or asked), or set ${API_KEY_ENV} to an OpenSubsonic API key")
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = getpass.getpass(f"Subsonic password of {user}: ")
    return Credentials(user=user, password=password)


def server_url(url: str) -> str:
    """A server's base address as soundalike stores it: scheme, host, port and path,
    without a trailing ``/`` or ``/rest``. ParameterError when it is not an http(s)
    address, or holds a user or password (they would be stored and shown with it)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise ParameterError(f"{url!r} is not a valid address of a Subsonic server ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ParameterError(f"{url!r} is not the http:// or https:// address of a Subsonic server")
    if "@" in parts.netloc:
        bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise ParameterError(f"{bare!r} was given with a user or password in the address; give the address alone, "
                             f"the user with --user NAME and the password in ${PASSWORD_ENV}")
    path = parts.path.rstrip("/").removesuffix("/rest").rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def envelope(response: httpx2.Response, where: str) -> dict:
    """The ``subsonic-response`` of a JSON answer; SubsonicError when it failed."""
    try:
        body = response.json()["subsonic-response"]
    except (ValueError, KeyError, TypeError):
        raise SubsonicError(f"{where}: not a Subsonic server (HTTP {response.status_code}, "
                            f"{response.headers.get('content-type', 'no content type')})") from None
    if body.get("status") != "ok":
        error = body.get("error") or {}
        raise SubsonicError(f"{where}: {error.get('message') or 'failed'} (error {error.get('code')})",
                            error.get("code"), body.get("version"))
    return body


class Client:
    """One Subsonic server, as one user. ``connect()`` checks the credentials and finds
    how the server takes them; ``call()`` returns a ``subsonic-response`` (dict)."""

    def __init__(self, url: str, creds: Credentials, *, timeout: float = TIMEOUT,
                 http: httpx2.Client | None = None):
        self.url = server_url(url)
        self.creds = creds
        self.http = http or httpx2.Client(timeout=timeout, follow_redirects=True)
        self.version: str | None = None  # the server's API version, once connected

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def params(self, **params) -> dict:
        """``params`` with authentication, protocol version, client name and ``f=json``."""
        return {**self.creds.params(), "v": PROTOCOL_VERSION, "c": CLIENT_NAME, "f": "json",
                **{k: v for k, v in params.items() if v is not None}}

    def request(self, endpoint: str, *, headers: dict | None = None, stream: bool = False,
                **params) -> httpx2.Response:
        """A GET of ``/rest/ENDPOINT`` (``stream``: the body not read yet); a POST of the
        same as a form when the address would be longer than ``MAX_GET_URL`` (a list
        value is a repeated parameter)."""
        url, params = f"{self.url}/rest/{endpoint}", self.params(**params)
        request = self.http.build_request("GET", url, params=params, headers=headers)
        if len(str(request.url)) > MAX_GET_URL:  # OpenSubsonic formPost; Subsonic servers have always read forms
            request = self.http.build_request("POST", url, data=params, headers=headers)
        try:
            return self.http.send(request, stream=stream)
        except httpx2.HTTPError as exc:
            raise Unreachable(f"{self.url}: cannot be reached ({exc or type(exc).__name__})") from None

    def call(self, endpoint: str, **params) -> dict:
        """The ``subsonic-response`` of ``endpoint``; SubsonicError when it failed."""
        return envelope(self.request(endpoint, **params), f"{self.url} {endpoint}")

    def connect(self) -> "Client":
        """Check the credentials (``ping``), falling back to the password itself where
        the server takes no token (see the module). SubsonicError (code 40...) when
        they are refused, ParameterError when the password would go over plain http://."""
        try:
            body = self.call("ping")
        except SubsonicError as exc:
            if self.creds.api_key or self.creds.plain or not _takes_no_token(exc):
                raise
            self._allow_plain()
            self.creds = dataclasses.replace(self.creds, plain=True)
            body = self.call("ping")
        self.version = body.get("version")
        return self

    def _allow_plain(self) -> None:
        """ParameterError unless the password itself may be sent to this server; a
        warning on stderr the first time it is."""
        if self.url.startswith("http://") and os.environ.get(ALLOW_PLAIN_ENV) != "1":
            raise ParameterError(f"{self.url} does not accept token authentication, and sending the password itself "
                                 f"over plain http:// would let anyone on the way read it; use the server's https:// "
                                 f"address, or set {ALLOW_PLAIN_ENV}=1 to send it anyway")
        if self.url not in _warned_plain:
            _warned_plain.add(self.url)
            print(f"warning: {self.url} does not accept token authentication: the password itself is sent with "
                  "every request (hex-encoded, not encrypted)", file=sys.stderr)

    def username(self) -> str | None:
        """The user these credentials are: the one given, else the API key's
        (OpenSubsonic ``tokenInfo``), else None when the server does not say."""
        if self.creds.user:
            return self.creds.user
        try:
            return (self.call("tokenInfo").get("tokenInfo") or {}).get("username")
        except Unreachable:
            raise
        except SubsonicError:  # not an OpenSubsonic server with API keys
            return None

    def songs(self, page: int = PAGE) -> Iterator[dict]:
        """Every song of the server (``Child`` dicts), by ``search3`` pages of an empty
        query; servers that answer it with nothing are walked album by album."""
        offset, found = 0, False
        while True:
            result = self.call("search3", query="", songCount=page, songOffset=offset,
                               artistCount=0, albumCount=0).get("searchResult3") or {}
            batch = result.get("song") or []
            found = found or bool(batch)
            yield from batch
            if len(batch) < page:
                break
            offset += page
        if not found:
            yield from self._songs_by_album(page)

    def _songs_by_album(self, page: int) -> Iterator[dict]:
        offset = 0
        while True:
            albums = (self.call("getAlbumList2", type="alphabeticalByName", size=page, offset=offset)
                      .get("albumList2") or {}).get("album") or []
            for album in albums:
                yield from (self.call("getAlbum", id=album["id"]).get("album") or {}).get("song") or []
            if len(albums) < page:
                return
            offset += page


def _takes_no_token(error: SubsonicError) -> bool:
    """Whether a refused ``ping`` says the server takes no token: errors 41/42, or a
    missing ``p`` (error 10) from a server whose API predates tokens (1.13)."""
    if error.code in TOKEN_REFUSED:
        return True
    try:
        version = tuple(int(n) for n in (error.version or "").split("."))
    except ValueError:
        return False
    return error.code == 10 and bool(version) and version < tuple(int(n) for n in PROTOCOL_VERSION.split("."))
